// Train/TrainConfig.swift — everything about a training run that is not the model's shape.
// Defaults are karpathy/char-rnn's, except `coldStartEvery` (char-rnn never restarts a stream).

extension TokenUnit: Codable {}
extension Normalization: Codable {}

/// The arithmetic of the training step's matrix products (issue 19). Validation, sampling and the
/// checkpoints stay float32 whatever a run trains with.
public enum Precision: String, Sendable, CaseIterable, Codable {
    /// float32 operands and sums (OpenBLAS).
    case fp32
    /// Mixed precision: the operands of every training product rounded to bfloat16 (nearest even),
    /// float32 sums (Tensor/BF16GEMM.swift); everything else float32 (Model/MixedPrecision.swift).
    case bf16
}

/// How a run trains: data layout, optimizer, schedule, validation, tokenization, vocabulary control. Recorded in every checkpoint.
public struct TrainConfig: Codable, Sendable, Equatable {
    /// Truncated-BPTT length: steps per minibatch.
    public var seq = 50
    /// Parallel streams per minibatch.
    public var batch = 50
    /// Passes over the training split (unless `maxIters`).
    public var epochs: Double = 50
    /// Stop after this many iterations (overrides `epochs` when set).
    public var maxIters: Int? = nil
    /// The optimizer.
    public var optim: OptimizerKind = .rmsprop
    /// Learning rate.
    public var lr: Float = 2e-3
    /// Multiplies the learning rate at each epoch end after `lrDecayAfter` epochs (char-rnn).
    public var lrDecay: Float = 0.97
    /// Epochs before the learning rate decays.
    public var lrDecayAfter = 10
    /// Clipping threshold (0 = off).
    public var clip: Float = 5
    /// Global L2 norm or elementwise clipping.
    public var clipMode: ClipMode = .norm
    /// Share of the minibatches for training.
    public var trainFrac = 0.95
    /// Share of the minibatches for validation (the rest is test).
    public var valFrac = 0.05
    /// Validate and checkpoint every N iterations (and at each epoch end and the last iteration).
    public var evalEvery = 1000
    /// A loss.csv row every N iterations.
    public var logEvery = 1
    /// Seed of initialisation and dropout: same seed and thread count, bit-identical run.
    public var seed: UInt64 = 123
    /// Cores for the kernels (0 = all).
    public var threads = 0
    /// What one token is: a Unicode scalar or a grapheme cluster.
    public var unit: TokenUnit = .scalar
    /// Unicode normalization before tokenizing.
    public var normalize: Normalization = .none
    /// Vocabulary control and decoding; nil in checkpoints written before they existed.
    public var minCount: Int? = nil
    /// Keep at most this many tokens (the unknown token included).
    public var maxVocab: Int? = nil
    /// Replace invalid UTF-8 with U+FFFD instead of refusing the corpus.
    public var lossy: Bool? = nil
    /// Validate on at most this many tokens of the val split (`Batches.valBatches`); nil = the whole
    /// split (`--val-tokens all`, and every checkpoint written before the bound existed).
    public var valTokens: Int? = TrainConfig.defaultValTokens
    /// `--precision`; nil is fp32. Recorded only when not fp32, so an fp32 run's checkpoint is the
    /// bytes it was before the flag existed, and a checkpoint without the key decodes as fp32. Read
    /// it through `stepPrecision`; a resume keeps it (it is part of the recorded config) and the
    /// ranks of a data-parallel run compare it with the rest of the config.
    public var precision: Precision? = nil

    // Schedule and early stopping (issue 20). Recorded only when given, as `precision` is: a run that
    // uses none of them writes the config it wrote before they existed, and an older checkpoint
    // decodes as `step`, no warmup, no floor, no early stopping. A resume keeps them; `patience` and
    // `minDelta` are stopping settings that a resume may replace (`ResumePoint`).
    /// `--lr-schedule`; nil is `step` (read it through `schedule`).
    public var lrSchedule: LRSchedule? = nil
    /// `--warmup-iters`: iterations of linear warmup (nil = none).
    public var warmupIters: Int? = nil
    /// `--min-lr`: cosine's end point, a floor for step's decay (nil = 0 for cosine, no floor for step).
    public var minLR: Float? = nil
    /// `--patience`: stop after this many validations in a row that did not improve the best val loss
    /// by at least `minDelta` (nil = never).
    public var patience: Int? = nil
    /// `--min-delta`: the improvement that resets the patience count (nil = 0: any improvement).
    public var minDelta: Double? = nil
    /// `--cold-start-every N`: each stream restarts from a zero state every N minibatches, the streams
    /// staggered (stream b before iteration i when (i + b) mod N = 0, so about B/N of them per
    /// minibatch), so that the model learns the cold starts that sampling, `eval` and serving begin
    /// with. nil carries the state from the start of the run (char-rnn; `--cold-start-every 0`), and
    /// is what a checkpoint written before the setting existed decodes as, so its resume is what it
    /// was. The one default that is not char-rnn's: LSTMs trained its way failed badly on up to 3.4%
    /// of cold starts, in fp32 and bf16 alike (README, Cold starts). A resume keeps it.
    public var coldStartEvery: Int? = TrainConfig.defaultColdStartEvery

