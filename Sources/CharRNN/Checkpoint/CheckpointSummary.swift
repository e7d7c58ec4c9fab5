// Checkpoint/CheckpointSummary.swift — what a checkpoint is, in one value: the facts `charrnn info`
// prints (as text, and field for field as `--json`) and `charrnn serve` returns in GET /v1/models
// (the model object's `charrnn` field).
//
// Contract: a summary is derived from an already loaded checkpoint and the file's size on disk; it
// reads nothing else and builds no model, so `serve` can summarise the checkpoint it has loaded
// once. `read(path:)` is `info`'s whole job: load, check every model tensor against the shape the
// metadata implies (a mismatch throws, as restoring would), summarise. The Codable keys are the
// property names; they are `info --json`'s and /v1/models' keys, so renaming a property renames a
// field of both.

import Foundation

/// Everything `charrnn info` reports about a checkpoint; also its `--json` output and the `charrnn`
/// object of the server's /v1/models.
package struct CheckpointSummary: Codable, Sendable, Equatable {
    package var file: String
    package var fileBytes: Int
    package var tensors: Int
    package var format: String
    package var formatVersion: Int
    package var cell: String
    package var layers: Int
    package var hidden: Int
    package var embed: Int
    package var dropout: Float
    package var parameters: Int
    package var vocabSize: Int
    package var unit: String
    /// The first 20 tokens of the vocabulary.
    package var firstTokens: [String]
    /// The 10 rarest tokens with their counts in the training corpus; nil without `vocab_counts`.
    package var rarestTokens: [TokenCount]?
    package var corpus: CorpusInfo
    package var iteration: Int
    package var epoch: Double
    package var bestValLoss: Double?
    package var bestIteration: Int?
    package var lastValLoss: Double?
    package var trainingSeconds: Double
    package var optimizer: String
    package var lr: Float
    package var currentLR: Float
    package var seq: Int
    package var batch: Int
    package var hasOptimizerState: Bool
    /// The checkpoint this run was fine-tuned from (`train --init-from`), if any.
    package var initFrom: String?
    /// The arithmetic of the run's training products, `fp32` or `bf16` (`train --precision`; optional
    /// so that a summary written before it still decodes; always set from a checkpoint).
    package var precision: String?
    // The learning-rate schedule (issue 20); `currentLR` above is the rate of the next iteration.
    // (optional so that a summary written before them still decodes; always set from a checkpoint)
    /// `step`, `cosine` or `constant`.
    package var lrSchedule: String?
    /// Iterations of linear warmup.
    package var warmupIters: Int?
    /// Cosine's end point or step's floor; nil when none was given.
    package var minLR: Float?
    /// `--patience` and `--min-delta` of the run (nil: none / 0), and the validations in a row that
    /// did not improve the best val loss by it (≥ patience: the run stopped early).
    package var patience: Int?
    package var minDelta: Double?
    package var validationsWithoutImprovement: Int?
    /// `--cold-start-every`: each stream restarted from a zero state every this many minibatches (nil: never).
    package var coldStartEvery: Int?

    // MARK: Output layer and text settings
    // Optional only so that a summary written before they existed still decodes; a summary of a
    // checkpoint always sets `softmax` and `normalize`.
    /// The output layer: "full" (one softmax over the vocabulary) or "adaptive".
    package var softmax: String?
    /// The adaptive softmax's cutoffs as frequency ranks (PyTorch's `cutoffs` without V); nil for "full".
    package var softmaxCutoffs: [Int]?
    /// The adaptive softmax's `div_value` (tail i projects to ⌊hidden / div^(i+1)⌋); nil for "full".
    package var softmaxDivValue: Double?
    /// The Unicode normalization applied before tokenizing ("none" or "nfc").
    package var normalize: String?
    /// The id of the unknown token (whose entry in the vocabulary is ""), nil when the vocabulary has none.
    package var unknownID: Int?

    /// A token and how often it occurs in the training corpus.
    package struct TokenCount: Codable, Sendable, Equatable {
        package var token: String
        package var count: Int
    }

    /// Summarises a loaded checkpoint.
    /// - Parameters:
    ///   - checkpoint: the checkpoint, as `Checkpoint.load` gave it.
    ///   - fileBytes: the file's size on disk (nil: read it from `checkpoint.path`, 0 when that fails).
    package init(checkpoint c: Checkpoint.Loaded, fileBytes: Int? = nil) {
        let m = c.meta, p = m.progress
        var rarest: [TokenCount]? = nil
        if let counts = VocabCounts.decode(m) {
            let order = counts.indices.sorted { (counts[$0], $0) < (counts[$1], $1) }
            rarest = order.prefix(10).map { TokenCount(token: m.vocabulary.tokens[$0], count: counts[$0]) }
        }
        file = c.path
        self.fileBytes = fileBytes ?? (try? FileManager.default.attributesOfItem(atPath: c.path))?[.size] as? Int ?? 0
        tensors = c.file.tensors.count
        format = c.file.metadata["format"] ?? "?"
        formatVersion = Int(c.file.metadata["format_version"] ?? "") ?? 0
        cell = m.model.cell.rawValue; layers = m.model.layers; hidden = m.model.hidden; embed = m.model.embed
        dropout = m.model.dropout; parameters = m.model.parameterCount
        vocabSize = m.vocabulary.count; unit = m.vocabulary.unit.rawValue
        firstTokens = Array(m.vocabulary.tokens.prefix(20)); rarestTokens = rarest
        corpus = m.corpus
        iteration = p.iteration; epoch = m.epoch
        bestValLoss = p.bestValLoss; bestIteration = p.bestValLoss == nil ? nil : p.bestIteration
        lastValLoss = p.lastValLoss; trainingSeconds = p.elapsed
        optimizer = m.train.optim.rawValue; lr = m.train.lr
        let total = (try? Trainer.total(m.train, ntrain: m.trainBatches)) ?? p.iteration
        currentLR = LearningRate(m.train, total: total).rate(iteration: p.iteration, current: p.lr)
        lrSchedule = m.train.schedule.rawValue; warmupIters = m.train.warmupIters ?? 0; minLR = m.train.minLR
        patience = m.train.patience; minDelta = m.train.minDelta
        validationsWithoutImprovement = m.train.patience == nil ? nil : p.sinceImprovement
        coldStartEvery = m.train.coldStartEvery
        seq = m.train.seq; batch = m.train.batch
        hasOptimizerState = c.hasOptimizerState
        initFrom = m.extra[RunContinuation.initFromKey]
        precision = m.train.stepPrecision.rawValue
        softmax = m.model.adaptive == nil ? "full" : "adaptive"
        softmaxCutoffs = m.model.adaptive?.cutoffs; softmaxDivValue = m.model.adaptive?.divValue
        normalize = m.train.normalize.rawValue
        unknownID = m.vocabulary.unknownID
    }

    /// Loads the checkpoint at `path`, checks that every model tensor is present with the shape the
    /// metadata implies, and summarises it.
    /// - Throws: what `Checkpoint.load` and `Checkpoint.restore` throw.
    package static func read(path: String) throws -> CheckpointSummary {
        let c = try Checkpoint.load(path: path)
        try Checkpoint.restore(c, model: CharRNNModel(config: c.meta.model, maxT: 1, maxB: 1))
        return CheckpointSummary(checkpoint: c)
    }
}
