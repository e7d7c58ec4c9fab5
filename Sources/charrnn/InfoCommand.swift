// charrnn info — what is in a checkpoint: format, model, vocabulary, corpus, progress, optimizer.

import ArgumentParser
import CharRNN
import Foundation

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Describe a checkpoint: format, model, vocabulary, corpus, training progress.",
        discussion: "The tensors are checked against the metadata too; a mismatch is reported as an error.")

    @Argument(help: ArgumentHelp("Run folder or .safetensors file (a folder means its \(RunFolder.bestName)).", valueName: "RUN_DIR_OR_FILE"))
    var checkpoint: String
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    /// Everything `info` reports; also its --json output.
    struct Info: Codable {
        var file: String
        var fileBytes: Int
        var tensors: Int
        var format: String
        var formatVersion: Int
        var cell: String
        var layers: Int
        var hidden: Int
        var embed: Int
        var dropout: Float
        var parameters: Int
        var vocabSize: Int
        var unit: String
        var firstTokens: [String]
        /// The 10 rarest tokens with their counts in the training corpus; nil without `vocab_counts`.
        var rarestTokens: [TokenCount]?
        var corpus: CorpusInfo
        var iteration: Int
        var epoch: Double
        var bestValLoss: Double?
        var bestIteration: Int?
        var lastValLoss: Double?
        var trainingSeconds: Double
        var optimizer: String
        var lr: Float
        var currentLR: Float
        var seq: Int
        var batch: Int
        var hasOptimizerState: Bool
        var initFrom: String?
    }

    struct TokenCount: Codable { var token: String; var count: Int }

    func run() throws { try reportingErrors(info) }

    static func gather(path: String) throws -> Info {
        let c = try Checkpoint.load(path: path)
        // Check that every model tensor is present with the shape the metadata implies.
        try Checkpoint.restore(c, model: CharRNNModel(config: c.meta.model, maxT: 1, maxB: 1))
        let m = c.meta, p = m.progress
        let bytes = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int ?? 0
        var rarest: [TokenCount]? = nil
        if let counts = VocabCounts.decode(m) {
            let order = counts.indices.sorted { (counts[$0], $0) < (counts[$1], $1) }
            rarest = order.prefix(10).map { TokenCount(token: m.vocabulary.tokens[$0], count: counts[$0]) }
        }
        return Info(file: path, fileBytes: bytes, tensors: c.file.tensors.count,
                    format: c.file.metadata["format"] ?? "?", formatVersion: Int(c.file.metadata["format_version"] ?? "") ?? 0,
                    cell: m.model.cell.rawValue, layers: m.model.layers, hidden: m.model.hidden, embed: m.model.embed,
                    dropout: m.model.dropout, parameters: m.model.parameterCount, vocabSize: m.vocabulary.count,
                    unit: m.vocabulary.unit.rawValue, firstTokens: Array(m.vocabulary.tokens.prefix(20)), rarestTokens: rarest,
                    corpus: m.corpus, iteration: p.iteration, epoch: m.epoch, bestValLoss: p.bestValLoss,
                    bestIteration: p.bestValLoss == nil ? nil : p.bestIteration, lastValLoss: p.lastValLoss,
                    trainingSeconds: p.elapsed, optimizer: m.train.optim.rawValue, lr: m.train.lr, currentLR: p.lr,
                    seq: m.train.seq, batch: m.train.batch, hasOptimizerState: c.hasOptimizerState,
                    initFrom: m.extra[RunContinuation.initFromKey])
    }

    /// A token made visible: control characters escaped, space as ␣.
    static func show(_ t: String) -> String {
        if t == " " { return "␣" }
        var s = ""
        for u in t.unicodeScalars {
            switch u {
            case "\n": s += "\\n"
            case "\r": s += "\\r"
            case "\t": s += "\\t"
            default: s += u.value < 0x20 || u.value == 0x7F ? "\\u{\(String(u.value, radix: 16))}" : String(u)
            }
        }
        return s
    }

    func info() throws {
        let path = try RunFolder.resolve(checkpoint)
        let i = try Self.gather(path: path)
        if json {
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            // a NaN or infinite loss (a run whose validation overflowed) as a string, as `eval --json` does
            enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            try say(String(decoding: try enc.encode(i), as: UTF8.self))
            return
        }
        let input = i.embed > 0 ? "embedding \(i.embed)" : "one-hot input"
        let rarest = i.rarestTokens.map { $0.map { "\(Self.show($0.token))×\($0.count)" }.joined(separator: " ") } ?? "n/a (no vocab_counts in this checkpoint)"
        let best = i.bestValLoss.map { String(format: "%.4f at iteration %d", $0, i.bestIteration ?? 0) } ?? "none yet"
        let rows: [(String, String)] = [
            ("file", "\(i.file) (\(Self.size(i.fileBytes)), \(i.tensors) tensors)"),
            ("format", "\(i.format) version \(i.formatVersion)"),
            ("model", "\(i.cell), \(i.layers) layer\(i.layers == 1 ? "" : "s") × \(i.hidden) hidden, \(input), dropout \(i.dropout)"),
            ("parameters", Self.grouped(i.parameters)),
            ("vocabulary", "\(i.vocabSize) tokens (\(i.unit))"),
            ("first", i.firstTokens.map(Self.show).joined(separator: " ")),
            ("rarest", rarest),
            ("corpus", "\(i.corpus.name) (\(i.corpus.path), \(Self.size(i.corpus.bytes)), \(Self.grouped(i.corpus.tokens)) tokens\(i.corpus.hash.map { ", hash \($0)" } ?? ""))"),
            ("iterations", "\(i.iteration) (epoch \(String(format: "%.2f", i.epoch)))"),
            ("best val loss", best),
            ("last val loss", i.lastValLoss.map { String(format: "%.4f", $0) } ?? "none yet"),
            ("training time", ProgressPrinter.duration(i.trainingSeconds)),
            ("optimizer", "\(i.optimizer), lr \(i.lr) (now \(i.currentLR)), seq \(i.seq), batch \(i.batch)"),
            ("resumable", i.hasOptimizerState ? "yes (optimizer state and carried hidden state)" : "no optimizer state"),
        ] + (i.initFrom.map { [("init from", $0)] } ?? [])
        for (k, v) in rows { try say(k.padding(toLength: 15, withPad: " ", startingAt: 0) + v) }
    }

    static func size(_ n: Int) -> String {
        n >= 1 << 20 ? String(format: "%.1f MB", Double(n) / 1048576) : n >= 1 << 10 ? String(format: "%.1f kB", Double(n) / 1024) : "\(n) bytes"
    }

    static func grouped(_ n: Int) -> String {
        let f = NumberFormatter(); f.numberStyle = .decimal; f.groupingSeparator = ","; f.locale = Locale(identifier: "en_US_POSIX")
        f.usesGroupingSeparator = true; f.groupingSize = 3
        return f.string(from: NSNumber(value: n)) ?? "\(n)"
    }
}
