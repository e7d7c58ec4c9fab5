// Model/CharRNNModel.swift — the stack: [embedding] → L recurrent layers → dropout → output layer.
//
// Legend: T steps, B batch, V vocabulary, E embedding width, H hidden, L layers, N = T·B rows.
// What the network is (every tensor's name, shape and role) is NetworkSpec; this file runs it.
// Memory (llm.c's split by role): one flat Storage for parameters, one for gradients (same layout),
// and per-layer activation caches sized for (maxT, maxB), all allocated in `init`. Nothing is
// allocated by `trainStep` or `evaluate`.
// Dropout (inverted, PyTorch semantics) sits between layers and before the decoder, as in char-rnn;
// its masks are a function of (step key, layer, step, global stream), Layers/Dropout.swift.
// Precision: float32, or bf16 products in training once `enableBF16Training` (Model/MixedPrecision.swift).

/// The carried hidden state of every layer for B streams (truncated BPTT: carried, not back-propagated).
package final class RecurrentState: @unchecked Sendable {
    package let h: [Storage]    // L × (B, H)
    package let c: [Storage]    // L × (B, H); empty unless LSTM
    package let batch: Int
    package init(config: ModelConfig, batch: Int) {
        self.batch = batch
        h = (0..<config.layers).map { _ in Storage(count: batch * config.hidden) }
        c = config.cell == .lstm ? (0..<config.layers).map { _ in Storage(count: batch * config.hidden) } : []
    }
    package func reset() { h.forEach { $0.zero() }; c.forEach { $0.zero() } }
    /// Zeroes the state of stream `j` alone (row j of every h and c).
    /// Allocation-free (the training step calls it): not `h + c`, a new array at every call.
    package func reset(stream j: Int) {
        let H = h[0].count / batch
        for s in h { (s.ptr + j * H).update(repeating: 0, count: H) }
        for s in c { (s.ptr + j * H).update(repeating: 0, count: H) }
    }
    package func copy(from o: RecurrentState) {
        for (a, b) in zip(h, o.h) { a.ptr.update(from: b.ptr, count: a.count) }
        for (a, b) in zip(c, o.c) { a.ptr.update(from: b.ptr, count: a.count) }
    }
}

