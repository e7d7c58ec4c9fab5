// Plot/LossCSV.swift — reads a run's loss.csv (see Run/LossLog.swift), also while it is being written.
//
// Columns are found by header name (iteration, epoch, train_loss, val_loss), so extra or reordered
// columns are fine, and a UTF-8 byte-order mark before the header is skipped. Only complete lines
// count: a last line without its newline is a row still being written (or torn by a kill) and is
// ignored, as are lines whose field count or iteration does not parse; both are counted, and so are
// rows whose loss is not a finite number (kept, without that loss), so `plot` can say what it did not
// draw. The bytes are parsed in place (no String per line): 10 M rows parse in seconds.

import Foundation

/// One row of a loss log.
package struct LossRow: Sendable, Equatable {
    package var iteration: Int
    package var epoch: Double
    package var trainLoss: Double?
    package var valLoss: Double?
    package init(iteration: Int, epoch: Double, trainLoss: Double?, valLoss: Double?) {
        self.iteration = iteration; self.epoch = epoch; self.trainLoss = trainLoss; self.valLoss = valLoss
    }
}

/// A run's loss log.
package struct LossHistory: Sendable {
    /// Legend name: the run folder's name (or the CSV's base name when it is not `loss.csv`).
    package var name: String
    package var rows: [LossRow]
    /// Complete lines that are not a row (wrong field count, no integer iteration).
    package var unreadableLines = 0
    /// Rows whose train or validation loss field holds something other than a finite number (or empty).
    package var nonNumericLosses = 0

    package init(name: String, rows: [LossRow]) { self.name = name; self.rows = rows }

    /// What `parse` found: the rows and what it could not use.
    package struct Parsed: Sendable {
        package var rows: [LossRow] = []
        package var unreadableLines = 0
        package var nonNumericLosses = 0
    }

    /// Reads `path`: a run folder (its loss.csv) or a CSV file.
    /// - Throws: `LossLogError` naming the file when it cannot be read or has no usable header.
    package static func load(_ path: String) throws -> LossHistory {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let file = exists && isDir.boolValue ? (path as NSString).appendingPathComponent(RunFolder.lossLogName) : path
        guard let handle = FileHandle(forReadingAtPath: file) else {
            throw LossLogError(file: file, message: exists ? "cannot read the loss log" : "no such run folder or CSV file")
        }
        defer { try? handle.close() }
        // 8 MB at a time: only complete lines are parsed, the rest waits for the next chunk
        var parser = Parser(file: file)
        var carry: [UInt8] = []
        while true {
            let chunk: Data
            do { chunk = try handle.read(upToCount: 8 << 20) ?? Data() } catch {
                throw LossLogError(file: file, message: "cannot read the loss log: \((error as NSError).localizedDescription)")
            }
            if chunk.isEmpty { break }
            carry += chunk
            let used = try carry.withUnsafeBytes { try parser.feed($0) }
            carry.removeFirst(used)
        }
        let trimmed = (path as NSString).standardizingPath
        let base = (file as NSString).lastPathComponent
        let name = base == RunFolder.lossLogName ? ((parentPath(file) as NSString).standardizingPath as NSString).lastPathComponent
                                      : (base as NSString).deletingPathExtension
        let parsed = try parser.finish()
        var h = LossHistory(name: name.isEmpty ? trimmed : name, rows: parsed.rows)
        h.unreadableLines = parsed.unreadableLines; h.nonNumericLosses = parsed.nonNumericLosses
        return h
    }

    /// Parses CSV bytes (see the file header) into rows.
    package static func parse(_ bytes: [UInt8], file: String) throws -> [LossRow] {
        try bytes.withUnsafeBytes { try parseReport($0, file: file).rows }
    }

    /// Parses CSV bytes (see the file header): rows and the counts of what was not usable.
    package static func parseReport(_ bytes: UnsafeRawBufferPointer, file: String) throws -> Parsed {
        var p = Parser(file: file)
        let used = try p.feed(bytes)
        _ = used   // the rest (after the last newline) is an incomplete line
        return try p.finish()
    }

    /// An incremental reader of loss-log bytes: `feed` consumes complete lines, so a file can be read
    /// in chunks without holding it in memory.
    struct Parser {
        let file: String
        var columns: (iteration: Int, epoch: Int, train: Int, val: Int, count: Int)? = nil
        var out = Parsed()
        var fields: [Range<Int>] = []
        var sawBOMCheck = false

        init(file: String) { self.file = file }

        /// Parses every complete line of `bytes`; returns how many bytes were consumed (up to and
        /// including the last newline).
        mutating func feed(_ bytes: UnsafeRawBufferPointer) throws -> Int {
            var pos = 0, n = bytes.count
            if !sawBOMCheck && n >= 3 {
                sawBOMCheck = true
                if bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { pos = 3 }   // UTF-8 BOM
            }
            while n > pos && bytes[n - 1] != UInt8(ascii: "\n") { n -= 1 }
            while pos < n {
                var end = pos
                while bytes[end] != UInt8(ascii: "\n") { end += 1 }
                if columns == nil { try header(bytes, pos..<end) } else { row(bytes, pos..<end) }
                pos = end + 1
            }
            return n
        }

        mutating func finish() throws -> Parsed {
            guard columns != nil else { throw LossLogError(file: file, message: "loss log has no header line yet") }
            return out
        }

        mutating func header(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>) throws {
            let names = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[r]), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard let i = names.firstIndex(of: "iteration"), let t = names.firstIndex(of: "train_loss") else {
                throw LossLogError(file: file, message: "not a charrnn loss log: the header has no iteration and train_loss columns")
            }
            columns = (i, names.firstIndex(of: "epoch") ?? -1, t, names.firstIndex(of: "val_loss") ?? -1, names.count)
            fields = [Range<Int>](repeating: 0..<0, count: names.count)
        }

        mutating func row(_ bytes: UnsafeRawBufferPointer, _ r: Range<Int>) {
            guard let c = columns else { return }
            var count = 0, f0 = r.lowerBound
            for i in r.lowerBound...r.upperBound where i == r.upperBound || bytes[i] == UInt8(ascii: ",") {
                if count == c.count { count += 1; break }
                fields[count] = f0..<i; count += 1; f0 = i + 1
            }
            guard count == c.count, let it = parseInt(bytes, fields[c.iteration]) else {
                if !isBlank(bytes, r) { out.unreadableLines += 1 }
                return
            }
            let epoch = c.epoch >= 0 ? parseDouble(bytes, fields[c.epoch]) ?? .nan : .nan
            let train = parseDouble(bytes, fields[c.train]).flatMap { $0.isFinite ? $0 : nil }
            var bad = train == nil && !isBlank(bytes, fields[c.train])
            var val: Double? = nil
            if c.val >= 0 {
                val = parseDouble(bytes, fields[c.val]).flatMap { $0.isFinite ? $0 : nil }
                if val == nil && !isBlank(bytes, fields[c.val]) { bad = true }
            }
            if bad || (train == nil && val == nil) { out.nonNumericLosses += 1 }
            out.rows.append(LossRow(iteration: it, epoch: epoch, trainLoss: train, valLoss: val))
        }
    }

    static func trimmed(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> Range<Int> {
        var lo = r.lowerBound, hi = r.upperBound
        func space(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D }
        while lo < hi && space(b[lo]) { lo += 1 }
        while hi > lo && space(b[hi - 1]) { hi -= 1 }
        return lo..<hi
    }

    static func isBlank(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> Bool { trimmed(b, r).isEmpty }

    /// A decimal integer (optional sign), or nil.
    static func parseInt(_ b: UnsafeRawBufferPointer, _ r0: Range<Int>) -> Int? {
        let r = trimmed(b, r0)
        guard !r.isEmpty, r.count <= 20 else { return nil }
        var i = r.lowerBound, neg = false
        if b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+") { neg = b[i] == UInt8(ascii: "-"); i += 1 }
        guard i < r.upperBound else { return nil }
        var v = 0
        while i < r.upperBound {
            let d = Int(b[i]) - 48
            guard d >= 0 && d <= 9 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = neg ? m.subtractingReportingOverflow(d) : m.addingReportingOverflow(d)
            if o1 || o2 { return nil }
            v = s; i += 1
        }
        return v
    }

    /// A number as Swift's `Double(String)` reads it (nan/inf included), or nil.
    static func parseDouble(_ b: UnsafeRawBufferPointer, _ r0: Range<Int>) -> Double? {
        let r = trimmed(b, r0)
        guard !r.isEmpty, r.count <= 64 else { return nil }
        return Double(Substring(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self))
    }
}
