// charrnn info — what is in a checkpoint: format, model, vocabulary, corpus, progress, optimizer.
// The facts are the library's `CheckpointSummary` (also GET /v1/models of `serve`); this file prints them.

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

    func run() throws { try reportingErrors(info) }

    /// A token made visible: control characters escaped, space as ␣, the unknown token (the one
    /// entry whose text is "") as <unk>.
    static func show(_ t: String) -> String {
        if t == " " { return "␣" }
        if t.isEmpty { return "<unk>" }
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
        let i = try CheckpointSummary.read(path: path)
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
            ("output layer", Self.outputLayer(i)),
            ("vocabulary", "\(i.vocabSize) tokens (\(i.unit))"),
            ("text", "unit \(i.unit), normalization \(i.normalize ?? "none")"),
            ("unknown token", i.unknownID.map { "<unk> (id \($0))" } ?? "none (characters outside the vocabulary are skipped)"),
            ("first", i.firstTokens.map(Self.show).joined(separator: " ")),
            ("rarest", rarest),
            ("corpus", "\(i.corpus.name) (\(i.corpus.path), \(Self.size(i.corpus.bytes)), \(Self.grouped(i.corpus.tokens)) tokens\(i.corpus.hash.map { ", hash \($0)" } ?? ""))"),
            ("iterations", "\(i.iteration) (epoch \(String(format: "%.2f", i.epoch)))"),
            ("best val loss", best),
            ("last val loss", i.lastValLoss.map { String(format: "%.4f", $0) } ?? "none yet"),
            ("training time", ProgressPrinter.duration(i.trainingSeconds)),
            ("optimizer", "\(i.optimizer), lr \(i.lr) (now \(i.currentLR)), seq \(i.seq), batch \(i.batch)"),
            ("precision", Self.precision(i.precision)),
            ("resumable", i.hasOptimizerState ? "yes (optimizer state and carried hidden state)" : "no optimizer state"),
        ] + (i.initFrom.map { [("init from", $0)] } ?? [])
        for (k, v) in rows + Self.scheduleRows(i) { try say(k.padding(toLength: 15, withPad: " ", startingAt: 0) + v) }
    }

    /// The training products' arithmetic (the weights in the file are float32 either way).
    static func precision(_ p: String?) -> String {
        switch p {
        case "bf16"?: return "bf16 (products on bfloat16 operands, float32 sums and master weights; --resume keeps it)"
        case "fp32"?, nil: return "fp32"
        case let other?: return other
        }
    }

    /// The learning-rate schedule and early stopping (issue 20).
    static func scheduleRows(_ i: CheckpointSummary) -> [(String, String)] {
        let schedule = i.lrSchedule ?? "step"
        var s = schedule
        if let w = i.warmupIters, w > 0 { s += ", warmup \(w) iterations" }
        if let m = i.minLR { s += schedule == "cosine" ? ", down to \(m)" : ", floor \(m)" }
        var rows = [("lr schedule", s)]
        rows.append(("cold starts", i.coldStartEvery.map { "each stream restarts from a zero state every \($0) minibatch\($0 == 1 ? "" : "es") (--cold-start-every)" }
            ?? "none: each stream's state carried from the start of the run (char-rnn)"))
        if let p = i.patience {
            let delta = i.minDelta.map { " by at least \(Bounds.show($0))" } ?? ""
            let now = i.validationsWithoutImprovement ?? 0
            let state = now >= p ? "stopped early (resume with a larger --patience, or 0, to train on)" : "\(now) so far"
            rows.append(("patience", "\(p) validations without improving the best val loss\(delta); \(state)"))
        }
        return rows
    }

    /// "full softmax", or the adaptive softmax's cutoffs, head and tails.
    static func outputLayer(_ i: CheckpointSummary) -> String {
        guard i.softmax == "adaptive", let c = i.softmaxCutoffs, let head = c.first else { return "full softmax" }
        let div = i.softmaxDivValue.map { ", div \(String(format: "%g", $0))" } ?? ""
        return "adaptive softmax, cutoffs \(c.map(String.init).joined(separator: ",")) (head of \(head) tokens + \(c.count) tail\(c.count == 1 ? "" : "s")\(div))"
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