package final class CharRNNModel: @unchecked Sendable {
    package let config: ModelConfig
    /// Every tensor of the network (names, shapes, roles); the layout below is built from it.
    package let spec: NetworkSpec
    package let layout: ParameterLayout
    package let params: Storage
    package let grads: Storage
    package let maxT: Int, maxB: Int
    package let embedding: EmbeddingLayer?
    package let layers: [RecurrentLayer]
    /// Full or adaptive softmax.
    package let output: any OutputLayer
    /// Packed weights of the inference step; made on first use, dropped by `parametersChanged`.
    var inference: InferenceWeights?
    /// How the inference step stores its packed matrices (training always reads float32).
    package var inferencePrecision: WeightPrecision = .fp32
    /// bf16 training (Model/MixedPrecision.swift): nil trains in float32.
    var bf16: BF16Training?

    // Workspace, (maxT, maxB) sized.
    let embOut: Storage?         // (T, B, E)
    let dEmb: Storage?           // (T, B, E)
    let masks: [Storage]         // L × (T, B, H) dropout masks of each layer's output (empty when dropout = 0)
    let dropped: [Storage]       // L × (T, B, H) masked outputs
    let dy: [Storage]            // L × (T, B, H) ∂L/∂(layer k's output h[1...T])
    let ones: Storage            // (N) of 1, for bias column sums

    /// Builds the parameter layout (zeros) and all workspaces for minibatches up to (maxT, maxB).
    package init(config: ModelConfig, maxT: Int, maxB: Int) {
        precondition(config.problem == nil, config.problem ?? "")
        WorkerPool.configureIfNeeded()
        self.config = config; self.maxT = maxT; self.maxB = maxB
        spec = NetworkSpec(config)
        let layout = ParameterLayout(spec.parameters)
        self.layout = layout
        let H = config.hidden, L = config.layers, N = maxT * maxB
        embedding = layout[StateDict.embedding].map { EmbeddingLayer(weight: $0) }
        if let a = config.adaptive {
            output = AdaptiveSoftmaxOutput(layer: AdaptiveSoftmaxLayer(config: a, hidden: H, layout: layout), maxRows: N)
        } else {
            output = FullSoftmaxOutput(decoder: LinearLayer(weight: layout[StateDict.decoderWeight]!, bias: layout[StateDict.decoderBias]!),
                                       maxRows: N)
        }
        params = Storage(count: layout.count)
        grads = Storage(count: layout.count)
        layers = (0..<L).map { k in
            let D = config.inputSize(layer: k), oneHot = k == 0 && config.embed == 0
            let params = RecurrentParams(layout: layout, layer: k)
            switch config.cell {
            case .lstm: return LSTMLayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
            case .gru: return GRULayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
            case .rnn: return RNNLayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
            }
        }
        embOut = config.embed > 0 ? Storage(count: N * config.embed) : nil
        dEmb = config.embed > 0 ? Storage(count: N * config.embed) : nil
        masks = config.dropout > 0 ? (0..<L).map { _ in Storage(count: N * H) } : []
        dropped = config.dropout > 0 ? (0..<L).map { _ in Storage(count: N * H) } : []
        dy = (0..<L).map { _ in Storage(count: N * H) }
        ones = Storage(count: N)
        for i in 0..<N { ones.ptr[i] = 1 }
    }

    /// char-rnn's initialisation: every parameter uniform(−0.08, 0.08), then the LSTM forget-gate
    /// block of each bias_ih set to 1.
    package func initialize(rng: inout Xoshiro256) {
        for v in layout.views {
            let p = params.ptr + v.offset
            for i in 0..<v.count { p[i] = (rng.nextFloat() * 2 - 1) * 0.08 }
        }
        if config.cell == .lstm {
            let H = config.hidden
            for l in layers { (params.ptr + l.params.bIH.offset + H).update(repeating: 1, count: H) }
        }
        parametersChanged()
    }

    /// Call after writing `params` other than by training (a restore, a copy): the inference step
    /// re-packs its weights on next use.
    package func parametersChanged() { inference = nil; bf16?.fresh = false }

    // MARK: - Forward

    /// Runs the recurrent stack over a minibatch and returns its top output (N, H): after dropout
    /// when `dropout` is given and the model has dropout (the masks `Dropout.drawMask` draws for it).
    /// Reads and updates `state`. `bf16`: the recurrent products in bf16 (training in bf16 only).
    func forwardStack(x: UnsafePointer<Int32>, T: Int, B: Int, state: RecurrentState,
                      dropout draw: DropoutDraw?, bf16: Bool = false) -> UnsafeMutablePointer<Float> {
        precondition(T >= 1 && T <= maxT && B >= 1 && B <= maxB && state.batch == B, "minibatch (\(T), \(B)) does not fit the model workspace")
        let N = T * B, H = config.hidden
        let p = UnsafePointer(params.ptr)
        let drop = draw != nil && config.dropout > 0
        var input: LayerInput
        if let embedding, let embOut {
            let probe = Profiler.start()
            embedding.forward(ids: x, rows: N, p: p, out: embOut.ptr)
            Profiler.stop(.inputProjection, probe)
            input = .dense(embOut.ptr)
        } else {
            input = .tokens(x)
        }
        var out: UnsafeMutablePointer<Float>? = nil
        for (k, layer) in layers.enumerated() {
            let c = state.c.isEmpty ? nil : state.c[k].ptr
            layer.mixedActive = bf16
            layer.forward(input, T: T, B: B, p: p, h0: state.h[k].ptr, c0: c, hT: state.h[k].ptr, cT: c)
            out = layer.output(B: B)
            if drop {
                Dropout.drawMask(masks[k].ptr, T: T, B: B, H: H, layer: k, prob: config.dropout, draw: draw!)
                Dropout.apply(out!, mask: masks[k].ptr, out: dropped[k].ptr, n: N * H)
                out = dropped[k].ptr
            }
            input = .dense(out!)
        }
        return out!   // L ≥ 1
    }

    /// Mean cross-entropy of one minibatch without gradients (no dropout), from the exact
    /// distribution. Updates `state`.
    package func evaluate(x: UnsafePointer<Int32>, y: UnsafePointer<Int32>, T: Int, B: Int, state: RecurrentState) -> Double {
        let top = forwardStack(x: x, T: T, B: B, state: state, dropout: nil)
        return output.exactLoss(x: top, targets: y, rows: T * B, p: params.ptr)
    }

    /// log p(next token) of every vocabulary id for each row of a minibatch: out (T·B, V), written;
    /// the training forward (no dropout), so the inference step can be checked against it. Updates `state`.
    package func logProbs(x: UnsafePointer<Int32>, T: Int, B: Int, state: RecurrentState, out: UnsafeMutablePointer<Float>) {
        let top = forwardStack(x: x, T: T, B: B, state: state, dropout: nil)
        output.logProbs(x: top, rows: T * B, p: params.ptr, out: out)
    }

    // MARK: - Forward + backward

    /// `trainStep(…dropout:)` with the step's dropout key drawn from `rng` (one word, only when the
    /// model has dropout; `rng` is not touched otherwise), the rows being streams 0..<B.
    @discardableResult
    package func trainStep(x: UnsafePointer<Int32>, y: UnsafePointer<Int32>, T: Int, B: Int,
                          state: RecurrentState, rng: inout Xoshiro256) -> Double {
        trainStep(x: x, y: y, T: T, B: B, state: state, dropout: DropoutDraw(key: config.dropout > 0 ? rng.next() : 0))
    }

    /// Zeroes the gradients, runs forward (with dropout when configured: the masks of `dropout`) and
    /// backward; returns the mean loss. Gradients of the mean loss are in `grads`; `state` holds the
    /// new carried state.
    @discardableResult
    package func trainStep(x: UnsafePointer<Int32>, y: UnsafePointer<Int32>, T: Int, B: Int,
                          state: RecurrentState, dropout: DropoutDraw) -> Double {
        grads.zero()
        if let t = bf16, !t.fresh { packBF16Weights() }
        let top = forwardStack(x: x, T: T, B: B, state: state, dropout: dropout, bf16: bf16 != nil)
        let N = T * B, H = config.hidden
        let p = UnsafePointer(params.ptr), g = grads.ptr
        let drop = config.dropout > 0
        let L = layers.count
        let probe = Profiler.start()
        let loss = output.trainLoss(x: top, targets: y, rows: N, p: p, g: g, ones: ones.ptr, dx: dy[L - 1].ptr)
        Profiler.stop(.output, probe)
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
        if let embedding, let dEmb {
            let probe = Profiler.start()
            embedding.backward(ids: x, rows: N, dout: dEmb.ptr, g: g)
            Profiler.stop(.inputProjection, probe)
        }
        return loss
    }
}
