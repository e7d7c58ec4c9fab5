// Sample/Sampler.swift — the step-level sampling API: K streams stepped in lockstep, the sampling
// options, the stream seed derivation, and TokenDrawer (the draw).
//
// Generating text — `charrnn sample` and `charrnn serve` — goes through GenerationLoop, which uses
// the pieces defined here: `Sampler.seed(_:stream:)` (stream i's generator seed: the seed itself for
// stream 0, as a single sample has always been, a SplitMix64 step away for the others, so sample i
// is the same whatever K is), `SamplingOptions`, `Vocabulary.startID` and `TokenDrawer`. The
// `Sampler` class itself steps the model token by token for code that wants the log-probabilities
// and draws one at a time (the benchmark's sampling figure, tests, the fuzz targets): the network
// runs through the model's inference step (Model/Inference.swift), which gives log p of every id
// for each stream; `feed` gives every stream the same token, `draw` draws from one stream's row
// with its own generator, `next` draws and feeds (after the start token when nothing was fed, as
// the loop does). The shaping and the draw are TokenDrawer: softmax(log p / T), the unknown token
// masked, top-k and top-p (nucleus) truncation; temperature 0 is argmax. All buffers are allocated
// at init.

/// Controls of the next-token distribution.
public struct SamplingOptions: Sendable {
    public var temperature: Float = 0.8
    public var topK: Int = 0          // 0 = off
    public var topP: Float = 1        // 1 = off
    public init(temperature: Float = 0.8, topK: Int = 0, topP: Float = 1) {
        self.temperature = temperature; self.topK = topK; self.topP = topP
    }
    public var problem: String? {
        if !(temperature >= 0) || !temperature.isFinite { return "--temp must be ≥ 0" }
        if topK < 0 { return "--top-k must be ≥ 0" }
        if !(topP > 0 && topP <= 1) { return "--top-p must be in (0, 1]" }
        return nil
    }
}

public final class Sampler {
    public let model: CharRNNModel
    public let vocabulary: Vocabulary
    public var options: SamplingOptions
    /// K streams sampled together.
    public let streams: Int
    /// One generator per stream.
    public var rngs: [Xoshiro256]

    let V: Int
    let state: InferenceState
    let logProbs: Storage              // (K, V) log p of the next token per stream
    let tokens: IntStorage             // (K) the tokens fed to the step
    let drawer: TokenDrawer
    public private(set) var hasState = false

    /// - Parameters:
    ///   - model: holds the weights (any workspace size).
    ///   - seed: stream 0 draws from `Xoshiro256(seed: seed)`, stream i from `Sampler.seed(seed, stream: i)`.
    ///   - streams: K ≥ 1 samples drawn in one batched pass.
    public init(model: CharRNNModel, vocabulary: Vocabulary, options: SamplingOptions, seed: UInt64, streams: Int = 1) {
        precondition(vocabulary.count == model.config.vocabSize)
        precondition(streams >= 1, "at least one stream")
        self.model = model; self.vocabulary = vocabulary; self.options = options; self.streams = streams
        rngs = (0..<streams).map { Xoshiro256(seed: Sampler.seed(seed, stream: $0)) }
        V = model.config.vocabSize
        state = InferenceState(config: model.config, streams: streams)
        logProbs = Storage(count: streams * V)
        tokens = IntStorage(count: streams)
        drawer = TokenDrawer(vocabSize: V, unknownID: vocabulary.unknownID)
    }

    /// Loads a checkpoint file for sampling.
    public convenience init(checkpoint: Checkpoint.Loaded, options: SamplingOptions, seed: UInt64, streams: Int = 1,
                            weights: WeightPrecision = .fp32) throws {
        let model = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: streams)
        try Checkpoint.restore(checkpoint, model: model)
        model.inferencePrecision = weights
        self.init(model: model, vocabulary: checkpoint.meta.vocabulary, options: options, seed: seed, streams: streams)
    }

    /// The seed of stream i's generator: the seed itself for stream 0, a SplitMix64 step away for the others.
    public static func seed(_ seed: UInt64, stream i: Int) -> UInt64 {
        guard i > 0 else { return seed }
        var z = seed &+ UInt64(i - 1) &* 0x9E37_79B9_7F4A_7C15   // i steps from the seed
        return Xoshiro256.splitmix(&z)
    }

    /// Zeroes the hidden state of every stream.
    public func reset() { state.reset(); hasState = false }

    /// Feeds the same token to every stream; afterwards each stream's log-probabilities are those of
    /// the next token.
    public func feed(_ token: Int) {
        precondition(token >= 0 && token < V)
        for r in 0..<streams { tokens.ptr[r] = Int32(token) }
        model.step(tokens: tokens.ptr, state: state, logProbs: logProbs.ptr)
        hasState = true
    }

    /// Feeds the tokens of `text` (same tokenizer as training) to every stream. Returns the
    /// characters that are not in the vocabulary (skipped), distinct, in order of appearance.
    @discardableResult
    public func prime(_ text: String, normalize: Normalization) -> [String] {
        let (ids, unknown) = vocabulary.encode(text, normalize: normalize)
        for t in ids { feed(Int(t)) }
        return unknown
    }

    /// Feeds a neutral start when nothing was primed: a newline if the vocabulary has one, else
    /// the distribution stays uniform.
    public func start() {
        if let nl = vocabulary.startID { feed(nl) } else { logProbs.zero(); hasState = true }
    }

    /// Single stream: draws the next token, feeds it, and returns it.
    public func next() -> Int {
        precondition(streams == 1, "next() draws for one stream; use next(into:)")
        if !hasState { start() }
        let tok = draw()
        feed(tok)
        return tok
    }

    /// Draws the next token of every stream into `out` (K) and feeds them all in one step.
    public func next(into out: UnsafeMutablePointer<Int32>) {
        if !hasState { start() }
        for r in 0..<streams {
            let t = Int32(draw(stream: r))
            out[r] = t; tokens.ptr[r] = t
        }
        model.step(tokens: tokens.ptr, state: state, logProbs: logProbs.ptr)
    }

    /// The likeliest token of `stream` (ties: lowest id), never the unknown token.
    public func argmax(stream: Int = 0) -> Int { drawer.argmax(logProbs.ptr + stream * V) }

    /// Draws the next token of `stream` with the stream's own generator (see `TokenDrawer.draw`).
    public func draw(stream: Int = 0) -> Int { drawer.draw(logProbs.ptr + stream * V, options: options, rng: &rngs[stream]) }

    /// log p of the next token (V) of `stream`, for tests.
    public func currentLogProbs(stream: Int = 0) -> [Float] { Array(UnsafeBufferPointer(start: logProbs.ptr + stream * V, count: V)) }
}

