// Progress output of `charrnn train`: one updating line on a terminal, plain lines otherwise.

import CharRNN
import Foundation

final class ProgressPrinter {
    let tty = isatty(STDOUT_FILENO) != 0
    let evalEvery: Int
    var lastVal: Double?
    var lastDraw = 0.0
    var lineOpen = false

    init(evalEvery: Int) { self.evalEvery = evalEvery }

    func handle(_ e: TrainEvent) {
        switch e {
        case let .iteration(it, total, epoch, loss, _, tps, elapsed):
            let now = Date().timeIntervalSince1970
            let remaining = Double(total - it) * elapsed / Double(max(it, 1))
            let val = lastVal.map { String(format: "%.4f", $0) } ?? "-"
            let line = String(format: "iter %d/%d  epoch %.2f  loss %.4f  val %@  %@ tok/s  ETA %@",
                              it, total, epoch, loss, val, Self.si(tps), Self.duration(remaining))
            if tty {
                if now - lastDraw >= 0.1 || it == total {
                    print("\r\u{1B}[K" + line, terminator: ""); fflush(stdout)
                    lastDraw = now; lineOpen = true
                }
            } else if it % evalEvery == 0 {
                print(line); fflush(stdout)
            }
        case let .validation(it, epoch, v, improved, secs):
            lastVal = v
            closeLine()
            print(String(format: "iter %d  epoch %.2f  val loss %.4f%@  (%.1fs)", it, epoch, v, improved ? "  best" : "", secs))
            fflush(stdout)
        case .saved:
            break
        case let .skipped(it, loss, norm, total):
            closeLine()
            FileHandle.standardError.write(Data("warning: iteration \(it): non-finite loss \(loss) or gradient norm \(norm); update skipped (--skip-nonfinite, \(total) skipped so far)\n".utf8))
        }
    }

    func closeLine() { if lineOpen { print(""); lineOpen = false } }
    func finish() { closeLine() }

    static func si(_ x: Double) -> String {
        x >= 1e6 ? String(format: "%.2fM", x / 1e6) : x >= 1e3 ? String(format: "%.1fk", x / 1e3) : String(format: "%.0f", x)
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "-" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" : t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
    }
}

/// SIGINT/SIGTERM: the first asks the trainer to save and stop after the current iteration; the
/// second exits at once without touching any file.
enum Interrupt {
    nonisolated(unsafe) static var signal: Int32 = 0
    static var requested: Bool { signal != 0 }
    static var exitCode: Int32 { 128 + signal }

    static func install() {
        let handler: @convention(c) (Int32) -> Void = { sig in
            if Interrupt.signal != 0 { _exit(128 + sig) }
            Interrupt.signal = sig
        }
        Foundation.signal(SIGINT, handler)
        Foundation.signal(SIGTERM, handler)
    }
}
