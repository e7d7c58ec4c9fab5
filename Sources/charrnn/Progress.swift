// Progress output of `charrnn train` (--progress): one updating line cut to the terminal's width
// (bar), or a plain line every 30 s and at each validation (plain, for logs), or validation lines only
// (none); auto is bar on a terminal and plain otherwise, and plain under mpirun, whose ranks write to
// a pseudo-terminal even when mpirun's own output goes to a file. Validation lines, the run's time
// estimate and the summary print in every mode. Per iteration event only arithmetic runs unless a
// line is due (at most 10 bar redraws a second, one plain line per interval).

import ArgumentParser
import CharRNN
import Foundation

/// `train --progress`: how iteration progress is shown.
enum ProgressMode: String, CaseIterable, ExpressibleByArgument {
    case auto, bar, plain, none
}

struct ProgressOptions: ParsableArguments {
    @Option(name: .customLong("progress"), help: ArgumentHelp("Iteration progress: bar (one updating line, cut to the terminal's width), plain (a line every 30 s and at each validation, for logs), none (validation lines only), or auto: bar on a terminal, else plain (plain under mpirun). (default: auto)", valueName: "MODE"))
    var given: ProgressMode?
    var progress: ProgressMode { given ?? .auto }

    /// bar, plain or none: auto decided for a terminal or not, and mpirun.
    static func resolve(_ m: ProgressMode, tty: Bool, mpirun: Bool) -> ProgressMode {
        m == .auto ? (tty && !mpirun ? .bar : .plain) : m
    }
}

final class ProgressPrinter {
    let out = Output.standard
    let evalEvery: Int
    /// bar, plain or none (never auto: `ProgressOptions.mode` decides it).
    let mode: ProgressMode
    /// Seconds between two plain lines (a test may shorten it: TestFaults).
    var plainInterval = 30.0
    var lastPlain = Date().timeIntervalSince1970
    var lastVal: Double?
    var lastDraw = 0.0
    var lineOpen = false
    /// The first failed write to stdout (a closed pipe, a full disk): progress is no longer printed,
    /// and the run is asked to stop like a signal (`Interrupt.outputFailed`).
    private(set) var failure: OutputError?

    /// The whole session's time, printed once from its first iterations (RunEstimate).
    var estimate: RunEstimate?

    init(evalEvery: Int, mode: ProgressMode) {
        self.evalEvery = evalEvery
        self.mode = mode == .auto ? ProgressOptions.resolve(mode, tty: Output.standard.tty, mpirun: MPI.launchedByMPIRun) : mode
        #if CHARRNN_FAULTS
        if let s = TestFaults.progressInterval { plainInterval = s }
        #endif
    }

    /// The progress of `trainer`'s run, with its time estimate.
    convenience init(trainer: Trainer, mode: ProgressMode) {
        self.init(evalEvery: trainer.meta.train.evalEvery, mode: mode)
        estimate = RunEstimate(startIteration: trainer.meta.progress.iteration, totalIterations: trainer.totalIterations,
                               evalEvery: trainer.meta.train.evalEvery, batchesPerEpoch: trainer.batches.ntrain)
    }

    func handle(_ e: TrainEvent) {
        guard failure == nil else { return }
        do { try show(e) } catch {
            failure = error
            Interrupt.outputFailed(error)
        }
    }

    private func show(_ e: TrainEvent) throws(OutputError) {
        switch e {
        case let .iteration(it, total, epoch, loss, _, tps, elapsed):
            if let figures = estimate?.iteration(it, elapsed: elapsed) {
                try closeLine()
                try out.line(Self.describe(figures)); try out.flush()
            }
            switch mode {
            case .bar:
                let now = Date().timeIntervalSince1970
                guard now - lastDraw >= 0.1 || it == total else { break }
                // the cursor stays off the last column: a line as wide as the terminal would wrap on some
                let fields = fields(it: it, total: total, epoch: epoch, loss: loss, tps: tps, elapsed: elapsed)
                try out.write("\r\u{1B}[K" + Self.fit(fields, width: Terminal.width() - 1))
                try out.flush()
                lastDraw = now; lineOpen = true
            case .plain:
                let now = Date().timeIntervalSince1970
                guard it % evalEvery == 0 || now - lastPlain >= plainInterval else { break }
                lastPlain = now
                let fields = fields(it: it, total: total, epoch: epoch, loss: loss, tps: tps, elapsed: elapsed)
                try out.line(fields.joined(separator: "  ")); try out.flush()
            case .none, .auto:
                break
            }
        case let .validation(it, epoch, v, improved, secs):
            estimate?.validation(seconds: secs)
            lastVal = v
            try closeLine()
            try out.line(String(format: "iter %ld  epoch %.2f  val loss %.4f%@  (%.1fs)", it, epoch, v, improved ? "  best" : "", secs))
            try out.flush()
        case .saved:
            break
        case let .skipped(it, loss, norm, total):
            try closeLine()
            printError("warning: iteration \(it): non-finite loss \(loss) or gradient norm \(norm); update skipped (--skip-nonfinite, \(total) skipped so far)")
        }
    }

