// How `train` loads its corpus, as the CLI sees it: the token-cache flags and the loading progress
// bar. The loading itself (cache, memory check, summary lines) is `TrainingRun`'s.

import ArgumentParser
import CharRNN
import Foundation

struct TokenCacheOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Folder for the first-pass token cache (default: <out>/\(RunFolder.cacheDirName)).", valueName: "DIR"))
    var cacheDir: String?
    @Flag(help: "Do not read or write the token cache.")
    var noCache = false

    var setting: TrainingRun.TokenCache { noCache ? .off : cacheDir.map { .at($0) } ?? .beside }
}

func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }

/// One updating line on stderr while a corpus is decoded: bytes, rate, ETA. Silent when stderr is not
/// a terminal or the load is quick.
final class LoadProgressBar {
    /// stderr is a terminal and --progress draws a bar there (not plain or none, nor auto under mpirun).
    let tty: Bool
    init(mode: ProgressMode = .auto) {
        tty = isatty(STDERR_FILENO) != 0 && ProgressOptions.resolve(mode, tty: true, mpirun: MPI.launchedByMPIRun) == .bar
    }
    let start = Date()
    var lastDraw = 0.0
    var drawn = false

    func update(done: Int, total: Int) {
        guard tty, total > 0 else { return }
        let elapsed = Date().timeIntervalSince(start)
        guard elapsed > 0.3, elapsed - lastDraw >= 0.1 || done == total else { return }
        lastDraw = elapsed
        let rate = Double(done) / elapsed
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 30, filled = Int(Double(width) * Double(done) / Double(total))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "loading [%@] %@ / %@  %.0f MB/s  ETA %@", bar, mb(done), mb(total),
                          rate / 1_048_576, ProgressPrinter.duration(eta))
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line.prefix(max(0, Terminal.width() - 1))).utf8))
        drawn = true
    }

    func finish() { if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)); drawn = false } }
}
