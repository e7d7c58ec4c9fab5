// Sample/Evaluator.swift — the loss of a checkpoint on a text: nats/token, bits per token, perplexity.
//
// Dims: B streams, T steps per minibatch, P = n − 1 predictions for a text of n ids, S = ⌊P / B⌋.
// What is scored: the text is tokenized with the checkpoint's vocabulary and normalization. A
// token the vocabulary lacks is counted as `unknown`; without an unknown token in the vocabulary
// it is skipped (dropped from the sequence), with one (`--min-count`/`--max-vocab`) it is fed as
// that token (the model sees that something it does not know was there) but is never a scored
// target: predicting "some unknown character" is not predicting the character, and a text of
// unknown characters would otherwise score a near-perfect perplexity. Every id except the first
// is predicted once from the ids before it: prediction i has input ids[i] and target ids[i+1], i in
// 0..<P; `scored` counts the predictions whose target is a known token (n − 1 when nothing is
// unknown), and only they enter the loss. No wrap-around target (training's last target wraps to
// the first token; evaluation does not).
// Layout, as training's validation: predictions are cut into B consecutive streams; stream b covers
// [b·S, (b+1)·S) and the last stream also takes the tail [B·S, P). The state is zero at the start of
// each stream and carried across its minibatches (never reset inside a stream). Minibatches are the
// columns [k·T, (k+1)·T) of all B streams, the last one T' = S mod T wide; then the tail runs at
// batch 1 from the last stream's carried state, in chunks of T. So B = 1 is one exact sequential
// pass, and larger B trades B − 1 state resets for speed.
// loss = (1/scored) Σ −ln p(target) over the scored predictions, summed in Double; bits = loss / ln 2;
// perplexity = e^loss.
// Entries: a file (`eval`), a text in memory (`serve`'s /v1/score: tokenized by the same pipeline as
// a file, `Vocabulary.encode(bytes:)`, so the result is the same), a sequence of ids. A text may
// also be scored a slice at a time (`begin`, then `advance` until it returns true: the same
// minibatches in the same order, so the same result), each `ScoringJob` holding its own carried
// state, so that the server runs generation steps between the slices of a long text.

import Foundation

/// One text's score.
public struct EvalResult: Codable, Sendable, Equatable {
    /// The file evaluated.
    public var file: String
    /// Tokens of the text found in the vocabulary.
    public var tokens: Int
    /// Tokens the vocabulary lacks: skipped, or fed as its unknown token; never scored.
    public var unknown: Int
    /// Predictions scored: of the known tokens, all but a first one (tokens − 1 when nothing is
    /// unknown; 0 for a text of fewer than two known tokens).
    public var scored: Int
    /// Mean cross-entropy of the scored predictions in nats per token (NaN when nothing was scored).
    public var loss: Double
    /// loss / ln 2: bits per character (per token).
    public var bitsPerToken: Double { loss / M_LN2 }
    /// e^loss.
    public var perplexity: Double { exp(loss) }

    enum CodingKeys: String, CodingKey { case file, tokens, unknown, scored, loss, bpc, perplexity }

    /// A result from its counts and mean loss.
    public init(file: String, tokens: Int, unknown: Int, scored: Int, loss: Double) {
        self.file = file; self.tokens = tokens; self.unknown = unknown; self.scored = scored; self.loss = loss
    }

    /// Decodes `--json` output (the derived fields are recomputed).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        file = try c.decode(String.self, forKey: .file)
        tokens = try c.decode(Int.self, forKey: .tokens)
        unknown = try c.decode(Int.self, forKey: .unknown)
        scored = try c.decode(Int.self, forKey: .scored)
        loss = try c.decode(Double.self, forKey: .loss)
    }

    /// The `--json` object: the counts, loss, bits per token and perplexity.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file); try c.encode(tokens, forKey: .tokens); try c.encode(unknown, forKey: .unknown)
        try c.encode(scored, forKey: .scored); try c.encode(loss, forKey: .loss)
        try c.encode(bitsPerToken, forKey: .bpc); try c.encode(perplexity, forKey: .perplexity)
    }
}

