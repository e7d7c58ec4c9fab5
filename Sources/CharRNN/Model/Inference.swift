// Model/Inference.swift — one step of the network for B independent streams: a token each in,
// log p(next token) of every id out. Sampling, priming and (later) serving all run through it.
//
// Legend: B streams, L layers, V vocabulary, E embedding width, D input width, H hidden, G = gates·H.
// Per layer: the input product gx (B, G) = x · W_ihᵀ (for one-hot input a row of the W_ihᵀ table per
// stream; for an embedding its rows, then the product), the recurrent product gh (B, G) = h · W_hhᵀ,
// then the cell's fused kernel (the one training uses) updates h and c in place. The top h goes
// to the output layer's `stepLogProbs`. Products use weights packed once (`InferenceWeights`) and
// `packedGemmRows`, whose per-row arithmetic does not depend on B: a stream gives the same bits
// alone or among others, so a sample does not depend on how many are drawn with it. The packed
// matrices (W_ih, W_hh, a full softmax's decoder) are float32, or bfloat16 with
// `inferencePrecision = .bf16` (half the bytes per character; biases, embeddings, the one-hot
// table, the adaptive softmax and all arithmetic stay float32).
// A step may cover only the first R streams of a state (`rows:`): the rest are left untouched.
// Nothing is allocated per step; the cores split the products by 32-column panels.

/// The model's weights in the form the inference step reads; made from `params` by the model.
final class InferenceWeights: @unchecked Sendable {
    let whhT: [PackedPanels]          // L × W_hhᵀ (H × G)
    let wihT: [PackedPanels?]         // L × W_ihᵀ (D × G); nil for a one-hot layer 0
    let gather: Storage?              // (V, G) W_ihᵀ of a one-hot layer 0: row v = gx of token v
    let bias: [Storage]               // L × (G) b_ih + b_hh

    let precision: WeightPrecision

    init(model m: CharRNNModel) {
        let p = UnsafePointer(m.params.ptr)
        let precision = m.inferencePrecision
        self.precision = precision
        whhT = m.layers.map { l in
            let pk = PackedPanels(maxK: l.H, maxN: l.G, precision: precision)
            pk.packTransposed(p + l.params.wHH.offset, k: l.H, n: l.G, ld: l.H)
            return pk
        }
        wihT = m.layers.map { l in
            guard !l.oneHot else { return nil }
            let pk = PackedPanels(maxK: l.D, maxN: l.G, precision: precision)
            pk.packTransposed(p + l.params.wIH.offset, k: l.D, n: l.G, ld: l.D)
            return pk
        }
        if let l = m.layers.first, l.oneHot {
            let t = Storage(count: l.D * l.G)
            transpose(p + l.params.wIH.offset, rows: l.G, cols: l.D, into: t.ptr)
            gather = t
        } else { gather = nil }
        bias = m.layers.map { l in
            let b = Storage(count: l.G)
            addVectors(p + l.params.bIH.offset, p + l.params.bHH.offset, into: b.ptr, n: l.G)
            return b
        }
        m.output.prepareStep(p: p, precision: precision)
    }
}

/// The carried state of B inference streams and the step's workspace.
package final class InferenceState: @unchecked Sendable {
    package let streams: Int
    let H: Int
    let h: [Storage]       // L × (B, H)
    let c: [Storage]       // L × (B, H); empty unless LSTM
    let gx: Storage        // (B, G)
    let gh: Storage        // (B, G)
    let x: Storage         // (B, E) embedding rows of the current tokens
    let scratch: Storage   // (B, H) the cell kernel's tanh c

    /// State for `streams` streams of `config`'s network, all zero.
    package init(config: ModelConfig, streams B: Int) {
        precondition(B >= 1, "at least one stream")
        streams = B; H = config.hidden
        let G = config.cell.gates * config.hidden
        h = (0..<config.layers).map { _ in Storage(count: B * config.hidden) }
        c = config.cell == .lstm ? (0..<config.layers).map { _ in Storage(count: B * config.hidden) } : []
        gx = Storage(count: B * G); gh = Storage(count: B * G)
        x = Storage(count: B * max(1, config.embed))
        scratch = Storage(count: B * config.hidden)
    }

    /// Zeroes every stream's state.
    package func reset() { h.forEach { $0.zero() }; c.forEach { $0.zero() } }

    /// Zeroes the state of stream `i`.
    package func reset(stream i: Int) {
        precondition(i >= 0 && i < streams)
        for s in h { (s.ptr + i * H).update(repeating: 0, count: H) }   // not `h + c`: a new array at every join
        for s in c { (s.ptr + i * H).update(repeating: 0, count: H) }
    }

    /// Copies the state of stream `from` of `source` (same network) into stream `to` of this one.
    package func copyStream(_ from: Int, of source: InferenceState, to: Int) {
        precondition(from >= 0 && from < source.streams && to >= 0 && to < streams && source.H == H && source.h.count == h.count && source.c.count == c.count)
        for k in h.indices { (h[k].ptr + to * H).update(from: source.h[k].ptr + from * H, count: H) }
        for k in c.indices { (c[k].ptr + to * H).update(from: source.c[k].ptr + from * H, count: H) }
    }

    /// Hidden state of layer `k` (B, H), for tests.
    package func hidden(layer k: Int) -> [Float] { h[k].toArray() }
}

