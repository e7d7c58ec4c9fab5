// Sample/Sampler.swift — generation from a checkpoint, one token at a time at batch 1.
//
// Per token: layer-0 input projection (a column of W_ih for one-hot input, or W_ih·e by gemv for an
// embedding), then per layer one recurrent gemv plus the same fused gate kernel training uses, the
// decoder by gemv, and the distribution: logits/temperature → softmax → optional top-k and top-p
// (nucleus) truncation → one draw. Temperature 0 is argmax. All buffers are allocated at init.

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
    public var rng: Xoshiro256

    let H: Int, V: Int, G: Int
    let h: [Storage], c: [Storage]     // L × (H)
    let xproj: Storage                 // (G) W_ih·x of the current layer
    let hproj: Storage                 // (G) W_hh·h of the current layer
    let scratch: Storage               // cell scratch
    let packedIH: [PackedPanels?]      // per layer W_ihᵀ packed (nil for one-hot layer 0)
    let packedHH: [PackedPanels]       // per layer W_hhᵀ packed
    let packedDec: PackedPanels        // decoder Wᵀ (H × V) packed (the head's, with an adaptive softmax)
    let emb: Storage                   // (E) embedding of the current token
    let wihT: Storage?                 // (V, G) layer-0 W_ihᵀ, for the one-hot column
    let logits: Storage                // (V)
    let probs: Storage                 // (V)
    let order: UnsafeMutablePointer<Int32>  // (V) indices for top-k / top-p
    let adaptiveWS: AdaptiveSoftmaxWorkspace?  // (1 row) with an adaptive softmax: logits are exact log-probs
    let unknownID: Int?                // masked: never drawn
    var hasState = false

    /// - Parameter model: a model built with maxT = maxB = 1 (or larger) holding the weights.
    public init(model: CharRNNModel, vocabulary: Vocabulary, options: SamplingOptions, seed: UInt64) {
        precondition(vocabulary.count == model.config.vocabSize)
        self.model = model; self.vocabulary = vocabulary; self.options = options
        rng = Xoshiro256(seed: seed)
        let cfg = model.config
        H = cfg.hidden; V = cfg.vocabSize; G = cfg.cell.gates * cfg.hidden
        h = (0..<cfg.layers).map { _ in Storage(count: cfg.hidden) }
        c = (0..<cfg.layers).map { _ in Storage(count: cfg.hidden) }
        xproj = Storage(count: G); hproj = Storage(count: G)
        scratch = Storage(count: model.layers.map(\.stepScratchCount).max() ?? 0)
        // Weights packed once into 32-column panels: each token streams them through the SIMD
        // row kernel, split by panels across cores.
        let p = UnsafePointer(model.params.ptr)
        packedIH = model.layers.map { l in
            guard !l.oneHot else { return nil }
            let pk = PackedPanels(maxK: l.D, maxN: l.G)
            pk.packTransposed(p + l.params.wIH.offset, k: l.D, n: l.G, ld: l.D)
            return pk
        }
        packedHH = model.layers.map { l in
            let pk = PackedPanels(maxK: l.H, maxN: l.G)
            pk.packTransposed(p + l.params.wHH.offset, k: l.H, n: l.G, ld: l.H)
            return pk
        }
        // (with an adaptive softmax the decoder is its head; feed then takes the adaptive path)
        let decRows = model.decoder.outFeatures
        packedDec = PackedPanels(maxK: cfg.hidden, maxN: decRows)
        packedDec.packTransposed(p + model.decoder.weight.offset, k: cfg.hidden, n: decRows, ld: cfg.hidden)
        emb = Storage(count: max(1, cfg.embed))
        if cfg.embed == 0 {
            let t = Storage(count: V * G)
            transpose(model.params.ptr + model.layers[0].params.wIH.offset, rows: G, cols: V, into: t.ptr)
            wihT = t
        } else { wihT = nil }
        logits = Storage(count: V); probs = Storage(count: V)
        order = .allocate(capacity: V)
        adaptiveWS = model.adaptive.map { AdaptiveSoftmaxWorkspace(layer: $0, maxRows: 1) }
        unknownID = vocabulary.unknownID
    }

    deinit { order.deallocate() }

    /// Loads a checkpoint file for sampling.
    public convenience init(checkpoint: Checkpoint.Loaded, options: SamplingOptions, seed: UInt64) throws {
        let model = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: model)
        self.init(model: model, vocabulary: checkpoint.meta.vocabulary, options: options, seed: seed)
    }

    /// Zeroes the hidden state.
    public func reset() { h.forEach { $0.zero() }; c.forEach { $0.zero() }; hasState = false }

    /// Feeds one token; afterwards `logits` hold the scores of the next token.
    public func feed(_ token: Int) {
        precondition(token >= 0 && token < V)
        let p = UnsafePointer(model.params.ptr)
        let pool = WorkerPool.shared
        for (k, layer) in model.layers.enumerated() {
            // input of this layer: the embedding row, or the layer below's new h
            var x: UnsafePointer<Float>? = k > 0 ? UnsafePointer(h[k - 1].ptr) : nil
            if k == 0 {
                if let wihT {
                    xproj.ptr.update(from: wihT.ptr + token * G, count: G)   // one-hot: a column of W_ih
                } else {
                    let E = model.config.embed
                    emb.ptr.update(from: p + model.embedding!.weight.offset + token * E, count: E)
                    x = UnsafePointer(emb.ptr)
                }
            }
            let wih = packedIH[k], whh = packedHH[k], hk = UnsafePointer(h[k].ptr)
            let gx = xproj.ptr, gh = hproj.ptr
            let parts = sampleParts(panels: whh.panels, work: G * (H + (x == nil ? 0 : layer.D)))
            let job = RowProductJob(x: x, wih: x == nil ? nil : wih, gx: gx, h: hk, whh: whh, gh: gh, parts: parts)
            pool.run(parts: parts, with: job) { $0.assumingMemoryBound(to: RowProductJob.self).pointee.run(part: $1) }
            layer.stepKernel(gx: gx, gh: gh, h: h[k].ptr, c: c[k].ptr, p: p, scratch: scratch.ptr)
        }
        if let a = model.adaptive, let adaptiveWS {   // issue 4: the exact full distribution, log p per token
            a.fullLogProbs(x: h[model.layers.count - 1].ptr, rows: 1, headLogits: nil, p: p, out: logits.ptr, ws: adaptiveWS)
            hasState = true
            return
        }
        // logits = W_dec · h_top + b
        let top = UnsafePointer(h[model.layers.count - 1].ptr), out = logits.ptr, dec = packedDec
        out.update(from: p + model.decoder.bias.offset, count: V)
        let parts = sampleParts(panels: dec.panels, work: V * H)
        let job = RowProductJob(x: nil, wih: nil, gx: out, h: top, whh: dec, gh: out, parts: parts, accumulate: true)
        pool.run(parts: parts, with: job) { $0.assumingMemoryBound(to: RowProductJob.self).pointee.run(part: $1) }
        hasState = true
    }

    /// Cores worth using for one batch-1 product: only when each gets a sizeable share.
    @inline(__always)
    func sampleParts(panels: Int, work: Int) -> Int {
        work < 400_000 ? 1 : min(WorkerPool.shared.width, panels)
    }

    /// Feeds the tokens of `text` (same tokenizer as training). Returns the characters that are not
    /// in the vocabulary (skipped), distinct, in order of appearance.
    @discardableResult
    public func prime(_ text: String, normalize: Normalization) -> [String] {
        let (ids, unknown) = vocabulary.encode(text, normalize: normalize)
        for t in ids { feed(Int(t)) }
        return unknown
    }

    /// Feeds a neutral start when nothing was primed: a newline if the vocabulary has one, else
    /// the scores stay uniform (zero logits).
    public func start() {
        if let nl = vocabulary.id(of: "\n") ?? vocabulary.id(of: "\r\n") { feed(nl) } else { logits.zero(); hasState = true }
    }

    /// Draws the next token from the current logits, feeds it, and returns it.
    public func next() -> Int {
        if !hasState { start() }
        let tok = draw()
        feed(tok)
        return tok
    }

    /// The index of the largest logit (ties: lowest id).
    public func argmax() -> Int {
        var best = unknownID == 0 && V > 1 ? 1 : 0
        for i in 1..<V where logits.ptr[i] > logits.ptr[best] && i != unknownID { best = i }
        return best
    }

    /// Draws from softmax(logits / T) restricted by top-k / top-p. T = 0 → argmax.
    public func draw() -> Int {
        let T = options.temperature
        if T == 0 { return argmax() }
        let z = logits.ptr, pr = probs.ptr
        var m = -Float.infinity
        for i in 0..<V { m = max(m, z[i]) }
        var sv = Vec()
        let invT = Vec(repeating: 1 / T), mv = Vec(repeating: m)
        var i = 0
        while i < V {   // pr = exp((z − m)/T), sixteen at a time
            let n = min(vecWidth, V - i)
            let e = vexp((vload(z + i, n) - mv) * invT)
            vstore(e, pr + i, n)
            sv += n == vecWidth ? e : vloadMask(e, n)
            i += vecWidth
        }
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

    /// Current next-token scores (V), for tests.
    public var currentLogits: [Float] { logits.toArray() }
}

/// One part of the batch-1 products of a layer: columns of gx = W_ih·x (when x is given) and of
/// gh = W_hh·h (or of the decoder's logits), split by 32-column panels (allocation-free pool job).
private struct RowProductJob {
    let x: UnsafePointer<Float>?, wih: PackedPanels?, gx: UnsafeMutablePointer<Float>
    let h: UnsafePointer<Float>, whh: PackedPanels, gh: UnsafeMutablePointer<Float>, parts: Int
    var accumulate = false
    func run(part: Int) {
        let r = slice(whh.panels, part: part, of: parts)
        if let x, let wih { packedGemmRow(a: x, b: wih, c: gx, accumulate: false, panels: r) }   // W_ih·x
        packedGemmRow(a: h, b: whh, c: gh, accumulate: accumulate, panels: r)                     // W_hh·h (or W_dec·h)
    }
}