/// Scores texts with a checkpoint's model. The buffers are sized for the text being scored: a
/// `batch` or `seq` larger than the text needs is clamped to what it needs before anything is
/// allocated (the result is the same: see `extent`), and they grow only for a longer text.
public final class Evaluator {
    package private(set) var model: CharRNNModel
    package let vocabulary: Vocabulary
    package let normalize: Normalization
    /// The requested streams and steps (the most used).
    package let batch: Int, seq: Int
    private(set) var x: IntStorage, y: IntStorage  // (T, B)
    private(set) var capacity: (T: Int, B: Int) = (1, 1)
    /// Free memory for the check before the buffers grow (nil: unknown, no check); a test seam.
    var availableBytes: () -> Int? = { MemoryEstimate.availableBytes() }

    /// - Parameters:
    ///   - checkpoint: the model, vocabulary and normalization to use.
    ///   - batch: B parallel streams (≥ 1).
    ///   - seq: T steps per minibatch (≥ 1).
    /// - Throws: `SafeTensorsError` when the file's tensors do not match its metadata.
    public init(checkpoint: Checkpoint.Loaded, batch: Int = 50, seq: Int = 50) throws {
        precondition(batch >= 1 && seq >= 1)
        // (1, 1) until a text says what it needs: the tensors are checked and restored now
        model = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: model)
        vocabulary = checkpoint.meta.vocabulary
        normalize = checkpoint.meta.train.normalize
        self.batch = batch; self.seq = seq
        x = IntStorage(count: 1); y = IntStorage(count: 1)
    }

    /// Scores with the weights of a model already restored (`serve` loads its checkpoint once). The
    /// model is not used for scoring, only copied from: the first text builds the evaluator's own,
    /// sized for it, so `source` may belong to another user (the server's engine) as long as its
    /// parameters do not change while a text is being scored.
    /// - Parameters:
    ///   - source: the restored model (any (maxT, maxB), any inference precision: scoring is fp32).
    ///   - vocabulary, normalize: the checkpoint's.
    ///   - batch: B parallel streams (≥ 1).
    ///   - seq: T steps per minibatch (≥ 1).
    package init(model source: CharRNNModel, vocabulary: Vocabulary, normalize: Normalization, batch: Int = 50, seq: Int = 50) {
        precondition(batch >= 1 && seq >= 1)
        model = source
        self.vocabulary = vocabulary
        self.normalize = normalize
        self.batch = batch; self.seq = seq
        x = IntStorage(count: 1); y = IntStorage(count: 1)
        capacity = (0, 0)   // nothing of ours yet: the first `reserve` builds the model
    }

    /// The (T, B) that scoring P predictions with `seq`, `batch` actually uses: B' = min(B, P) (more
    /// streams than predictions leave S = 0 either way), T' = the longest minibatch, min(T, max(S, tail)).
    static func extent(predictions P: Int, seq T: Int, batch B: Int) -> (T: Int, B: Int) {
        let b = max(1, min(B, P)), s = P / b
        let tail = P - b * s
        return (max(1, min(T, max(s, tail))), b)
    }

    /// Grows the model and buffers to hold (T, B), keeping the weights.
    private func reserve(T: Int, B: Int) {
        guard T > capacity.T || B > capacity.B else { return }
        let t = max(T, capacity.T), b = max(B, capacity.B)
        let grown = CharRNNModel(config: model.config, maxT: t, maxB: b)
        grown.params.ptr.update(from: model.params.ptr, count: model.layout.count)
        grown.parametersChanged()
        model = grown
        x = IntStorage(count: t * b); y = IntStorage(count: t * b)
        capacity = (t, b)
    }

    /// Scores the UTF-8 file at `path`.
    /// - Throws: `TextError` for an unreadable file or invalid UTF-8; `OutOfMemoryPrediction` when the
    ///   activations for this text's (T, B) would not fit (`--batch 1000000` on a large file).
    public func evaluate(path: String) throws -> EvalResult {
        try evaluate(try vocabulary.encodeFile(path: path, normalize: normalize), name: path)
    }

    /// Scores `text` held in memory: the same tokens and the same result as `evaluate(path:)` on a
    /// file holding its UTF-8 (`serve`'s /v1/score; no file is written).
    /// - Parameters:
    ///   - text: the text.
    ///   - name: what errors and `EvalResult.file` call it.
    /// - Throws: `TextError.normalizationFailed`; `OutOfMemoryPrediction` as `evaluate(path:)`.
    public func evaluate(text: String, name: String) throws -> EvalResult {
        var text = text
        let enc = try text.withUTF8 { (utf8) throws(TextError) in try vocabulary.encode(bytes: utf8, name: name, normalize: normalize) }
        return try evaluate(enc, name: name)
    }

    /// The common core of both: checks the memory the text's (T, B) needs, then scores its ids.
    private func evaluate(_ enc: EncodedText, name: String) throws -> EvalResult {
        let job = try begin(enc, name: name)
        while !advance(job, predictions: .max) {}
        return job.result
    }

    /// Scores a sequence of ids (see the file header for exactly what is scored; ids equal to the
    /// vocabulary's unknown token count as `unknown` and are never scored targets).
    public func evaluate(ids: [Int32]) -> EvalResult {
        let job = begin(ids: ids)
        while !advance(job, predictions: .max) {}
        return job.result
    }

    /// Starts scoring an encoded text a slice at a time (`advance`), after checking the memory its
    /// (T, B) needs and growing the buffers to it.
    /// - Throws: `OutOfMemoryPrediction` as `evaluate(path:)`.
    package func begin(_ enc: EncodedText, name: String) throws -> ScoringJob {
        let (T, B) = Self.extent(predictions: max(0, enc.ids.count - 1), seq: seq, batch: batch)
        if T > capacity.T || B > capacity.B {
            let workspace = NetworkSpec(model.config).activationBytes(rows: T * B) + 8 * T * B
            try OutOfMemoryPrediction.check("scoring \(name) with \(Setting.batch) \(B) \(Setting.seq) \(T)", needed: workspace,
                                            available: availableBytes(), suggestion: "use a smaller \(Setting.batch) or \(Setting.seq)")
        }
        let job = begin(ids: enc.ids)
        job.name = name
        job.unknown = enc.unknownCount   // also the tokens skipped, which `ids` no longer holds
        return job
    }

    /// Starts scoring `ids` a slice at a time (`advance`), growing the buffers to its (T, B).
    package func begin(ids: [Int32]) -> ScoringJob {
        let P = max(0, ids.count - 1)
        let (T, B) = Self.extent(predictions: P, seq: seq, batch: batch)
        if P > 0 { reserve(T: T, B: B) }
        return ScoringJob(ids: ids, T: T, B: B, unknownID: vocabulary.unknownID.map { Int32($0) }, config: model.config)
    }

    /// Scores the next minibatches of `job`: whole minibatches until at least `budget` predictions
    /// are done (at least one minibatch, unless the job is complete). The minibatches are those
    /// `evaluate` runs, in its order, so slicing never changes the result.
    /// - Returns: true when the job is complete (`job.result` holds the score).
    @discardableResult
    package func advance(_ job: ScoringJob, predictions budget: Int) -> Bool {
        if job.isDone { return true }
        let T = job.T, B = job.B, S = job.S, P = job.P
        precondition(P == 0 || (T <= capacity.T && B <= capacity.B), "scoring job of another evaluator, or begun before a larger one grew the buffers")
        var done = 0
        let unk = job.unknownID ?? -2
        @inline(__always) func target(_ id: Int32) -> Int32 { id == unk ? -1 : id }   // −1: not scored
        job.ids.withUnsafeBufferPointer { id in
            while done < budget && job.col < S {
                let Tk = min(T, S - job.col)
                for t in 0..<Tk {
                    for b in 0..<B {
                        let i = b * S + job.col + t
                        x.ptr[t * B + b] = id[i]; y.ptr[t * B + b] = target(id[i + 1])
                    }
                }
                job.total += model.evaluate(x: x.ptr, y: y.ptr, T: Tk, B: B, state: job.state) * Double(Tk * B)
                job.col += Tk
                done += Tk * B
            }
            if job.col < S { return }
            // Tail [B·S, P): continues the last stream (or starts fresh when S = 0).
            if !job.tailStarted {
                job.tail.reset()
                if S > 0 {
                    for (dst, src) in zip(job.tail.h, job.state.h) { dst.ptr.update(from: src.ptr + (B - 1) * model.config.hidden, count: dst.count) }
                    for (dst, src) in zip(job.tail.c, job.state.c) { dst.ptr.update(from: src.ptr + (B - 1) * model.config.hidden, count: dst.count) }
                }
                job.next = B * S
                job.tailStarted = true
            }
            while done < budget && job.next < P {
                let i = job.next, Tk = min(T, P - i)
                for t in 0..<Tk { x.ptr[t] = id[i + t]; y.ptr[t] = target(id[i + t + 1]) }
                job.total += model.evaluate(x: x.ptr, y: y.ptr, T: Tk, B: 1, state: job.tail) * Double(Tk)
                job.next += Tk
                done += Tk
            }
            if job.next >= P { job.isDone = true }
        }
        return job.isDone
    }
}

