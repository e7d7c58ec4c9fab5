// ReferenceSampler.swift — `Sampler`, a step-by-step sampler kept by the tests as an independent
// reference for the one generation loop (GenerationLoop, which `charrnn sample` and `serve` run): K
// streams stepped in lockstep through the model's inference step; `feed` gives every stream the same
// token, `prime` feeds a text, `start` feeds the start token (a newline, or a uniform first
// distribution), `draw` draws from one stream's row with its own generator (seeded as the loop
// seeds stream i), `next` draws and feeds. Tests compare the loop, the engine and the CLI with it.

@testable import CharRNN

final class Sampler {
    let model: CharRNNModel
    let vocabulary: Vocabulary
    var options: SamplingOptions
    /// K streams sampled together.
    let streams: Int
    /// One generator per stream.
    var rngs: [Xoshiro256]

    let V: Int
    let state: InferenceState
    let logProbs: Storage              // (K, V) log p of the next token per stream
    let tokens: IntStorage             // (K) the tokens fed to the step
    let drawer: TokenDrawer
    private(set) var hasState = false

    /// - Parameters:
    ///   - model: holds the weights (any workspace size).
    ///   - seed: stream 0 draws from `Xoshiro256(seed: seed)`, stream i from `Sampler.seed(seed, stream: i)`.
    ///   - streams: K ≥ 1 samples drawn in one batched pass.
    init(model: CharRNNModel, vocabulary: Vocabulary, options: SamplingOptions, seed: UInt64, streams: Int = 1) {
        precondition(vocabulary.count == model.config.vocabSize)
        precondition(streams >= 1, "at least one stream")
        self.model = model; self.vocabulary = vocabulary; self.options = options; self.streams = streams
        rngs = (0..<streams).map { Xoshiro256(seed: GenerationLoop.streamSeed(seed, stream: $0)) }
        V = model.config.vocabSize
        state = InferenceState(config: model.config, streams: streams)
        logProbs = Storage(count: streams * V)
        tokens = IntStorage(count: streams)
        drawer = TokenDrawer(vocabSize: V, unknownID: vocabulary.unknownID)
    }

    /// Loads a checkpoint file for sampling.
    convenience init(checkpoint: Checkpoint.Loaded, options: SamplingOptions, seed: UInt64, streams: Int = 1,
                            weights: WeightPrecision = .fp32) throws {
        let model = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: streams)
        try Checkpoint.restore(checkpoint, model: model)
        model.inferencePrecision = weights
        self.init(model: model, vocabulary: checkpoint.meta.vocabulary, options: options, seed: seed, streams: streams)
    }

    /// The seed of stream i's generator (the library's derivation).
    static func seed(_ seed: UInt64, stream i: Int) -> UInt64 { GenerationLoop.streamSeed(seed, stream: i) }

    /// Zeroes the hidden state of every stream.
    func reset() { state.reset(); hasState = false }

    /// Feeds the same token to every stream; afterwards each stream's log-probabilities are those of
    /// the next token.
    func feed(_ token: Int) {
        precondition(token >= 0 && token < V)
        for r in 0..<streams { tokens.ptr[r] = Int32(token) }
        model.step(tokens: tokens.ptr, state: state, logProbs: logProbs.ptr)
        hasState = true
    }

    /// Feeds the tokens of `text` (same tokenizer as training) to every stream. Returns the
    /// characters that are not in the vocabulary (skipped), distinct, in order of appearance.
    @discardableResult
    func prime(_ text: String, normalize: Normalization) -> [String] {
        let (ids, unknown) = vocabulary.encode(text, normalize: normalize)
        for t in ids { feed(Int(t)) }
        return unknown
    }

    /// Feeds a neutral start when nothing was primed: a newline if the vocabulary has one, else
    /// the distribution stays uniform.
    func start() {
        if let nl = vocabulary.startID { feed(nl) } else { logProbs.zero(); hasState = true }
    }

    /// Single stream: draws the next token, feeds it, and returns it.
    func next() -> Int {
        precondition(streams == 1, "next() draws for one stream; use next(into:)")
        if !hasState { start() }
        let tok = draw()
        feed(tok)
        return tok
    }

    /// Draws the next token of every stream into `out` (K) and feeds them all in one step.
    func next(into out: UnsafeMutablePointer<Int32>) {
        if !hasState { start() }
        for r in 0..<streams {
            let t = Int32(draw(stream: r))
            out[r] = t; tokens.ptr[r] = t
        }
        model.step(tokens: tokens.ptr, state: state, logProbs: logProbs.ptr)
    }

    /// The likeliest token of `stream` (ties: lowest id), never the unknown token.
    func argmax(stream: Int = 0) -> Int { drawer.argmax(logProbs.ptr + stream * V) }

    /// Draws the next token of `stream` with the stream's own generator (see `TokenDrawer.draw`).
    func draw(stream: Int = 0) -> Int { drawer.draw(logProbs.ptr + stream * V, options: options, rng: &rngs[stream]) }

    /// log p of the next token (V) of `stream`, for tests.
    func currentLogProbs(stream: Int = 0) -> [Float] { Array(UnsafeBufferPointer(start: logProbs.ptr + stream * V, count: V)) }
}

