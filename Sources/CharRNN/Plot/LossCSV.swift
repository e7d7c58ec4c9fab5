// Plot/LossCSV.swift — reads a run's loss.csv (see Train/LossLog.swift), also while it is being written.
//
// Columns are found by header name (iteration, epoch, train_loss, val_loss), so extra or reordered
// columns are fine. Only complete lines count: a last line without its newline is a row still being
// written (or torn by a kill) and is ignored, as are lines whose fields do not parse.

import Foundation

/// One row of a loss log.
public struct LossRow: Sendable, Equatable {
    public var iteration: Int
    public var epoch: Double
    public var trainLoss: Double?
    public var valLoss: Double?
    public init(iteration: Int, epoch: Double, trainLoss: Double?, valLoss: Double?) {
        self.iteration = iteration; self.epoch = epoch; self.trainLoss = trainLoss; self.valLoss = valLoss
    }
}

/// A run's loss log.
public struct LossHistory: Sendable {
    /// Legend name: the run folder's name (or the CSV's base name when it is not `loss.csv`).
    public var name: String
    public var rows: [LossRow]

    public init(name: String, rows: [LossRow]) { self.name = name; self.rows = rows }

    /// Reads `path`: a run folder (its loss.csv) or a CSV file.
    /// - Throws: `LossLogError` naming the file when it cannot be read or has no usable header.
    public static func load(_ path: String) throws -> LossHistory {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let file = exists && isDir.boolValue ? (path as NSString).appendingPathComponent(RunFolder.lossLogName) : path
        guard let data = FileManager.default.contents(atPath: file) else {
            throw LossLogError(file: file, message: exists ? "cannot read the loss log" : "no such run folder or CSV file")
        }
        let trimmed = (path as NSString).standardizingPath
        let base = (file as NSString).lastPathComponent
        let name = base == RunFolder.lossLogName ? ((((file as NSString).deletingLastPathComponent) as NSString).standardizingPath as NSString).lastPathComponent
                                      : (base as NSString).deletingPathExtension
        return LossHistory(name: name.isEmpty ? trimmed : name, rows: try parse(Array(data), file: file))
    }

    /// Parses CSV bytes (see the file header).
    public static func parse(_ bytes: [UInt8], file: String) throws -> [LossRow] {
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        // The piece after the last newline is incomplete (empty when the file ends with a newline).
        lines.removeLast()
        guard let head = lines.first else {
            throw LossLogError(file: file, message: "loss log has no header line yet")
        }
        let names = String(decoding: head, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",").map(String.init)
        guard let iCol = names.firstIndex(of: "iteration"), let tCol = names.firstIndex(of: "train_loss") else {
            throw LossLogError(file: file, message: "not a charrnn loss log: the header has no iteration and train_loss columns")
        }
        let eCol = names.firstIndex(of: "epoch"), vCol = names.firstIndex(of: "val_loss")
        var rows: [LossRow] = []
        for line in lines.dropFirst() {
            let f = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                .split(separator: ",", omittingEmptySubsequences: false)
            guard f.count == names.count, let it = Int(f[iCol]) else { continue }
            let epoch = eCol.flatMap { Double(f[$0]) } ?? Double.nan
            let train = Double(f[tCol]).flatMap { $0.isFinite ? $0 : nil }
            let val = vCol.flatMap { Double(f[$0]) }.flatMap { $0.isFinite ? $0 : nil }
            rows.append(LossRow(iteration: it, epoch: epoch, trainLoss: train, valLoss: val))
        }
        return rows
    }
}