    /// The learning-rate schedule.
    package var schedule: LRSchedule {
        get { lrSchedule ?? .step }
        set { lrSchedule = newValue == .step ? nil : newValue }
    }

    /// The precision of the training step's products.
    package var stepPrecision: Precision {
        get { precision ?? .fp32 }
        set { precision = newValue == .fp32 ? nil : newValue }
    }

    /// 10 minibatches: at the defaults 5 of the 50 streams restart at each one, every 500 characters
    /// of a stream (measured at 10; not tuned).
    public static let defaultColdStartEvery = 10

    /// 250,000 tokens: a tenth of the tokens trained between two validations at the defaults
    /// (--eval-every 1000 × --batch 50 × --seq 50), and a forward-only pass costs well under a training
    /// step per token, so a validation stays under ~10% of training time; any split of up to 100
    /// minibatches of 50×50 (tinyshakespeare's has 23) is still validated whole.
    public static let defaultValTokens = 250_000

    /// How the corpus is decoded into tokens for this run.
    package var loadOptions: LoadOptions {
        var o = LoadOptions()
        o.unit = unit; o.normalize = normalize; o.lossy = lossy ?? false
        o.minCount = minCount ?? 1; o.maxVocab = maxVocab
        return o
    }

    /// The defaults: char-rnn's recipe, with cold starts (`coldStartEvery`).
    public init() {}

    /// Problems with the numbers, or nil.
    public var problem: String? {
        if seq < 1 || seq > Bounds.maxSeq { return "\(Setting.seq) must be between 1 and \(Bounds.maxSeq) (got \(seq))" }
        if batch < 1 || batch > Bounds.maxBatch { return "\(Setting.batch) must be between 1 and \(Bounds.maxBatch) (got \(batch))" }
        if seq * batch > Bounds.maxTokensPerMinibatch {
            return "\(Setting.seq) × \(Setting.batch) must be at most \(Bounds.maxTokensPerMinibatch) tokens per minibatch (got \(seq) × \(batch))"
        }
        if let p = Bounds.checkEpochs(epochs) { return p }
        if let m = maxIters, m < 1 || m > Bounds.maxIterations { return "\(Setting.maxIters) must be between 1 and \(Bounds.maxIterations) (got \(m))" }
        if let p = Bounds.check("\(Setting.lr)", Double(lr), in: Bounds.learningRate) { return p }
        if !(lrDecay > 0 && lrDecay <= 1) { return "\(Setting.lrDecay) must be in (0, 1]" }
        if lrDecayAfter < 0 { return "\(Setting.lrDecayAfter) must be non-negative" }
        if let p = Bounds.check("\(Setting.clip)", Double(clip), in: 0...Bounds.maxClip) { return p + "; 0 disables clipping" }
        if !(trainFrac > 0 && trainFrac <= 1) { return "\(Setting.trainFrac) must be in (0, 1]" }
        if !(valFrac > 0 && valFrac < 1) { return "\(Setting.valFrac) must be in (0, 1)" }
        if trainFrac + valFrac > 1 + 1e-9 { return "\(Setting.trainFrac) + \(Setting.valFrac) must not exceed 1" }
        if evalEvery < 1 { return "\(Setting.evalEvery) must be at least 1" }
        if logEvery < 1 { return "\(Setting.logEvery) must be at least 1" }
        if let v = valTokens, v < 1 { return "\(Setting.valTokens) must be at least 1 (or all)" }
        if let p = scheduleProblem { return p }
        if threads < 0 || threads > Bounds.threadLimit { return "\(Setting.threads) must be 0 (all cores) or between 1 and \(Bounds.threadLimit) (got \(threads))" }
        return nil
    }

    /// Problems with the schedule and early-stopping settings, or nil.
    var scheduleProblem: String? {
        if let w = warmupIters, w < 0 || w > Bounds.maxIterations { return "\(Setting.warmupIters) must be between 0 and \(Bounds.maxIterations) (got \(w))" }
        if let m = minLR {
            if !(m >= 0 && m <= lr) { return "\(Setting.minLr) must be between 0 and \(Setting.lr) \(lr) (got \(m))" }
            if schedule == .constant { return "\(Setting.minLr) applies to \(Setting.lrSchedule) cosine and step, not constant" }
        }
        if let p = patience, p < 1 || p > Bounds.maxPatience { return "\(Setting.patience) must be between 1 and \(Bounds.maxPatience), or 0 for none (got \(p))" }
        if let d = minDelta, !(d >= 0 && d <= Bounds.maxMinDelta) { return "\(Setting.minDelta) must be between 0 and \(Bounds.show(Bounds.maxMinDelta)) (got \(d))" }
        if let n = coldStartEvery, n < 1 || n > Bounds.maxIterations {
            return "\(Setting.coldStartEvery) must be between 1 and \(Bounds.maxIterations), or 0 for never (got \(n))"
        }
        return nil
    }
}
