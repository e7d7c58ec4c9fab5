// Run/Continue.swift — starting from an existing checkpoint: its tensors read once into what will
// continue it (`ResumePoint` for `--resume`, `FineTuneSource` for `--init-from`), a corpus encoded with
// the checkpoint's vocabulary (`--allow-new-corpus`, `--init-from`), fine-tuning (a new run from the
// weights), the `vocab_counts` metadata entry, and the clean-up of temp files a killed writer left
// behind. `TrainingRun` decides which of these a `charrnn train` does.
//
// Unknown characters: characters outside the checkpoint's vocabulary map to its unknown token when it
// has one (--min-count/--max-vocab); otherwise the corpus is refused with the list of those characters.

import Foundation

/// `vocab_counts` metadata: how often each token of the vocabulary occurs in the training corpus,
/// as a JSON array of integers in vocabulary (id) order.
package enum VocabCounts {
    package static let key = "vocab_counts"

    package static func encode(_ counts: [Int]) -> String {
        "[" + counts.map(String.init).joined(separator: ",") + "]"
    }

    /// The counts recorded in `meta`, or nil when absent, malformed or not one per token.
    package static func decode(_ meta: CheckpointMeta) -> [Int]? {
        guard let s = meta.extra[key], let a = try? JSONDecoder().decode([Int].self, from: Data(s.utf8)),
              a.count == meta.vocabulary.count else { return nil }
        return a
    }
}

package enum RunContinuation {
    /// `init_from` metadata: the checkpoint a fine-tuning run started from.
    package static let initFromKey = "init_from"

    /// Size of the file at `path` in bytes.
    package static func fileSize(_ path: String) throws -> Int {
        guard let n = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int else {
            throw TextError.cannotRead(file: path, reason: "no such file or not readable")
        }
        return n
    }

    /// Loads the corpus at `path` as ids of `vocabulary` (a checkpoint's), for fine-tuning or
    /// continuing on a new text. The returned info has no content hash; the caller adds it.
    /// - Throws: `TextError` for unreadable, invalid or empty text, `TrainError.tokensOutsideVocabulary`
    ///   when it has tokens the vocabulary lacks and the vocabulary has no unknown token to map them to.
    package static func corpus(path: String, vocabulary: Vocabulary, normalize: Normalization) throws -> (Corpus, CorpusInfo) {
        let enc = try vocabulary.encodeFile(path: path, normalize: normalize)
        if enc.unknownCount > 0 && vocabulary.unknownID == nil {
            throw TrainError.tokensOutsideVocabulary(file: path, count: enc.unknownCount, vocabularySize: vocabulary.count,
                                                     shown: enc.unknown.prefix(20).map { $0.debugDescription })
        }
        guard !enc.ids.isEmpty else { throw TextError.empty(file: path) }
        let corpus = Corpus(ids: enc.ids, vocabulary: vocabulary, name: path)
        return (corpus, CorpusInfo(name: corpus.name, path: absolutePath(path), bytes: enc.bytes, tokens: corpus.count, hash: enc.contentHash))
    }

    /// `path` as an absolute path (the working directory prepended to a relative one; links and ".."
    /// kept as given, so a link to the current version of a text keeps meaning that link), which is what
    /// a checkpoint records, so `--resume` finds the corpus again from any working directory.
    package static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") || path.isEmpty { return path }
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil else { return path }
        let cwd = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let rest = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        return cwd == "/" ? "/" + rest : cwd + "/" + rest
    }

    /// The corpus paths a checkpoint recorded, to read on `--resume` without a corpus argument. Older
    /// checkpoints recorded paths as given on the command line; one that is relative and not found
    /// from here is refused with what to pass.
    /// - Throws: `TrainError.config` naming the path and the command that works.
    package static func recordedCorpus(_ corpus: CorpusInfo, checkpoint: String) throws -> [String] {
        let paths = corpus.paths ?? [corpus.path]
        for p in paths where !p.hasPrefix("/") && !RunFolder.exists(p) {
            throw TrainError.config("the run was trained on \(p.debugDescription), a path relative to the folder it was started from, and there is no such file from \(absolutePath(".").debugDescription): run from that folder, or pass the corpus after the run (charrnn train \(Setting.resume) \(shellQuoted(checkpoint)) PATH)")
        }
        return paths
    }

    /// Removes `.<name>.tmp-*` files that an atomic write killed before its rename left in `runDir`.
    /// Only call this while no other process writes to the run.
    /// - Returns: the names removed.
    @discardableResult
    package static func removeStaleTempFiles(runDir: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []
        var removed: [String] = []
        // unlink: a file or link of that name goes, a folder of that name stays (never a recursive removal)
        for n in names where n.hasPrefix(".") && n.contains(".tmp-") {
            if unlink((runDir as NSString).appendingPathComponent(n)) == 0 { removed.append(n) }
        }
        return removed
    }
}

