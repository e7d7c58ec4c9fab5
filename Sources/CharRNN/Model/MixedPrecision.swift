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
//   gradients dG before dx, dh and the weight gradients, the decoder's input and ∂loss/∂logits. Each
//   is rounded where it is read, from the float32 value the fp32 path would read, so the error of one
//   product is that of bf16 operands alone (no rounding compounds across products), and the float32
//   caches the cells, dropout and the softmax use are untouched.
// Everything else is float32: master weights, the gradients as summed (each product adds into them in
// float32), the optimizer moments, clipping, c, the gate nonlinearities, biases, the embedding, the
// one-hot gather and its scatter (a one-hot row picks W's values exactly, so there is no product to
// round), softmax and the loss. Validation and sampling read the float32 weights.
// Not covered yet: the adaptive softmax (a bf16 run with it is refused, `bf16Problem`).

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

/// The bf16 weight copies of the full-softmax decoder (V, H).
final class DecoderBF16: @unchecked Sendable {
    let scratch: BF16Scratch
    /// Wᵀ for logits = x · Wᵀ + b, W for dx = dlogits · W.
    let wT: BF16Panels, w: BF16Panels

    init(decoder: LinearLayer, scratch: BF16Scratch) {
        self.scratch = scratch
        wT = BF16Panels(maxK: decoder.inFeatures, maxN: decoder.outFeatures)
        w = BF16Panels(maxK: decoder.outFeatures, maxN: decoder.inFeatures)
    }

    func pack(decoder: LinearLayer, p: UnsafePointer<Float>) {
        let V = decoder.outFeatures, H = decoder.inFeatures
        wT.packTransposed(p + decoder.weight.offset, k: H, n: V, ldw: H)
        w.pack(p + decoder.weight.offset, k: V, n: H, ldb: H)
    }
}

/// A model's bf16 training state: the scratch, each layer's copies, the decoder's, and whether the
/// copies hold the current float32 weights.
final class BF16Training: @unchecked Sendable {
    let scratch: BF16Scratch
    let layers: [RecurrentBF16]
    let decoder: DecoderBF16
    /// False until the first pack and after `CharRNNModel.parametersChanged`.
    var fresh = false

    init(model m: CharRNNModel, decoder: LinearLayer) {
        let N = m.maxT * m.maxB, H = m.config.hidden, V = decoder.outFeatures
        var rowsK = max(H, V), gradRows = V, actsN = H, stepK = H
        for l in m.layers {
            rowsK = max(rowsK, l.G, l.oneHot ? 0 : l.D)
            gradRows = max(gradRows, l.G)
            actsN = max(actsN, l.oneHot ? 0 : l.D)
            stepK = max(stepK, l.G)
        }
        let s = BF16Scratch(maxRows: N, maxB: m.maxB, rowsK: rowsK, gradRows: gradRows, actsN: actsN, stepK: stepK)
        scratch = s
        layers = m.layers.map { RecurrentBF16(layer: $0, scratch: s) }
        self.decoder = DecoderBF16(decoder: decoder, scratch: s)
    }
}

extension CharRNNModel {
    /// Why this model cannot train in bf16, or nil.
    public static func bf16Problem(_ config: ModelConfig) -> String? {
        config.adaptive != nil
            ? "--precision bf16 does not support --softmax adaptive yet (its products are float32 only); use --precision fp32 or --softmax full"
            : nil
    }

    /// Switches training (`trainStep`) to bf16 products: allocates the packed copies and scratch once
    /// (a second call does nothing). Validation, `logProbs` and the inference step stay float32.
    public func enableBF16Training() {
        if bf16 != nil { return }
        precondition(CharRNNModel.bf16Problem(config) == nil, CharRNNModel.bf16Problem(config) ?? "")
        guard let full = output as? FullSoftmaxOutput else { preconditionFailure("bf16 training needs the full softmax") }
        let t = BF16Training(model: self, decoder: full.decoder)
        for (l, m) in zip(layers, t.layers) { l.mixed = m }
        full.mixed = t.decoder
        bf16 = t
    }

    /// Rounds the float32 weights into the bf16 copies (no-op in fp32): the training step calls it
    /// right after each update; `trainStep` calls it when the copies are stale.
    public func packBF16Weights() {
        guard let t = bf16 else { return }
        let p = UnsafePointer(params.ptr)
        for (l, m) in zip(layers, t.layers) { m.pack(layer: l, p: p) }
        if let full = output as? FullSoftmaxOutput { t.decoder.pack(decoder: full.decoder, p: p) }
        t.fresh = true
    }

    /// Whether `trainStep` runs its products in bf16.
    public var trainsInBF16: Bool { bf16 != nil }
}
