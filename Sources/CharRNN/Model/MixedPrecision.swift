// Model/MixedPrecision.swift — what bf16 mixed-precision training (`--precision bf16`, issue 19) adds to
// a model: the bfloat16 copies of its weight matrices, packed for the products of Tensor/BF16GEMM.swift,
// and the scratch operands those products round their activations into. All allocated once, when the
// training step switches the model to bf16 (`CharRNNModel.enableBF16Training`); nothing per step.
//
// Where float32 values become bf16 (every rounding is to nearest even, `bf16RNE`, as VCVTNE2PS2BF16):
// - Weights: once per optimizer step, right after the update (`TrainingStep`), from the float32 master
//   weights into the packed copies below (and when training starts or resumes: the copies are marked
//   stale by `parametersChanged` and re-packed before the next forward). Forward and backward of the
//   next step read them. Once per step because the weights change only then: rounding per use would
//   give the same bits at more cost.
// - Activations and gradients, as produced: x and h[t-1] before the products that read them (the
//   input projection per minibatch, the recurrent product per step and stream slice), the gate
//   gradients dG before dx, dh and the weight gradients, the decoder's input and ∂loss/∂logits (and
//   for the adaptive softmax each tail's gathered rows, projections and their gradients). Each is
//   rounded where it is read, from the float32 value the fp32 path would read, so no value is rounded
//   twice, and the float32 caches the cells, dropout and the softmax use are untouched. Per minibatch
//   (not once per layer for all time) because the values exist only then.
// Everything else is float32: master weights, the gradients as summed (each product adds into them in
// float32), the optimizer moments, clipping, c, the gate nonlinearities, biases, the embedding, the
// one-hot gather and its scatter (a one-hot row picks W's values exactly, so there is no product to
// round), softmax and the loss. Validation and sampling read the float32 weights.

/// The scratch operands every bf16 product of one model rounds into, shared by its layers (they run
/// one after the other; the per-step operand is split by rows across the time loop's parts).
final class BF16Scratch: @unchecked Sendable {
    /// Row layout, (N × k): x of the input projection, dG before dx, the decoder's input and dlogits.
    let rows: BF16Operand
    /// Pair layout, (m × N): the transposed left operand of the weight gradients (dGᵀ, dlogitsᵀ).
    let pairs: BF16Operand
    /// Panels, (N × n): the right operand of the weight gradients (x, h[0..<T], the decoder's input).
    let acts: BF16Panels
    /// Row layout, (B × max(H, G)): h[t-1] of the forward recurrent product, dG[t] of the backward one.
    let step: BF16Operand

    init(maxRows N: Int, maxB: Int, rowsK: Int, gradRows: Int, actsN: Int, stepK: Int) {
        rows = BF16Operand(maxRows: N, maxK: rowsK)
        pairs = BF16Operand(maxRows: gradRows, maxK: N)
        acts = BF16Panels(maxK: N, maxN: actsN)
        step = BF16Operand(maxRows: maxB, maxK: stepK)
    }
}

/// The bf16 weight copies of one recurrent layer.
final class RecurrentBF16: @unchecked Sendable {
    let scratch: BF16Scratch
    /// W_ihᵀ for gx = x · W_ihᵀ, and W_ih for dx = dGx · W_ih (dense input only; a one-hot input gathers).
    let wihT: BF16Panels?, wih: BF16Panels?
    /// W_hhᵀ for the forward recurrent product, W_hh for ∂L/∂h[t-1] = dGh[t] · W_hh.
    let whhT: BF16Panels, whh: BF16Panels

    init(layer: RecurrentLayerCore, scratch: BF16Scratch) {
        self.scratch = scratch
        let D = layer.D, H = layer.H, G = layer.G
        wihT = layer.oneHot ? nil : BF16Panels(maxK: D, maxN: G)
        wih = layer.oneHot ? nil : BF16Panels(maxK: G, maxN: D)
        whhT = BF16Panels(maxK: H, maxN: G)
        whh = BF16Panels(maxK: G, maxN: H)
    }

    func pack(layer: RecurrentLayerCore, p: UnsafePointer<Float>) {
        let D = layer.D, H = layer.H, G = layer.G, pr = layer.params
        wihT?.packTransposed(p + pr.wIH.offset, k: D, n: G, ldw: D)
        wih?.pack(p + pr.wIH.offset, k: G, n: D, ldb: D)
        whhT.packTransposed(p + pr.wHH.offset, k: H, n: G, ldw: H)
        whh.pack(p + pr.wHH.offset, k: G, n: H, ldb: H)
    }
}

/// The bf16 copies of one weight matrix W (out × in) for y = x · Wᵀ: Wᵀ for the forward product and
/// W for dx = dy · W.
final class MatrixBF16: @unchecked Sendable {
    let view: TensorView
    let rows: Int, cols: Int
    let wT: BF16Panels, w: BF16Panels

    init(_ view: TensorView) {
        self.view = view
        rows = view.shape[0]; cols = view.shape[1]
        wT = BF16Panels(maxK: cols, maxN: rows)
        w = BF16Panels(maxK: rows, maxN: cols)
    }