extension Vocabulary {
    /// The token a sample starts from when nothing was primed: a newline (or CRLF), if the
    /// vocabulary has one; otherwise the first distribution is uniform.
    public var startID: Int? { id(of: "\n") ?? id(of: "\r\n") }
}

/// Shapes one stream's next-token distribution and draws from it: softmax(log p / T), the unknown
/// token masked, then top-k and top-p (nucleus) truncation. T = 0 is argmax. Holds the scratch of
/// one draw (allocated once); draws for several streams one after another.
public final class TokenDrawer: @unchecked Sendable {
    public let V: Int
    let unknownID: Int?                // masked: never drawn
    let probs: Storage                 // (V) the shaped distribution
    let order: UnsafeMutablePointer<Int32>  // (V) indices for top-k / top-p

    public init(vocabSize V: Int, unknownID: Int?) {
        self.V = V; self.unknownID = unknownID
        probs = Storage(count: V)
        order = .allocate(capacity: V)
    }

    deinit { order.deallocate() }

    /// The likeliest id of a row of V scores (ties: lowest id), never the unknown token.
    public func argmax(_ z: UnsafePointer<Float>) -> Int {
        var best = unknownID == 0 && V > 1 ? 1 : 0
        for i in 1..<V where z[i] > z[best] && i != unknownID { best = i }
        return best
    }

    /// Draws an id from softmax(z / T) restricted by top-k / top-p, advancing `rng` once (not at T = 0).
    /// - Parameter z: (V) log-probabilities (or any scores: only differences matter).
    public func draw(_ z: UnsafePointer<Float>, options: SamplingOptions, rng: inout Xoshiro256) -> Int {
        let T = options.temperature
        if T == 0 { return argmax(z) }
        let pr = probs.ptr
        var m = -Float.infinity
        for i in 0..<V { m = max(m, z[i]) }
        var sv = Vec()
        let invT = Vec(repeating: 1 / T), mv = Vec(repeating: m)
        // pr = exp((z − m)/T), sixteen at a time (the helper returns its lanes: a nested function that
        // captured `sv` would box it on the heap at every draw)
        forEachLaneBlock(V, { sv += expScaledLanes($0, z: z, at: $1, max: mv, invT: invT, into: pr) },
                         tail: { sv += expScaledLanes($0, z: z, at: $1, max: mv, invT: invT, into: pr) })
        var s = sv.sum()
        if let u = unknownID, V > 1 { s -= pr[u]; pr[u] = 0 }   // the unknown token is never sampled
        let k = options.topK > 0 ? min(options.topK, V) : V
        if k == V && options.topP >= 1 {
            // plain categorical draw
            let u = Float(rng.nextDouble()) * s
            var acc: Float = 0
            for i in 0..<V { acc += pr[i]; if u < acc { return i } }
            return lastNonzero()
        }
        // sort ids by probability (descending, ties by id) — only when truncating
        for i in 0..<V { order[i] = Int32(i) }
        var buf = UnsafeMutableBufferPointer(start: order, count: V)
        buf.sort { (a: Int32, b: Int32) -> Bool in
            let pa = pr[Int(a)], pb = pr[Int(b)]
            return pa > pb || (pa == pb && a < b)
        }
        var keep = k
        if options.topP < 1 {
            let target = options.topP * s
            var acc: Float = 0
            for r in 0..<k {
                acc += pr[Int(order[r])]
                if acc >= target { keep = r + 1; break }
            }
        }
        var kept: Float = 0
        for r in 0..<keep { kept += pr[Int(order[r])] }
        let u = Float(rng.nextDouble()) * kept
        var acc: Float = 0
        for r in 0..<keep {
            acc += pr[Int(order[r])]
            if u < acc { return Int(order[r]) }
        }
        return Int(order[keep - 1])
    }

    private func lastNonzero() -> Int {
        var i = V - 1
        while i > 0 && probs.ptr[i] == 0 { i -= 1 }
        return i
    }
}

/// pr[i…] = exp((z[i…] − m)/T) for one block of lanes; returns them (zero outside the block).
@inline(__always)
func expScaledLanes<L: Lanes>(_ l: L, z: UnsafePointer<Float>, at i: Int, max mv: Vec, invT: Vec, into pr: UnsafeMutablePointer<Float>) -> Vec {
    let e = vexp((l.load(z + i) - mv) * invT)
    l.store(e, pr + i)
    return l.keep(e)
}