/// A text being scored a slice at a time (`Evaluator.begin`, `Evaluator.advance`): its position,
/// carried states and running sum. Used by one thread at a time, the one that owns its evaluator
/// (the server's engine thread); the evaluator's model and minibatch buffers are shared by all its
/// jobs, since each minibatch is filled and scored within one `advance`.
package final class ScoringJob: @unchecked Sendable {
    let ids: [Int32]
    let unknownID: Int32?
    /// Predictions, minibatch (T, B), predictions per stream.
    let P: Int, T: Int, B: Int, S: Int
    let state: RecurrentState       // B streams
    let tail: RecurrentState        // 1 stream
    var col = 0                     // next column of the B streams, in 0...S
    var next = 0                    // next tail prediction, in B·S...P (once `tailStarted`)
    var tailStarted = false
    var total = 0.0                 // Σ −ln p(target) so far (unscored rows add 0)
    package internal(set) var isDone = false
    var name = ""
    /// Known tokens, unknown tokens, scored predictions (counted at the start).
    var tokens: Int, unknown: Int
    let scored: Int

    init(ids: [Int32], T: Int, B: Int, unknownID: Int32?, config: ModelConfig) {
        self.ids = ids; self.unknownID = unknownID
        P = max(0, ids.count - 1); self.T = T; self.B = B; S = P / B
        state = RecurrentState(config: config, batch: B)
        tail = RecurrentState(config: config, batch: 1)
        state.reset()
        let unknownIDs = unknownID.map { u in ids.reduce(0) { $0 + ($1 == u ? 1 : 0) } } ?? 0
        tokens = ids.count - unknownIDs
        unknown = unknownIDs
        // targets are ids[1...]; the unknown ones are not scored
        scored = P == 0 ? 0 : P - (unknownIDs - (ids[0] == unknownID ? 1 : 0))
        isDone = P == 0
    }

    /// The score (complete once `isDone`).
    package var result: EvalResult {
        EvalResult(file: name, tokens: tokens, unknown: unknown, scored: scored, loss: scored > 0 ? total / Double(scored) : .nan)
    }
}

