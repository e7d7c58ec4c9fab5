// Plot/TextChart.swift — a Chart drawn with characters for a terminal.
//
// Canvas: each cell of the plot area is a braille character holding 2×4 dots (U+2800 + dot bits),
// or one ASCII character per cell in the fallback. Lines are rasterised between consecutive points
// (DDA over the dot grid); validation points are drawn on top as a marker character per run (●■▲◆★,
// or O @ X $ = in ASCII). With `color`, each run gets an ANSI color (the last series drawn in a cell
// wins). Faint series are not drawn. Around the plot: y tick labels on the left, a tick row and
// labels below, then the axis title and a legend line per run.

import Foundation

package enum TextChart {
    package enum Charset: String, Sendable, CaseIterable { case braille, ascii }

    static let ansi = [34, 33, 32, 31, 35, 36, 37, 90, 93, 96]       // tab10 order, approximately
    static let unicodeMarks: [Character] = ["●", "■", "▲", "◆", "★"]
    static let asciiMarks: [Character] = ["O", "@", "X", "$", "="]
    static let asciiLines: [Character] = ["*", "+", "x", "%", "&"]

    /// The chart as lines of text, at most `width` columns by `height` rows.
    package static func render(_ chart: Chart, width: Int, height: Int, charset: Charset, color: Bool) -> String {
        let runs = Set(chart.series.map(\.color)).count
        let yt = chart.y.ticks(target: max(2, (height - 6) / 3))
        let yLabels = yt.map { Axis.label($0, ticks: yt) }
        let yw = (yLabels.map(\.count).max() ?? 1) + 1
        let cols = max(10, width - yw - 2)
        let rows = max(4, height - 5 - runs)
        let (sx, sy) = charset == .braille ? (2, 4) : (1, 1)
        let dotsX = cols * sx, dotsY = rows * sy
        var bits = [UInt8](repeating: 0, count: cols * rows)
        var glyph = [Character?](repeating: nil, count: cols * rows)
        var owner = [Int](repeating: -1, count: cols * rows)

        func dot(_ dx: Int, _ dy: Int, _ c: Int, _ k: Int) {
            guard dx >= 0 && dx < dotsX && dy >= 0 && dy < dotsY else { return }
            let cell = (dy / sy) * cols + dx / sx
            if charset == .braille {
                let bx = dx % 2, by = dy % 4
                let bit: UInt8 = by == 3 ? (bx == 0 ? 0x40 : 0x80) : UInt8(1 << (by + 3 * bx))
                bits[cell] |= bit
            } else if glyph[cell] == nil || !asciiMarks.contains(glyph[cell]!) {
                glyph[cell] = asciiLines[k % asciiLines.count]
            }
            owner[cell] = c
        }
        func toDots(_ p: (x: Double, y: Double)) -> (Double, Double) {
            // Clamped just outside the plot (NaN too), so Int(_:) cannot trap on NaN/±inf/huge values
            // from a hostile CSV and a line between two points stays a bounded number of dots.
            func clamp(_ v: Double, _ n: Int) -> Double { v.isNaN ? -2 : min(max(v, -2), Double(n + 1)) }
            return (clamp(chart.x.fraction(p.x) * Double(dotsX - 1), dotsX), clamp((1 - chart.y.fraction(p.y)) * Double(dotsY - 1), dotsY))
        }
        var runIndex: [Int: Int] = [:]
        for s in chart.series where runIndex[s.color] == nil { runIndex[s.color] = runIndex.count }
        for s in chart.series where s.style == .line {
            let k = runIndex[s.color]!
            var prev: (Double, Double)? = nil
            for p in s.points {
                let q = toDots(p)
                if let a = prev {
                    let n = max(1, Int(max(abs(q.0 - a.0), abs(q.1 - a.1)).rounded(.up)))
                    for i in 0...n {
                        let t = Double(i) / Double(n)
                        dot(Int((a.0 + (q.0 - a.0) * t).rounded()), Int((a.1 + (q.1 - a.1) * t).rounded()), s.color, k)
                    }
                } else {
                    dot(Int(q.0.rounded()), Int(q.1.rounded()), s.color, k)
                }
                prev = q
            }
        }
        for s in chart.series where s.style == .points {
            let k = runIndex[s.color]!
            let marks = charset == .braille ? unicodeMarks : asciiMarks
            for p in s.points {
                let q = toDots(p)
                let cx = Int(q.0.rounded()) / sx, cy = Int(q.1.rounded()) / sy
                guard cx >= 0 && cx < cols && cy >= 0 && cy < rows else { continue }
                glyph[cy * cols + cx] = marks[k % marks.count]; owner[cy * cols + cx] = s.color
            }
        }

        func paint(_ s: String, _ c: Int) -> String { color && c >= 0 ? "\u{1B}[\(ansi[c % ansi.count])m\(s)\u{1B}[0m" : s }
        let vbar = charset == .braille ? "│" : "|", hbar = charset == .braille ? "─" : "-"
        let corner = charset == .braille ? "└" : "+", tick = charset == .braille ? "┬" : "+", ytick = charset == .braille ? "┤" : "+"
        // Which row each y tick falls on.
        var tickRow: [Int: String] = [:]
        for (v, l) in zip(yt, yLabels) {
            let r = Int(((1 - chart.y.fraction(v)) * Double(dotsY - 1)).rounded()) / sy
            if r >= 0 && r < rows { tickRow[r] = l }
        }
        var out = String(repeating: " ", count: yw + 1) + chart.title + (charset == .braille ? " — " : " - ") + chart.yLabel + "\n"
        for r in 0..<rows {
            var line = ""
            if let l = tickRow[r] { line += String(repeating: " ", count: yw - l.count) + l + ytick }
            else { line += String(repeating: " ", count: yw) + vbar }
            var run = "", runColor = -2
            for c in 0..<cols {
                let i = r * cols + c
                let ch: String
                if let g = glyph[i] { ch = String(g) }
                else if charset == .braille { ch = bits[i] == 0 ? " " : String(Character(Unicode.Scalar(0x2800 + UInt32(bits[i]))!)) }
                else { ch = " " }
                let o = ch == " " ? -1 : owner[i]
                if o != runColor { line += paint(run, runColor); run = ""; runColor = o }
                run += ch
            }
            line += paint(run, runColor)
            out += line + "\n"
        }
        // x axis: ticks and labels.
        let xt = chart.x.ticks(target: max(2, cols / 12))
        var axis = Array(String(repeating: hbar, count: cols)).map(String.init)
        var labels = [Character](repeating: " ", count: cols + 12)
        for v in xt {
            let c = Int((chart.x.fraction(v) * Double(dotsX - 1)).rounded()) / sx
            guard c >= 0 && c < cols else { continue }
            axis[c] = tick
            let l = Array(Axis.label(v, ticks: xt))
            let start = max(0, min(c - l.count / 2, cols + 12 - l.count))
            if labels[max(0, start - 1)..<min(labels.count, start + l.count + 1)].allSatisfy({ $0 == " " }) {
                for (j, ch) in l.enumerated() { labels[start + j] = ch }
            }
        }
        out += String(repeating: " ", count: yw) + corner + axis.joined() + "\n"
        var labelLine = String(labels)
        while labelLine.last == " " { labelLine.removeLast() }
        out += String(repeating: " ", count: yw + 1) + labelLine + "\n"
        out += String(repeating: " ", count: yw + 1 + max(0, cols / 2 - chart.xLabel.count / 2)) + chart.xLabel + "\n"
        // Legend: one line per run.
        var legend: [Int: (String, String)] = [:]
        for s in chart.series {
            guard let label = s.label else { continue }
            var e = legend[s.color] ?? ("", "")
            if s.style == .points { e.1 = label } else { e.0 = label }
            legend[s.color] = e
        }
        for c in runIndex.sorted(by: { $0.value < $1.value }).map(\.key) {
            guard let (train, val) = legend[c] else { continue }
            let k = runIndex[c]!
            let lineMark = charset == .braille ? "⠒⠒" : String(repeating: asciiLines[k % asciiLines.count], count: 2)
            let mark = String((charset == .braille ? unicodeMarks : asciiMarks)[k % unicodeMarks.count])
            out += String(repeating: " ", count: yw + 1) + paint(lineMark, c) + " " + train + "   " + paint(mark, c) + " " + val + "\n"
        }
        return out
    }
}