    func closeLine() throws(OutputError) { if lineOpen { lineOpen = false; try out.line("") } }
    func finish() {
        guard failure == nil else { return }
        do { try closeLine(); try out.flush() } catch { failure = error }
    }

    /// "estimated time for the run: 1h20m (2115 iterations at 0.42s, 43 validations at 3.10s)"; for
    /// a resumed run "estimated time to finish the run: … (1000 more of 2115 iterations at …)".
    static func describe(_ e: RunEstimate.Figures) -> String {
        let whole = e.iterations == e.total
        let its = whole ? "\(e.total) iterations" : "\(e.iterations) more of \(e.total) iterations"
        let vals = "\(e.validations) validation\(e.validations == 1 ? "" : "s")"
        let valPart = e.secondsPerValidation.map { "\(vals) at \(short($0))" } ?? "\(vals) not yet timed"
        return "estimated time \(whole ? "for the run" : "to finish the run"): \(duration(e.seconds)) (\(its) at \(short(e.secondsPerIteration)), \(valPart))"
    }

    /// A short time: 3.1ms, 0.42s, 12s.
    static func short(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "-" }
        if s < 0.01 { return String(format: s < 0.001 ? "%.2fms" : "%.1fms", s * 1000) }
        return s < 10 ? String(format: "%.2fs", s) : String(format: "%.0fs", s)
    }

    /// The progress line's fields: iteration, epoch, loss, last val loss, tokens/s, ETA.
    func fields(it: Int, total: Int, epoch: Double, loss: Double, tps: Double, elapsed: Double) -> [String] {
        let remaining = Double(total - it) * elapsed / Double(max(it, 1))
        // %ld: Int is 64-bit (a %d would print the low 32 bits of a large total)
        return [String(format: "iter %ld/%ld", it, total), String(format: "epoch %.2f", epoch), String(format: "loss %.4f", loss),
                "val " + (lastVal.map { String(format: "%.4f", $0) } ?? "-"), Self.si(tps) + " tok/s", "ETA " + Self.duration(remaining)]
    }

    /// The fields joined by two spaces in at most `width` columns: tokens/s, then the epoch, then the
    /// val loss are left out until the line fits, and what still does not is cut (the fields are ASCII).
    static func fit(_ fields: [String], width: Int) -> String {
        let w = max(0, width)
        var keep = Array(fields.indices)
        var line = fields.joined(separator: "  ")
        for drop in [4, 1, 3] where line.count > w && fields.indices.contains(drop) {
            keep.removeAll { $0 == drop }
            line = keep.map { fields[$0] }.joined(separator: "  ")
        }
        return line.count > w ? String(line.prefix(w)) : line
    }

    static func si(_ x: Double) -> String {
        x >= 1e6 ? String(format: "%.2fM", x / 1e6) : x >= 1e3 ? String(format: "%.1fk", x / 1e3) : String(format: "%.0f", x)
    }

    /// `s` seconds as 42s, 3m07s, 5h02m or 12d03h; "-" when not finite or negative, and past 10^7
    /// days (a forged elapsed time or an absurd --max-iters) as "> 10000000d", never a trap.
    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "-" }
        guard s < 864e12 else { return "> 10000000d" }
        let t = Int(s.rounded())
        if t >= 86400 { return "\(t / 86400)d\(String(format: "%02ld", t % 86400 / 3600))h" }
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

/// SIGINT, SIGTERM and SIGHUP (the terminal went away): the first asks the trainer to save latest and
/// stop after the current iteration or inside the current validation; the second exits at once
/// without touching any file. A failed write to stdout (SIGPIPE is ignored, so a closed pipe is an
/// EPIPE) stops the run the same way: `train … | head -1` saves its work and exits 141.
enum Interrupt {
    nonisolated(unsafe) static var signal: Int32 = 0
    nonisolated(unsafe) static var output: OutputError? = nil
    static var requested: Bool { signal != 0 }
    static var exitCode: Int32 { output?.exitCode ?? 128 + signal }

    static func install() {
        let handler: @convention(c) (Int32) -> Void = { sig in
            if Interrupt.signal != 0 { _exit(128 + sig) }
            Interrupt.signal = sig
        }
        for s in [SIGINT, SIGTERM, SIGHUP] { Foundation.signal(s, handler) }
    }

    /// Stdout failed: stop the run as SIGPIPE (EPIPE) would, or as a failure (exit 1).
    static func outputFailed(_ e: OutputError) {
        if signal == 0 { output = e; signal = e.code == EPIPE ? SIGPIPE : SIGTERM }
    }
}

/// The terminal's width in columns: standard output's, else standard error's (`train … | tee log` on a
/// terminal), else $COLUMNS, else 80. Asked at each redraw (an ioctl), so a resized window is followed.
enum Terminal {
    static let columnsVariable = ProcessInfo.processInfo.environment["COLUMNS"].flatMap { Int($0) }

    static func width() -> Int {
        var ws = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 0 { return Int(ws.ws_col) }
        if ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 0 { return Int(ws.ws_col) }
        if let c = columnsVariable, c > 0 { return c }
        return 80
    }
}
