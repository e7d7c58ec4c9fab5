// Run/LossLog.swift — the per-run loss CSV that a spreadsheet, pandas or gnuplot reads as it is.
//
// Header: iteration,epoch,train_loss,val_loss,learning_rate,grad_norm,tokens_per_sec,elapsed_sec,event
// One row per --log-every iterations (and at every validation); val_loss is empty when not evaluated.
// `event` is empty except on the validation row where a planned stop ended the run: `early_stop`
// (--patience) or `max_time` (--max-time). A log written before the column existed (`legacyHeader`)
// gets it, an empty field on every kept row, when a resume rewrites it, so each file has one shape.
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
    package static let header = legacyHeader + ",event"
    /// The header of logs written before the `event` column.
    package static let legacyHeader = "iteration,epoch,train_loss,val_loss,learning_rate,grad_norm,tokens_per_sec,elapsed_sec"
    /// `event` of the row where --patience stopped the run.
    package static let earlyStopEvent = "early_stop"
    /// `event` of the row where --max-time stopped the run.
    package static let maxTimeEvent = "max_time"
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

    /// The header and the complete rows whose iteration is ≤ `iteration` (a legacy log's given the
    /// `event` column).
    static func prefix(of data: Data, through iteration: Int) -> Data {
        var out = Data()
        var first = true, legacy = false
        var start = data.startIndex
        while let nl = data[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = data[start..<nl]
            start = data.index(after: nl)
            if first {
                let h = String(decoding: line, as: UTF8.self)
                guard h == header || h == legacyHeader else { return Data() }
                legacy = h == legacyHeader
                first = false
                out.append(contentsOf: header.utf8); out.append(UInt8(ascii: "\n"))
                continue
            }
            let field = line.prefix { $0 != UInt8(ascii: ",") }
            guard let it = Int(String(decoding: field, as: UTF8.self)), it <= iteration else { break }
            out.append(line)
            if legacy { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Appends one row and flushes it; `event` (one of the `…Event` names, no comma) marks a planned stop.
    package func append(iteration: Int, epoch: Double, trainLoss: Double, valLoss: Double?, lr: Float,
                       gradNorm: Float, tokensPerSec: Double, elapsed: Double, event: String? = nil) {
        let val = valLoss.map { fmt($0, 6) } ?? ""
        let line = "\(iteration),\(fmt(epoch, 4)),\(fmt(trainLoss, 6)),\(val),\(lr),\(fmt(Double(gradNorm), 6)),\(fmt(tokensPerSec, 1)),\(fmt(elapsed, 3)),\(event ?? "")\n"
        fputs(line, handle)
        fflush(handle)
    }

    private func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
}