/// A checkpoint restored, once, into the model, optimizer and carried state that continue its run
/// (`--resume`). Building it checks every tensor the run needs, so a bad file is refused before any
/// corpus work; `Trainer(resume:corpus:newCorpus:)` then trains on from it.
package struct ResumePoint {
    package let checkpoint: Checkpoint.Loaded
    /// The run's training config with the new stopping point.
    package let train: TrainConfig
    let model: CharRNNModel
    let optimizer: Optimizer
    let state: RecurrentState

    /// - Parameters:
    ///   - maxIters, epochs: replace the run's stopping point when given (`epochs` alone drops its max-iters).
    ///   - reducer: the processes of the run: the model's workspace is sized for this process's block of the streams
    ///     (the restored carried state still holds all of them).
    /// - Throws: `TrainError.config`, `TrainError.noOptimizerState`, `CheckpointError`/`SafeTensorsError`
    ///   for tensors that do not match the metadata.
    ///   - patience, minDelta: replace the run's early stopping when given (0 = none: no early stopping,
    ///     any improvement). The patience count carries over: a run that stopped early trains on only
    ///     with no patience or one larger than its count (`Trainer.run` says `.patience` otherwise).
    package init(_ checkpoint: Checkpoint.Loaded, maxIters: Int?, epochs: Double?, patience: Int? = nil, minDelta: Double? = nil,
                 reducer: any GradientReducer = LocalReducer()) throws {
        var train = checkpoint.meta.train
        if let maxIters { train.maxIters = maxIters }
        if let epochs { train.epochs = epochs; if maxIters == nil { train.maxIters = nil } }
        if let patience { train.patience = patience == 0 ? nil : patience }
        if let minDelta { train.minDelta = minDelta == 0 ? nil : minDelta }
        if let p = train.problem { throw TrainError.config(p) }
        // A new finish line at or before where the run stands would train nothing: say so, rather
        // than "done" (a run resumed without one that has already finished still just says done).
        let at = checkpoint.meta.progress.iteration
        if let maxIters, maxIters <= at {
            throw TrainError.config("\(Setting.maxIters) \(maxIters) is not beyond the checkpoint's iteration \(at) (\(checkpoint.path)): nothing to train; give a larger \(Setting.maxIters)")
        }
        if let epochs, maxIters == nil, epochs <= checkpoint.meta.epoch {
            throw TrainError.config("\(Setting.epochs) \(epochs) is not beyond the checkpoint's epoch \(String(format: "%.2f", checkpoint.meta.epoch)) (\(checkpoint.path)): nothing to train; give a larger \(Setting.epochs)")
        }
        guard checkpoint.hasOptimizerState else { throw TrainError.noOptimizerState(checkpoint: checkpoint.path) }
        let config = checkpoint.meta.model
        // (a block of 0 streams is refused by the trainer: `DistributedError.tooFewStreams`)
        model = CharRNNModel(config: config, maxT: train.seq, maxB: max(1, reducer.streams(of: train.batch).count))
        optimizer = Optimizer(kind: train.optim, count: model.layout.count)
        state = RecurrentState(config: config, batch: train.batch)
        try Checkpoint.restore(checkpoint, model: model, optimizer: optimizer, state: state)
        self.checkpoint = checkpoint
        self.train = train
    }
}

/// The weights a fine-tuning run (`--init-from`) starts from: a checkpoint's model tensors read once
/// into a batch-1 model, so a bad file is refused before any corpus work or run folder.
package struct FineTuneSource {
    package let checkpoint: Checkpoint.Loaded
    let weights: CharRNNModel

    /// - Throws: `CheckpointError`/`SafeTensorsError` for tensors that do not match the metadata.
    package init(_ checkpoint: Checkpoint.Loaded) throws {
        weights = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: weights)
        self.checkpoint = checkpoint
    }
}

extension Trainer {
    /// A new run (fresh optimizer state, new run directory, iteration 0) whose model starts from the
    /// weights of `source` (char-rnn's `-init_from`). The model config is the checkpoint's, with
    /// `dropout` replacing its dropout when given; `corpus` must use the checkpoint's vocabulary.
    /// - Throws: `TrainError.notEncodedWithCheckpointVocabulary`, and what `init(corpus:…)` throws.
    package convenience init(initFrom source: FineTuneSource, corpus: Corpus, corpusInfo: CorpusInfo,
                            train: TrainConfig, dropout: Float?, runDir: String, reducer: any GradientReducer = LocalReducer()) throws {
        let checkpoint = source.checkpoint
        guard corpus.vocabulary == checkpoint.meta.vocabulary else {
            throw TrainError.notEncodedWithCheckpointVocabulary(checkpoint: checkpoint.path)
        }
        var config = checkpoint.meta.model
        if let dropout { config.dropout = dropout }     // dropout has no parameters: same layout
        // The fresh init draws the initial weights from the seed (the RNG then drives dropout exactly
        // as in a fresh run); the checkpoint's weights replace them.
        try self.init(corpus: corpus, corpusInfo: corpusInfo, model: config, train: train, runDir: runDir, reducer: reducer)
        model.params.ptr.update(from: source.weights.params.ptr, count: model.layout.count)
        meta.extra[RunContinuation.initFromKey] = checkpoint.path
    }
}
