// Run/LossLog.swift — the per-run loss CSV that a spreadsheet, pandas or gnuplot reads as it is.
//
// Header: iteration,epoch,train_loss,val_loss,learning_rate,grad_norm,tokens_per_sec,elapsed_sec
// One row per --log-every iterations (and at every validation); val_loss is empty when not evaluated.
// Rows are flushed as written, so a plot can follow a running job. On resume the file is cut back
// to the rows up to the checkpoint's iteration (dropping a torn last line and rows the resumed run
// will write again) and then appended to.
//
// The file a run appends to is always its own: opening the log replaces `loss.csv` atomically
// (`AtomicFile.replace`, a new inode holding the header, or the rows kept) and appends to that
// descriptor. A `loss.csv` that is a symbolic or hard link into another run (`cp -as`/`cp -al` of a run
// folder), or another user's file, is never written through; `RunFolder.checkOwnedFiles` refuses a
// symbolic link before a resume so that a link someone made on purpose is not silently replaced.

import Foundation

/// A loss log (loss.csv) that cannot be written or read.
package struct LossLogError: Error, CustomStringConvertible {
    package let file: String
    package let message: String
    package init(file: String, message: String) { self.file = file; self.message = message }
    package var description: String { "\(file): \(message)" }
}

package final class LossLog {
    package static let header = "iteration,epoch,train_loss,val_loss,learning_rate,grad_norm,tokens_per_sec,elapsed_sec"
    package let path: String
    private let handle: UnsafeMutablePointer<FILE>

    /// Opens (creating, or truncating back to `keepThrough` iterations when resuming) the CSV at `path`.
    /// - Throws: `LossLogError` when the file cannot be opened for writing.
    package init(path: String, keepThrough iteration: Int?) throws {
        self.path = path
        var keep = Data()
        if let iteration, let existing = try? AtomicFile.read(from: path) {
            keep = LossLog.prefix(of: Data(existing), through: iteration)
        }
        if keep.isEmpty { keep = Data((LossLog.header + "\n").utf8) }
        let fd: Int32
        do { fd = try AtomicFile.replace(path, with: [UInt8](keep)) } catch let e as FileIOError {
            throw LossLogError(file: path, message: "cannot write loss log: \(String(cString: strerror(e.code)))")
        }
        guard let f = fdopen(fd, "a") else {
            let code = errno
            close(fd)
            throw LossLogError(file: path, message: "cannot write loss log: \(String(cString: strerror(code)))")
        }
        handle = f
    }

    deinit { fclose(handle) }

    /// The header and the complete rows whose iteration is ≤ `iteration`.
    static func prefix(of data: Data, through iteration: Int) -> Data {
        var out = Data()
        var first = true
        var start = data.startIndex
        while let nl = data[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = data[start..<nl]
            start = data.index(after: nl)
            if first {
                guard String(decoding: line, as: UTF8.self) == header else { return Data() }
                first = false
            } else {
                let field = line.prefix { $0 != UInt8(ascii: ",") }
                guard let it = Int(String(decoding: field, as: UTF8.self)), it <= iteration else { break }
            }
            out.append(line); out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Appends one row and flushes it.
    package func append(iteration: Int, epoch: Double, trainLoss: Double, valLoss: Double?, lr: Float,
                       gradNorm: Float, tokensPerSec: Double, elapsed: Double) {
        let val = valLoss.map { fmt($0, 6) } ?? ""
        let line = "\(iteration),\(fmt(epoch, 4)),\(fmt(trainLoss, 6)),\(val),\(lr),\(fmt(Double(gradNorm), 6)),\(fmt(tokensPerSec, 1)),\(fmt(elapsed, 3))\n"
        fputs(line, handle)
        fflush(handle)
    }

    private func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
}
