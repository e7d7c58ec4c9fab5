// Progress output of `charrnn train`: one updating line on a terminal, plain lines otherwise.

import CharRNN
import Foundation

final class ProgressPrinter {
    let out = Output.standard
    var tty: Bool { out.tty }
    let evalEvery: Int
    var lastVal: Double?
    var lastDraw = 0.0
    var lineOpen = false
    /// The first failed write to stdout (a closed pipe, a full disk): progress is no longer printed,
    /// and the run is asked to stop like a signal (`Interrupt.outputFailed`).
    private(set) var failure: OutputError?

    /// The whole session's time, printed once from its first iterations (RunEstimate).
    var estimate: RunEstimate?

    init(evalEvery: Int) { self.evalEvery = evalEvery }

    /// The progress of `trainer`'s run, with its time estimate.
    convenience init(trainer: Trainer) {
        self.init(evalEvery: trainer.meta.train.evalEvery)
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
            let now = Date().timeIntervalSince1970
            let remaining = Double(total - it) * elapsed / Double(max(it, 1))
            let val = lastVal.map { String(format: "%.4f", $0) } ?? "-"
            // %ld: Int is 64-bit (a %d would print the low 32 bits of a large total)
            let line = String(format: "iter %ld/%ld  epoch %.2f  loss %.4f  val %@  %@ tok/s  ETA %@",
                              it, total, epoch, loss, val, Self.si(tps), Self.duration(remaining))
            if tty {
                if now - lastDraw >= 0.1 || it == total {
                    try out.write("\r\u{1B}[K" + line)
                    lastDraw = now; lineOpen = true
                }
            } else if it % evalEvery == 0 {
                try out.line(line); try out.flush()
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
