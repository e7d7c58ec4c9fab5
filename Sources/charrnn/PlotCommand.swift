// charrnn plot — loss curves of one or more runs as an SVG file or a text chart in the terminal.

import ArgumentParser
import CharRNN
import Foundation

extension XAxisKind: ExpressibleByArgument {}
extension TextChart.Charset: ExpressibleByArgument {}

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Plot train and validation loss of runs (SVG, or a text chart with --terminal).",
        discussion: """
        Each run is a folder (its \(RunFolder.lossLogName)) or a CSV file; several are overlaid, one color each. The \
        train loss is drawn smoothed (exponential moving average, --smooth) over the raw values (faint); \
        validation losses are points joined by a dashed line. Files still being written are fine: an \
        incomplete last line is ignored.
        """)

    @Argument(help: ArgumentHelp("Run folders or loss CSV files.", valueName: "RUN_DIR_OR_CSV"))
    var runs: [String]
    @Option(name: .shortAndLong, help: ArgumentHelp("SVG file to write.", valueName: "FILE"))
    var output: String = "loss.svg"
    @Option(help: "Horizontal axis: iteration or epoch.")
    var x: XAxisKind = .iteration
    @Flag(help: "Logarithmic loss axis.")
    var log = false
    @Option(help: ArgumentHelp("EMA factor β for the train loss in [0, 1); 0 = raw.", valueName: "BETA"))
    var smooth: Double = 0.9
    @Flag(help: "Draw a text chart on stdout instead of writing the SVG.")
    var terminal = false
    @Option(help: ArgumentHelp("Text chart characters: braille or ascii (default: braille when the locale is UTF-8).", valueName: "SET"))
    var charset: TextChart.Charset?
    @Option(help: ArgumentHelp("Text chart size (default: the terminal's, else 80×24).", valueName: "COLSxROWS"))
    var size: String?

    func validate() throws {
        if !(smooth >= 0 && smooth < 1) { throw ValidationError("--smooth must be in [0, 1)") }
        if let size, Self.parseSize(size) == nil {
            throw ValidationError("--size must be COLSxROWS (or COLS×ROWS) from 30x10 to \(Self.maxSize.cols)x\(Self.maxSize.rows), e.g. 100x30")
        }
    }

    func run() throws { try reportingErrors(plot) }

    func plot() throws {
        let histories = try runs.map { try LossHistory.load($0) }
        for h in histories {
            if h.rows.isEmpty { printError("warning: \(h.name): no complete rows yet") }
            if h.unreadableLines > 0 { printError("warning: \(h.name): \(h.unreadableLines) lines are not loss rows (wrong field count or no iteration) and were skipped") }
            if h.nonNumericLosses > 0 { printError("warning: \(h.name): \(h.nonNumericLosses) rows have a loss that is not a finite number; those values are not drawn") }
        }
        let chart = Chart.losses(histories, xAxis: x, logY: log, smoothing: smooth, raw: !terminal)
        if terminal {
            let (w, h) = size.flatMap(Self.parseSize) ?? Self.terminalSize()
            let set = charset ?? (Self.localeIsUTF8 ? .braille : .ascii)
            let color = isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
            try Output.standard.write(TextChart.render(chart, width: w, height: h, charset: set, color: color))
            return
        }
        do {
            try AtomicFile.write(Array(SVGChart.render(chart).utf8), to: output)
        }
        printError("wrote \(output) (\(histories.map { "\($0.name): \($0.rows.count) rows" }.joined(separator: ", ")))")
    }

    /// The largest text chart: far past any terminal, small enough that its grid is a few MB.
    static let maxSize = (cols: 2000, rows: 1000)

    /// "COLSxROWS", also with × as the help writes it.
    static func parseSize(_ s: String) -> (Int, Int)? {
        let p = s.lowercased().replacingOccurrences(of: "×", with: "x").split(separator: "x")
        guard p.count == 2, let w = Int(p[0]), let h = Int(p[1]), w >= 30, h >= 10, w <= maxSize.cols, h <= maxSize.rows else { return nil }
        return (w, h)
    }

    static func terminalSize() -> (Int, Int) {
        var ws = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col >= 30, ws.ws_row >= 10 {
            return (min(Int(ws.ws_col), maxSize.cols), min(Int(ws.ws_row) - 1, maxSize.rows))
        }
        let env = ProcessInfo.processInfo.environment
        let cols = Int(env["COLUMNS"] ?? "").flatMap { (30...maxSize.cols).contains($0) ? $0 : nil } ?? 80
        let rows = Int(env["LINES"] ?? "").flatMap { (11...(maxSize.rows + 1)).contains($0) ? $0 : nil } ?? 24
        return (cols, rows - 1)
    }

    static var localeIsUTF8: Bool {
        let env = ProcessInfo.processInfo.environment
        let v = env["LC_ALL"].flatMap { $0.isEmpty ? nil : $0 } ?? env["LC_CTYPE"].flatMap { $0.isEmpty ? nil : $0 } ?? env["LANG"] ?? ""
        return v.uppercased().replacingOccurrences(of: "-", with: "").contains("UTF8")
    }
}
