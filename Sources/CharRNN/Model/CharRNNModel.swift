// Model/CharRNNModel.swift — the stack: [embedding] → L recurrent layers → dropout → decoder → softmax CE.
//
// Legend: T steps, B batch, V vocabulary, E embedding width, H hidden, L layers, N = T·B rows.
// Memory (llm.c's split by role): one flat Storage for parameters, one for gradients (same layout),
// and per-layer activation caches sized for (maxT, maxB), all allocated in `init`. Nothing is
// allocated by `trainStep` or `evaluate`.
// Dropout (inverted, PyTorch semantics) sits between layers and before the decoder, as in char-rnn.

/// The carried hidden state of every layer for B streams (truncated BPTT: carried, not back-propagated).
public final class RecurrentState: @unchecked Sendable {
    public let h: [Storage]    // L × (B, H)
    public let c: [Storage]    // L × (B, H); empty unless LSTM
    public let batch: Int
    public init(config: ModelConfig, batch: Int) {
        self.batch = batch
        h = (0..<config.layers).map { _ in Storage(count: batch * config.hidden) }
        c = config.cell == .lstm ? (0..<config.layers).map { _ in Storage(count: batch * config.hidden) } : []
    }
    public func reset() { h.forEach { $0.zero() }; c.forEach { $0.zero() } }
    public func copy(from o: RecurrentState) {
        for (a, b) in zip(h, o.h) { a.ptr.update(from: b.ptr, count: a.count) }
        for (a, b) in zip(c, o.c) { a.ptr.update(from: b.ptr, count: a.count) }
    }
}

public final class CharRNNModel: @unchecked Sendable {
    public let config: ModelConfig
    public let layout: ParameterLayout
    public let params: Storage
    public let grads: Storage
    public let maxT: Int, maxB: Int
    public let embedding: EmbeddingLayer?
    public let layers: [RecurrentLayer]
    public let decoder: LinearLayer
    /// Decoder choice (issue 4): with `config.adaptive`, `decoder` is the adaptive softmax's head and
    /// this holds the tails and their workspace; nil for the full softmax.
    public let adaptive: AdaptiveSoftmaxLayer?
    let adaptiveWS: AdaptiveSoftmaxWorkspace?

    // Workspace, (maxT, maxB) sized.
    let embOut: Storage?         // (T, B, E)
    let dEmb: Storage?           // (T, B, E)
    let masks: [Storage]         // L × (T, B, H) dropout masks of each layer's output (empty when dropout = 0)
    let dropped: [Storage]       // L × (T, B, H) masked outputs
    let dy: [Storage]            // L × (T, B, H) ∂L/∂(layer k's output h[1...T])
    let logits: Storage          // (N, V) (adaptive: (N, S+C) head logits); replaced by ∂L/∂logits in training
    let ones: Storage            // (N) of 1, for bias column sums

