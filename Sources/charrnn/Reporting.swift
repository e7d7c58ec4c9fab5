// charrnn/Reporting.swift — how every subcommand reports: one `error: …` line on stderr and a
// non-zero exit for a failure (`reportingErrors`, `printError`), and the set-up lines `train` holds
// back until a run starts (`SetupLog`). Standard output itself is Output.swift's.

import ArgumentParser
import CharRNN
import Foundation

/// Informational lines of `train`'s set-up (corpus summary, cache, memory estimate) are held back
/// until the run starts, so a refused run prints only its one-line error.
enum SetupLog {
    static var held: [String]? = nil
    static func info(_ s: String) { if held != nil { held!.append(s) } else { printError(s) } }
    static func hold() { held = [] }
    static func release() { let h = held ?? []; held = nil; h.forEach(printError) }
    static func discard() { held = nil }
}

/// Runs a command's work, then flushes standard output; a library error or a failed write becomes one
/// `error: …` line on stderr and a non-zero exit (`OutputError.exitCode`).
func reportingErrors(_ work: () throws -> Void) throws {
    do {
        try work()
        try Output.standard.flush()
    } catch let e as OutputError {
        printError("error: \(e)")
        throw ExitCode(e.exitCode)
    } catch let e as ExitCode {
        throw e
    } catch {
        try? Output.standard.flush()
        printError("error: \(error)")
        throw ExitCode.failure
    }
}

/// One line on stderr with write(2). Errors are ignored: there is nowhere left to report them, and
/// FileHandle.write would trap on a closed stderr (a terminal that went away with SIGHUP).
func printError(_ s: String) {
    let bytes = Array((s + "\n").utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
}