// MARK: - Through the inference step, in either weight precision

/// What `Evaluator.compareWeights` measures on one text.
package struct WeightPrecisionScore: Codable, Sendable {
    package var file: String
    package var precision: WeightPrecision
    /// Predictions scored (as `EvalResult.scored`: those whose target is a known token).
    public var scored: Int
    /// Mean −ln p(target) through the inference step with float32 weights, and with `precision`.
    package var lossFP32: Double, loss: Double
    /// Mean KL(p_fp32 ‖ p_precision) of the next-token distribution, in nats per prediction.
    package var meanKL: Double
    package var bitsPerTokenChange: Double { (loss - lossFP32) / M_LN2 }
}

extension Evaluator {
    /// Scores `path` through the model's inference step (what `sample` runs) twice in the same stream
    /// layout as `evaluate` — float32 packed weights and `precision` — and compares the two
    /// next-token distributions at every prediction.
    package func compareWeights(path: String, precision: WeightPrecision) throws -> WeightPrecisionScore {
        let enc = try vocabulary.encodeFile(path: path, normalize: normalize)
        var r = compareWeights(ids: enc.ids, precision: precision)
        r.file = path
        return r
    }

    package func compareWeights(ids: [Int32], precision: WeightPrecision) -> WeightPrecisionScore {
        let P = max(0, ids.count - 1), B = batch, S = P / B, V = model.config.vocabSize
        func stepModel(_ w: WeightPrecision) -> CharRNNModel {
            let m = CharRNNModel(config: model.config, maxT: 1, maxB: B)
            m.params.ptr.update(from: model.params.ptr, count: model.layout.count)
            m.inferencePrecision = w
            return m
        }
        let ref = stepModel(.fp32), low = stepModel(precision)
        let refState = InferenceState(config: model.config, streams: B), lowState = InferenceState(config: model.config, streams: B)
        let refTail = InferenceState(config: model.config, streams: 1), lowTail = InferenceState(config: model.config, streams: 1)
        let refLP = Storage(count: B * V), lowLP = Storage(count: B * V)
        let tokens = IntStorage(count: B)
        var lossRef = 0.0, lossLow = 0.0, kl = 0.0, scored = 0
        let unk = vocabulary.unknownID ?? -1
        func score(rows: Int, target: (Int) -> Int) {
            for r in 0..<rows {
                let a = refLP.ptr + r * V, b = lowLP.ptr + r * V, y = target(r)
                if y == unk { continue }   // the unknown token is never a scored target (as `evaluate`)
                scored += 1
                lossRef -= Double(a[y]); lossLow -= Double(b[y])
                var d = 0.0
                for v in 0..<V { let pa = Double(a[v]); d += exp(pa) * (pa - Double(b[v])) }
                kl += d
            }
        }
        ids.withUnsafeBufferPointer { id in
            for col in 0..<S {
                for b in 0..<B { tokens.ptr[b] = id[b * S + col] }
                ref.step(tokens: tokens.ptr, state: refState, logProbs: refLP.ptr)
                low.step(tokens: tokens.ptr, state: lowState, logProbs: lowLP.ptr)
                score(rows: B) { Int(id[$0 * S + col + 1]) }
            }
            // the tail [B·S, P) continues the last stream, as `evaluate` does
            if S > 0 { refTail.copyStream(B - 1, of: refState, to: 0); lowTail.copyStream(B - 1, of: lowState, to: 0) }
            var i = B * S
            while i < P {
                tokens.ptr[0] = id[i]
                ref.step(tokens: tokens.ptr, state: refTail, logProbs: refLP.ptr)
                low.step(tokens: tokens.ptr, state: lowTail, logProbs: lowLP.ptr)
                score(rows: 1) { _ in Int(id[i + 1]) }
                i += 1
            }
        }
        let n = Double(max(1, scored))
        return WeightPrecisionScore(file: "", precision: precision, scored: scored, lossFP32: lossRef / n, loss: lossLow / n, meanKL: kl / n)
    }
}
