// Sample/Evaluator.swift — the loss of a checkpoint on a text: nats/token, bits per token, perplexity.
//
// Dims: B streams, T steps per minibatch, P = n − 1 predictions for n known tokens, S = ⌊P / B⌋.
// What is scored: the text is tokenized with the checkpoint's vocabulary and normalization; tokens
// the vocabulary lacks are skipped (dropped from the sequence) and counted. Every known token except
// the first is predicted exactly once from the tokens before it: prediction i has input ids[i] and
// target ids[i+1], i in 0..<P. No wrap-around target (training's last target wraps to the first
// token; evaluation does not).
// Layout, as training's validation: predictions are cut into B consecutive streams; stream b covers
// [b·S, (b+1)·S) and the last stream also takes the tail [B·S, P). The state is zero at the start of
// each stream and carried across its minibatches (never reset inside a stream). Minibatches are the
// columns [k·T, (k+1)·T) of all B streams, the last one T' = S mod T wide; then the tail runs at
// batch 1 from the last stream's carried state, in chunks of T. So B = 1 is one exact sequential
// pass, and larger B trades B − 1 state resets for speed.
// loss = (1/P) Σ −ln p(target), summed in Double; bits = loss / ln 2; perplexity = e^loss.
// Entries: a file (`eval`), a text in memory (`serve`'s /v1/score: tokenized by the same pipeline as
// a file, `Vocabulary.encode(bytes:)`, so the result is the same), a sequence of ids.

import Foundation

/// One text's score.
public struct EvalResult: Codable, Sendable, Equatable {
    /// The file evaluated.
    public var file: String
    /// Tokens of the text found in the vocabulary.
    public var tokens: Int
    /// Tokens skipped because the vocabulary lacks them.
    public var unknown: Int
    /// Predictions scored: tokens − 1 (0 for a text of fewer than two known tokens).
    public var scored: Int
    /// Mean cross-entropy in nats per token (NaN when nothing was scored).
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
    private(set) var state: RecurrentState         // B streams
    private(set) var tail: RecurrentState          // 1 stream
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
        state = RecurrentState(config: model.config, batch: 1)
        tail = RecurrentState(config: model.config, batch: 1)
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
        state = RecurrentState(config: source.config, batch: 1)
        tail = RecurrentState(config: source.config, batch: 1)
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
        if state.batch != B { state = RecurrentState(config: model.config, batch: B) }
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
        let (T, B) = Self.extent(predictions: max(0, enc.ids.count - 1), seq: seq, batch: batch)
        if T > capacity.T || B > capacity.B {
            let workspace = NetworkSpec(model.config).activationBytes(rows: T * B) + 8 * T * B
            try OutOfMemoryPrediction.check("scoring \(name) with \(Setting.batch) \(B) \(Setting.seq) \(T)", needed: workspace,
                                            available: availableBytes(), suggestion: "use a smaller \(Setting.batch) or \(Setting.seq)")
        }
        var r = evaluate(ids: enc.ids)
        r.file = name; r.unknown = enc.unknownCount
        return r
    }

    /// Scores a sequence of ids (see the file header for exactly what is scored).
    public func evaluate(ids: [Int32]) -> EvalResult {
        let P = max(0, ids.count - 1)
        guard P > 0 else { return EvalResult(file: "", tokens: ids.count, unknown: 0, scored: 0, loss: .nan) }
        let (T, B) = Self.extent(predictions: P, seq: seq, batch: batch)
        reserve(T: T, B: B)
        let S = P / B
        var total = 0.0
        state.reset()
        ids.withUnsafeBufferPointer { id in
            var col = 0
            while col < S {
                let Tk = min(T, S - col)
                for t in 0..<Tk {
                    for b in 0..<B {
                        let i = b * S + col + t
                        x.ptr[t * B + b] = id[i]; y.ptr[t * B + b] = id[i + 1]
                    }
                }
                total += model.evaluate(x: x.ptr, y: y.ptr, T: Tk, B: B, state: state) * Double(Tk * B)
                col += Tk
            }
            // Tail [B·S, P): continues the last stream (or starts fresh when S = 0).
            tail.reset()
            if S > 0 {
                for (dst, src) in zip(tail.h, state.h) { dst.ptr.update(from: src.ptr + (B - 1) * model.config.hidden, count: dst.count) }
                for (dst, src) in zip(tail.c, state.c) { dst.ptr.update(from: src.ptr + (B - 1) * model.config.hidden, count: dst.count) }
            }
            var i = B * S
            while i < P {
                let Tk = min(T, P - i)
                for t in 0..<Tk { x.ptr[t] = id[i + t]; y.ptr[t] = id[i + t + 1] }
                total += model.evaluate(x: x.ptr, y: y.ptr, T: Tk, B: 1, state: tail) * Double(Tk)
                i += Tk
            }
        }
        return EvalResult(file: "", tokens: ids.count, unknown: 0, scored: P, loss: total / Double(P))
    }
}

// MARK: - Through the inference step, in either weight precision

/// What `Evaluator.compareWeights` measures on one text.
package struct WeightPrecisionScore: Codable, Sendable {
    package var file: String
    package var precision: WeightPrecision
    /// Predictions scored (as `EvalResult.scored`).
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
        var lossRef = 0.0, lossLow = 0.0, kl = 0.0
        func score(rows: Int, target: (Int) -> Int) {
            for r in 0..<rows {
                let a = refLP.ptr + r * V, b = lowLP.ptr + r * V, y = target(r)
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
        let n = Double(max(1, P))
        return WeightPrecisionScore(file: "", precision: precision, scored: P, lossFP32: lossRef / n, loss: lossLow / n, meanKL: kl / n)
    }
}
