// The one writer of standard output for every command. It buffers (64 KiB, or per write on a
// terminal) and writes with write(2), so a failed write is seen where it happens: ENOSPC on a full
// disk, EPIPE on a closed pipe (SIGPIPE is ignored process-wide, see `CharRNNCommand.main`), EIO.
// The first failure is kept and thrown from then on; the commands turn it into one line on stderr and
// a non-zero exit (`OutputError.exitCode`). `train` instead stops the run like a signal (Progress.swift).

import Foundation

/// Writing to standard output failed.
struct OutputError: Error, CustomStringConvertible {
    let code: Int32
    var description: String { "cannot write to standard output: \(String(cString: strerror(code)))" }
    /// 141 (128 + SIGPIPE) for a closed pipe, as if the signal had ended the process; 1 otherwise.
    var exitCode: Int32 { code == EPIPE ? 128 + SIGPIPE : 1 }
}

final class Output {
    static let standard = Output(fd: STDOUT_FILENO)

    let fd: Int32
    let tty: Bool
    private var buffer: [UInt8] = []
    private(set) var failure: OutputError?

    init(fd: Int32) {
        self.fd = fd
        tty = isatty(fd) != 0
        buffer.reserveCapacity(1 << 16)
    }

    func write(bytes: some Sequence<UInt8>) throws(OutputError) {
        if let failure { throw failure }
        buffer.append(contentsOf: bytes)
        if tty || buffer.count >= 1 << 16 { try flush() }
    }

    func write(_ s: String) throws(OutputError) { try write(bytes: s.utf8) }

    /// `s` and a newline.
    func line(_ s: String) throws(OutputError) { try write(bytes: s.utf8); try write(bytes: CollectionOfOne(UInt8(ascii: "\n"))) }

    /// Writes out what is buffered.
    func flush() throws(OutputError) {
        if let failure { throw failure }
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = OutputError(code: errno)
                failure = e
                buffer.removeAll()
                throw e
            }
            done += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// `print` for the commands: one line to `Output.standard`.
func say(_ s: String) throws(OutputError) { try Output.standard.line(s) }