    /// Builds the parameter layout (zeros) and all workspaces for minibatches up to (maxT, maxB).
    public init(config: ModelConfig, maxT: Int, maxB: Int) {
        precondition(config.problem == nil, config.problem ?? "")
        BLASThreads.ensureConfigured()
        self.config = config; self.maxT = maxT; self.maxB = maxB
        let V = config.vocabSize, H = config.hidden, L = config.layers, N = maxT * maxB
        var layout = ParameterLayout()
        embedding = config.embed > 0 ? EmbeddingLayer(weight: layout.add(StateDict.embedding, shape: [V, config.embed])) : nil
        var layerParams: [RecurrentParams] = []
        for k in 0..<L {
            layerParams.append(RecurrentLayer.addParams(to: &layout, layer: k, kind: config.cell,
                                                        inputSize: config.inputSize(layer: k), hiddenSize: H))
        }
        // MARK: decoder choice (issue 4) — full softmax, or adaptive softmax whose head is `decoder`
        if let a = config.adaptive {
            let layer = AdaptiveSoftmaxLayer(config: a, hidden: H, layout: &layout)
            decoder = layer.head
            adaptive = layer
            adaptiveWS = AdaptiveSoftmaxWorkspace(layer: layer, maxRows: N)
        } else {
            decoder = LinearLayer(weight: layout.add(StateDict.decoderWeight, shape: [V, H]),
                                  bias: layout.add(StateDict.decoderBias, shape: [V]))
            adaptive = nil
            adaptiveWS = nil
        }
        self.layout = layout
        params = Storage(count: layout.count)
        grads = Storage(count: layout.count)
        layers = (0..<L).map { k in
            let D = config.inputSize(layer: k), oneHot = k == 0 && config.embed == 0
            switch config.cell {
            case .lstm: return LSTMLayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: layerParams[k])
            case .gru: return GRULayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: layerParams[k])
            case .rnn: return RNNLayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: layerParams[k])
            }
        }
        embOut = config.embed > 0 ? Storage(count: N * config.embed) : nil
        dEmb = config.embed > 0 ? Storage(count: N * config.embed) : nil
        masks = config.dropout > 0 ? (0..<L).map { _ in Storage(count: N * H) } : []
        dropped = config.dropout > 0 ? (0..<L).map { _ in Storage(count: N * H) } : []
        dy = (0..<L).map { _ in Storage(count: N * H) }
        logits = Storage(count: N * decoder.outFeatures)
        ones = Storage(count: N)
        for i in 0..<N { ones.ptr[i] = 1 }
    }

    /// char-rnn's initialisation: every parameter uniform(−0.08, 0.08), then the LSTM forget-gate
    /// block of each bias_ih set to 1.
    public func initialize(rng: inout Xoshiro256) {
        for v in layout.views {
            let p = params.ptr + v.offset
            for i in 0..<v.count { p[i] = (rng.nextFloat() * 2 - 1) * 0.08 }
        }
        if config.cell == .lstm {
            let H = config.hidden
            for l in layers { (params.ptr + l.params.bIH.offset + H).update(repeating: 1, count: H) }
        }
    }

    // MARK: - Forward

    /// Runs the stack and the decoder, leaving logits (N, V) in the workspace. Reads and updates
    /// `state`. With `training`, draws fresh dropout masks from `rng`.
    func forwardLogits(x: UnsafePointer<Int32>, T: Int, B: Int, state: RecurrentState, training: Bool, rng: inout Xoshiro256) {
        precondition(T >= 1 && T <= maxT && B >= 1 && B <= maxB && state.batch == B, "minibatch (\(T), \(B)) does not fit the model workspace")
        let N = T * B, H = config.hidden
        let p = UnsafePointer(params.ptr)
        let drop = training && config.dropout > 0
        var input: LayerInput
        if let embedding, let embOut {
            embedding.forward(ids: x, rows: N, p: p, out: embOut.ptr)
            input = .dense(embOut.ptr)
        } else {
            input = .tokens(x)
        }
        for (k, layer) in layers.enumerated() {
            let c = state.c.isEmpty ? nil : state.c[k].ptr
            layer.forward(input, T: T, B: B, p: p, h0: state.h[k].ptr, c0: c, hT: state.h[k].ptr, cT: c)
            var out = layer.output(B: B)
            if drop {
                Dropout.drawMask(masks[k].ptr, n: N * H, prob: config.dropout, rng: &rng)
                Dropout.apply(out, mask: masks[k].ptr, out: dropped[k].ptr, n: N * H)
                out = dropped[k].ptr
            }
            input = .dense(out)
        }
        guard case .dense(let top) = input else { preconditionFailure() }
        decoder.forward(x: top, rows: N, p: p, out: logits.ptr)
    }

    /// Mean cross-entropy of one minibatch without gradients (no dropout). Updates `state`.
    public func evaluate(x: UnsafePointer<Int32>, y: UnsafePointer<Int32>, T: Int, B: Int, state: RecurrentState) -> Double {
        var unused = Xoshiro256(seed: 0)
        forwardLogits(x: x, T: T, B: B, state: state, training: false, rng: &unused)
        if let adaptive, let adaptiveWS {   // decoder choice (issue 4): the exact full distribution
            return adaptive.exactLoss(x: layers[layers.count - 1].output(B: B), targets: y, rows: T * B, head: logits.ptr,
                                      p: params.ptr, ws: adaptiveWS)
        }
        return softmaxCrossEntropy(logits: logits.ptr, targets: y, rows: T * B, V: config.vocabSize, gradient: false)
    }

    // MARK: - Forward + backward

    /// Zeroes the gradients, runs forward (with dropout when configured) and backward; returns the
    /// mean loss. Gradients of the mean loss are in `grads`; `state` holds the new carried state.
    @discardableResult
    public func trainStep(x: UnsafePointer<Int32>, y: UnsafePointer<Int32>, T: Int, B: Int,
                          state: RecurrentState, rng: inout Xoshiro256) -> Double {
        grads.zero()
        forwardLogits(x: x, T: T, B: B, state: state, training: true, rng: &rng)
        let N = T * B, H = config.hidden
        let p = UnsafePointer(params.ptr), g = grads.ptr
        let drop = config.dropout > 0
        let L = layers.count
        let top = drop ? dropped[L - 1].ptr : layers[L - 1].output(B: B)
        // decoder choice (issue 4): adaptive softmax = head CE + tails (forward and backward)
        let loss = adaptive.map { $0.trainLoss(x: top, targets: y, rows: N, head: logits.ptr, p: p, g: g, ws: adaptiveWS!) }
            ?? softmaxCrossEntropy(logits: logits.ptr, targets: y, rows: N, V: config.vocabSize, gradient: true)
        // decoder: logits = top · Wᵀ + b
        decoder.backward(x: top, dout: logits.ptr, rows: N, p: p, g: g, ones: ones.ptr, dx: dy[L - 1].ptr)
        if let adaptiveWS { axpy(n: N * H, alpha: 1, x: adaptiveWS.dxTail.ptr, y: dy[L - 1].ptr) }
        for k in stride(from: L - 1, through: 0, by: -1) {
            // dropout: out = h ⊙ mask  ⇒  dh = dout ⊙ mask
            if drop { Dropout.apply(dy[k].ptr, mask: masks[k].ptr, out: dy[k].ptr, n: N * H) }
            let input: LayerInput
            let dx: UnsafeMutablePointer<Float>?
            if k > 0 {
                input = .dense(drop ? dropped[k - 1].ptr : layers[k - 1].output(B: B))
                dx = dy[k - 1].ptr
            } else if let embOut {
                input = .dense(embOut.ptr); dx = dEmb!.ptr
            } else {
                input = .tokens(x); dx = nil
            }
            layers[k].backward(input, dy: dy[k].ptr, T: T, B: B, p: p, g: g, ones: ones.ptr, dx: dx)
        }
        if let embedding, let dEmb { embedding.backward(ids: x, rows: N, dout: dEmb.ptr, g: g) }
        return loss
    }
}
