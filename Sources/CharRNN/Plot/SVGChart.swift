// Plot/SVGChart.swift — a Chart as a standalone SVG 1.1 document (no scripts, no external fonts).
//
// Layout: a W×H canvas; the plot area inside fixed margins holds the grid, the series (clipped to the
// area) and the legend (top right); tick labels and axis titles sit in the margins. Faint series are
// thin and translucent, lines solid, validation points circles joined by a dashed line.

import Foundation

package enum SVGChart {
    /// matplotlib's tab10 colors, one per run.
    package static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    /// The SVG text of `chart`.
    package static func render(_ chart: Chart, width W: Int = 960, height H: Int = 600) -> String {
        let left = 78.0, right = 24.0, top = 44.0, bottom = 62.0
        let pw = Double(W) - left - right, ph = Double(H) - top - bottom
        func px(_ x: Double) -> Double { left + chart.x.fraction(x) * pw }
        func py(_ y: Double) -> Double { top + (1 - chart.y.fraction(y)) * ph }
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        var o = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(W)" height="\(H)" viewBox="0 0 \(W) \(H)" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">
        <rect width="100%" height="100%" fill="white"/>
        <defs><clipPath id="plot"><rect x="\(f(left))" y="\(f(top))" width="\(f(pw))" height="\(f(ph))"/></clipPath></defs>
        <text x="\(f(left + pw / 2))" y="26" text-anchor="middle" font-size="16" font-weight="bold">\(escape(chart.title))</text>

        """
        // Grid and ticks.
        let xt = chart.x.ticks(target: 8), yt = chart.y.ticks(target: 7)
        o += "<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n"
        for v in xt { o += "<line x1=\"\(f(px(v)))\" y1=\"\(f(top))\" x2=\"\(f(px(v)))\" y2=\"\(f(top + ph))\"/>\n" }
        for v in yt { o += "<line x1=\"\(f(left))\" y1=\"\(f(py(v)))\" x2=\"\(f(left + pw))\" y2=\"\(f(py(v)))\"/>\n" }
        o += "</g>\n<g stroke=\"#333\" stroke-width=\"1\">\n"
        for v in xt { o += "<line x1=\"\(f(px(v)))\" y1=\"\(f(top + ph))\" x2=\"\(f(px(v)))\" y2=\"\(f(top + ph + 5))\"/>\n" }
        for v in yt { o += "<line x1=\"\(f(left - 5))\" y1=\"\(f(py(v)))\" x2=\"\(f(left))\" y2=\"\(f(py(v)))\"/>\n" }
        o += "</g>\n<g fill=\"#333\">\n"
        for v in xt { o += "<text x=\"\(f(px(v)))\" y=\"\(f(top + ph + 20))\" text-anchor=\"middle\">\(Axis.label(v, ticks: xt))</text>\n" }
        for v in yt { o += "<text x=\"\(f(left - 9))\" y=\"\(f(py(v) + 4.5))\" text-anchor=\"end\">\(Axis.label(v, ticks: yt))</text>\n" }
        o += "</g>\n"
        o += "<text x=\"\(f(left + pw / 2))\" y=\"\(H - 16)\" text-anchor=\"middle\">\(escape(chart.xLabel))</text>\n"
        o += "<text transform=\"translate(20 \(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(chart.yLabel))</text>\n"
        // Series.
        o += "<g clip-path=\"url(#plot)\" fill=\"none\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n"
        for s in chart.series where !s.points.isEmpty {
            let color = palette[s.color % palette.count]
            let pts = s.points.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            switch s.style {
            case .faint:
                o += "<polyline points=\"\(pts)\" stroke=\"\(color)\" stroke-width=\"1\" stroke-opacity=\"0.3\"/>\n"
            case .line:
                o += "<polyline points=\"\(pts)\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            case .points:
                if s.points.count > 1 { o += "<polyline points=\"\(pts)\" stroke=\"\(color)\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n" }
            }
        }
        o += "</g>\n"
        // Validation markers are not clipped: a point on the frame stays a whole circle.
        for s in chart.series where s.style == .points {
            let color = palette[s.color % palette.count]
            for p in s.points {
                o += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3.5\" fill=\"white\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
            }
        }
        // Frame.
        o += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\" fill=\"none\" stroke=\"#333\" stroke-width=\"1\"/>\n"
        // Legend, top right inside the plot.
        let entries = chart.series.filter { $0.label != nil }
        if !entries.isEmpty {
            let longest = entries.map { $0.label!.count }.max()!
            let lw = 44.0 + Double(longest) * 7.4, lh = 10.0 + Double(entries.count) * 20
            let lx = left + pw - lw - 10, ly = top + 10
            o += "<g>\n<rect x=\"\(f(lx))\" y=\"\(f(ly))\" width=\"\(f(lw))\" height=\"\(f(lh))\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n"
            for (i, s) in entries.enumerated() {
                let color = palette[s.color % palette.count]
                let cy = ly + 15 + Double(i) * 20
                if s.style == .points {
                    o += "<line x1=\"\(f(lx + 8))\" y1=\"\(f(cy))\" x2=\"\(f(lx + 34))\" y2=\"\(f(cy))\" stroke=\"\(color)\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n"
                    o += "<circle cx=\"\(f(lx + 21))\" cy=\"\(f(cy))\" r=\"3.5\" fill=\"white\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                } else {
                    o += "<line x1=\"\(f(lx + 8))\" y1=\"\(f(cy))\" x2=\"\(f(lx + 34))\" y2=\"\(f(cy))\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                }
                o += "<text x=\"\(f(lx + 40))\" y=\"\(f(cy + 4.5))\">\(escape(s.label!))</text>\n"
            }
            o += "</g>\n"
        }
        o += "</svg>\n"
        return o
    }

    static func escape(_ s: String) -> String {
        var o = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            default: if ch.value >= 0x20 || ch == "\t" { o.unicodeScalars.append(ch) }
            }
        }
        return o
    }
}