    func pack(_ p: UnsafePointer<Float>) {
        wT.packTransposed(p + view.offset, k: cols, n: rows, ldw: cols)
        w.pack(p + view.offset, k: rows, n: cols, ldb: cols)
    }
}

/// The bf16 weight copies of a linear layer: the full-softmax decoder (V, H) or the adaptive head.
final class DecoderBF16: @unchecked Sendable {
    let scratch: BF16Scratch
    let weight: MatrixBF16
    /// Wᵀ for logits = x · Wᵀ + b, W for dx = dlogits · W.
    var wT: BF16Panels { weight.wT }
    var w: BF16Panels { weight.w }

    init(decoder: LinearLayer, scratch: BF16Scratch) {
        self.scratch = scratch
        weight = MatrixBF16(decoder.weight)
    }

    func pack(_ p: UnsafePointer<Float>) { weight.pack(p) }
}

/// The bf16 weight copies of the adaptive softmax: the head, and each tail's projection W0 (w_i, H)
/// and output W1 (n_i, w_i).
final class AdaptiveBF16: @unchecked Sendable {
    let scratch: BF16Scratch
    let head: DecoderBF16
    let proj: [MatrixBF16], out: [MatrixBF16]

    init(layer: AdaptiveSoftmaxLayer, scratch: BF16Scratch) {
        self.scratch = scratch
        head = DecoderBF16(decoder: layer.head, scratch: scratch)
        proj = layer.tails.map { MatrixBF16($0.proj) }
        out = layer.tails.map { MatrixBF16($0.out) }
    }

    func pack(_ p: UnsafePointer<Float>) {
        head.pack(p)
        for m in proj { m.pack(p) }     // (not proj + out: that would allocate an array per step)
        for m in out { m.pack(p) }
    }
}

/// A model's bf16 training state: the scratch, each layer's copies, the decoder's, and whether the
/// copies hold the current float32 weights.
final class BF16Training: @unchecked Sendable {
    let scratch: BF16Scratch
    let layers: [RecurrentBF16]
    /// The full softmax's decoder, or the adaptive softmax's head and tails.
    let decoder: DecoderBF16?
    let adaptive: AdaptiveBF16?
    /// False until the first pack and after `CharRNNModel.parametersChanged`.
    var fresh = false

    init(model m: CharRNNModel) {
        let N = m.maxT * m.maxB, H = m.config.hidden
        // every (out × in) matrix of the output layer: its products round rows of width in or out
        // (the forward input, dout), its weight gradient out-wide pairs and in-wide panels
        var matrices: [TensorView] = []
        if let full = m.output as? FullSoftmaxOutput { matrices = [full.decoder.weight] }
        if let a = m.output as? AdaptiveSoftmaxOutput { matrices = [a.layer.head.weight] + a.layer.tails.flatMap { [$0.proj, $0.out] } }
        var rowsK = H, gradRows = 1, actsN = H, stepK = H
        for v in matrices {
            rowsK = max(rowsK, v.shape[0], v.shape[1])
            gradRows = max(gradRows, v.shape[0])
            actsN = max(actsN, v.shape[1])
        }
        for l in m.layers {
            rowsK = max(rowsK, l.G, l.oneHot ? 0 : l.D)
            gradRows = max(gradRows, l.G)
            actsN = max(actsN, l.oneHot ? 0 : l.D)
            stepK = max(stepK, l.G)
        }
        let s = BF16Scratch(maxRows: N, maxB: m.maxB, rowsK: rowsK, gradRows: gradRows, actsN: actsN, stepK: stepK)
        scratch = s
        layers = m.layers.map { RecurrentBF16(layer: $0, scratch: s) }
        decoder = (m.output as? FullSoftmaxOutput).map { DecoderBF16(decoder: $0.decoder, scratch: s) }
        adaptive = (m.output as? AdaptiveSoftmaxOutput).map { AdaptiveBF16(layer: $0.layer, scratch: s) }
    }
}

extension CharRNNModel {
    /// Switches training (`trainStep`) to bf16 products: allocates the packed copies and scratch once
    /// (a second call does nothing). Validation, `logProbs` and the inference step stay float32.
    package func enableBF16Training() {
        if bf16 != nil { return }
        let t = BF16Training(model: self)
        for (l, m) in zip(layers, t.layers) { l.mixed = m }
        (output as? FullSoftmaxOutput)?.mixed = t.decoder
        (output as? AdaptiveSoftmaxOutput)?.mixed = t.adaptive
        bf16 = t
    }

    /// Rounds the float32 weights into the bf16 copies (no-op in fp32): the training step calls it
    /// right after each update; `trainStep` calls it when the copies are stale.
    package func packBF16Weights() {
        guard let t = bf16 else { return }
        let p = UnsafePointer(params.ptr)
        for (l, m) in zip(layers, t.layers) { m.pack(layer: l, p: p) }
        t.decoder?.pack(p)
        t.adaptive?.pack(p)
        t.fresh = true
    }

    /// Whether `trainStep` runs its products in bf16.
    package var trainsInBF16: Bool { bf16 != nil }
}
