// Train/Continue.swift — starting from an existing checkpoint: checks for `--resume` (has the corpus
// changed?), `--allow-new-corpus` and `--init-from` (a corpus encoded with the checkpoint's
// vocabulary), fine-tuning (a new run from the weights), the `vocab_counts` metadata entry, and the
// clean-up of temp files a killed writer left behind.
//
// Unknown characters: until the vocabulary has an unknown-token id (issue 4), a corpus with tokens
// outside the checkpoint's vocabulary is refused with the list of those tokens.

import Foundation

/// `vocab_counts` metadata: how often each token of the vocabulary occurs in the training corpus,
/// as a JSON array of integers in vocabulary (id) order.
public enum VocabCounts {
    public static let key = "vocab_counts"

    public static func encode(_ counts: [Int]) -> String {
        "[" + counts.map(String.init).joined(separator: ",") + "]"
    }

    /// The counts recorded in `meta`, or nil when absent, malformed or not one per token.
    public static func decode(_ meta: CheckpointMeta) -> [Int]? {
        guard let s = meta.extra[key], let a = try? JSONDecoder().decode([Int].self, from: Data(s.utf8)),
              a.count == meta.vocabulary.count else { return nil }
        return a
    }
}

public enum RunContinuation {
    /// `init_from` metadata: the checkpoint a fine-tuning run started from.
    public static let initFromKey = "init_from"

    /// Compares the corpus file at `path` with what a checkpoint recorded (size in bytes and, when the
    /// checkpoint has it, the content hash).
    /// - Returns: a description of the difference, or nil when the file is the same.
    /// - Throws: `TextError.cannotRead`.
    public static func corpusChange(recorded: CorpusInfo, path: String) throws -> String? {
        let bytes = try fileSize(path)
        if bytes != recorded.bytes {
            return "\(path) has \(bytes) bytes but the run was trained on \(recorded.bytes) (\(recorded.path))"
        }
        if let h = recorded.hash {
            let now = try CorpusHash.file(path)
            if now != h { return "\(path) has content hash \(now) but the run was trained on \(h) (\(recorded.path))" }
        }
        return nil
    }

    /// Size of the file at `path` in bytes.
    public static func fileSize(_ path: String) throws -> Int {
        guard let n = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int else {
            throw TextError.cannotRead(file: path, reason: "no such file or not readable")
        }
        return n
    }

    /// Loads the corpus at `path` as ids of `vocabulary` (a checkpoint's), for fine-tuning or
    /// continuing on a new text.
    /// - Throws: `TextError` for unreadable or invalid text, `TrainError.invalid` when the text is empty
    ///   or has tokens the vocabulary lacks and the vocabulary has no unknown token to map them to.
    public static func corpus(path: String, vocabulary: Vocabulary, normalize: Normalization) throws -> (Corpus, CorpusInfo) {
        let enc = try vocabulary.encodeFile(path: path, normalize: normalize)
        if enc.unknownCount > 0 && vocabulary.unknownID == nil {
            let shown = enc.unknown.prefix(20).map { $0.debugDescription }.joined(separator: " ")
            throw TrainError.invalid("\(path): \(enc.unknownCount) tokens are not in the checkpoint's vocabulary of \(vocabulary.count) (\(shown)); "
                                     + "the vocabulary has no unknown token to map them to, so the corpus must use only its characters")
        }
        guard !enc.ids.isEmpty else { throw TextError.empty(file: path) }
        let corpus = Corpus(ids: enc.ids, vocabulary: vocabulary, name: path)
        let info = CorpusInfo(name: corpus.name, path: path, bytes: enc.bytes, tokens: corpus.count, hash: try CorpusHash.file(path))
        return (corpus, info)
    }

    /// Removes `.<name>.tmp-*` files that an atomic write killed before its rename left in `runDir`.
    /// Only call this while no other process writes to the run.
    /// - Returns: the names removed.
    @discardableResult
    public static func removeStaleTempFiles(runDir: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []
        var removed: [String] = []
        for n in names where n.hasPrefix(".") && n.contains(".tmp-") {
            if (try? FileManager.default.removeItem(atPath: (runDir as NSString).appendingPathComponent(n))) != nil { removed.append(n) }
        }
        return removed
    }
}

extension Trainer {
    /// A new run (fresh optimizer state, new run directory, iteration 0) whose model starts from the
    /// weights of `checkpoint` (char-rnn's `-init_from`). The model config is the checkpoint's, with
    /// `dropout` replacing its dropout when given; `corpus` must use the checkpoint's vocabulary.
    public convenience init(initFrom checkpoint: Checkpoint.Loaded, corpus: Corpus, corpusInfo: CorpusInfo,
                            train: TrainConfig, dropout: Float?, runDir: String) throws {
        guard corpus.vocabulary == checkpoint.meta.vocabulary else {
            throw TrainError.invalid("\(checkpoint.path): the corpus is not encoded with the checkpoint's vocabulary")
        }
        // Read the weights first (into a batch-1 model), so a bad file fails before the run directory exists.
        let source = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: source)
        var config = checkpoint.meta.model
        if let dropout { config.dropout = dropout }     // dropout has no parameters: same layout
        try self.init(corpus: corpus, corpusInfo: corpusInfo, model: config, train: train, runDir: runDir)
        model.params.ptr.update(from: source.params.ptr, count: model.layout.count)
        meta.extra[RunContinuation.initFromKey] = checkpoint.path
    }
}