extension CharRNNModel {
    /// The packed weights, made on first use after a change of the parameters or the precision.
    func inferenceWeights() -> InferenceWeights {
        if let w = inference, w.precision == inferencePrecision { return w }
        let w = InferenceWeights(model: self)
        inference = w
        return w
    }

    /// One step for the B = `state.streams` streams: feeds `tokens` (B), advances `state`, and writes
    /// log p(next token = v) for every id v to `logProbs` (B, V). No dropout.
    package func step(tokens: UnsafePointer<Int32>, state: InferenceState, logProbs out: UnsafeMutablePointer<Float>) {
        step(tokens: tokens, state: state, rows: state.streams, logProbs: out)
    }

    /// One step for the first `rows` streams of `state` (R ≤ state.streams): feeds `tokens` (R),
    /// advances streams 0..<R of `state`, and writes log p(next token = v) to `logProbs` (R, V).
    /// Streams R..<state.streams are neither read nor written, so a server can keep one state of its
    /// largest batch and step only the rows in use; row r's bits are those of the same stream stepped
    /// alone. No dropout.
    /// - Parameters:
    ///   - tokens: (R) the token each stream feeds.
    ///   - state: carried state of at least R streams.
    ///   - rows: R, the streams stepped (1...state.streams).
    ///   - logProbs: (R, V) written.
    package func step(tokens: UnsafePointer<Int32>, state: InferenceState, rows B: Int, logProbs out: UnsafeMutablePointer<Float>) {
        precondition(B >= 1 && B <= state.streams, "rows \(B) outside 1...\(state.streams)")
        let V = config.vocabSize
        let w = inferenceWeights()
        let p = UnsafePointer(params.ptr)
        let pool = WorkerPool.shared
        for r in 0..<B {
            let t = Int(tokens[r])
            precondition(t >= 0 && t < V, "token id \(t) outside vocabulary of \(V)")
        }
        for (k, layer) in layers.enumerated() {
            let G = layer.G, H = layer.H
            var x: UnsafePointer<Float>? = k > 0 ? UnsafePointer(state.h[k - 1].ptr) : nil
            if k == 0 {
                if let gather = w.gather {
                    // one-hot: gx = W_ihᵀ[token] per stream
                    for r in 0..<B { (state.gx.ptr + r * G).update(from: gather.ptr + Int(tokens[r]) * G, count: G) }
                } else if let embedding {
                    let E = config.embed
                    for r in 0..<B { (state.x.ptr + r * E).update(from: p + embedding.weight.offset + Int(tokens[r]) * E, count: E) }
                    x = UnsafePointer(state.x.ptr)
                }
            }
            let whh = w.whhT[k]
            let parts = inferenceParts(panels: whh.panels, work: B * G * (H + (x == nil ? 0 : layer.D)))
            let job = StepProductJob(x: x, D: layer.D, wih: w.wihT[k], gx: state.gx.ptr, h: state.h[k].ptr, H: H, whh: whh,
                                     gh: state.gh.ptr, G: G, rows: B, parts: parts)
            pool.run(parts: parts, with: job) { $0.assumingMemoryBound(to: StepProductJob.self).pointee.run(part: $1) }
            layer.stepRows(gx: state.gx.ptr, gh: state.gh.ptr, h: state.h[k].ptr, c: state.c.isEmpty ? nil : state.c[k].ptr,
                           rows: B, bias: w.bias[k].ptr, p: p, scratch: state.scratch.ptr)
        }
        output.stepLogProbs(x: state.h[layers.count - 1].ptr, rows: B, p: p, out: out)
    }
}

/// One part of a layer's inference products: the columns of gx = x · W_ihᵀ (when x is given) and of
/// gh = h · W_hhᵀ in one slice of 32-column panels, for every stream (allocation-free pool job).
private struct StepProductJob {
    let x: UnsafePointer<Float>?, D: Int, wih: PackedPanels?, gx: UnsafeMutablePointer<Float>
    let h: UnsafePointer<Float>, H: Int, whh: PackedPanels, gh: UnsafeMutablePointer<Float>, G: Int
    let rows: Int, parts: Int
    func run(part: Int) {
        let r = slice(whh.panels, part: part, of: parts)
        if let x, let wih { packedGemmRows(m: rows, a: x, lda: D, b: wih, c: gx, ldc: G, accumulate: false, panels: r) }
        packedGemmRows(m: rows, a: h, lda: H, b: whh, c: gh, ldc: G, accumulate: false, panels: r)
    }
}
