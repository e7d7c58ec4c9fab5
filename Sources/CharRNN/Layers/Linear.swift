// Layers/Linear.swift — the decoder, PyTorch nn.Linear (`decoder.weight` (V, H), `decoder.bias` (V)).
//
//   forward:  logits (N, V) = y (N, H) · Wᵀ + b           one GEMM over all N = T·B rows
//   backward: dW += dlogitsᵀ · y,  db += Σ_rows dlogits,  dy = dlogits · W
// `forward16`/`backward16`: the same with bf16 operands and float32 sums (bf16 training,
// Model/MixedPrecision.swift); the bias and its gradient stay float32.

package struct LinearLayer: Sendable {
    package let weight: TensorView   // (V, H)
    package let bias: TensorView     // (V)
    package let inFeatures: Int, outFeatures: Int

    package init(weight: TensorView, bias: TensorView) {
        self.weight = weight; self.bias = bias
        outFeatures = weight.shape[0]; inFeatures = weight.shape[1]
    }

    /// Writes out (rows, V).
    package func forward(x: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let V = outFeatures, H = inFeatures
        let b = p + bias.offset
        for r in 0..<rows { (out + r * V).update(from: b, count: V) }
        // logits = y · Wᵀ + b
        pgemm(.noTrans, .trans, m: rows, n: V, k: H, a: x, lda: H, b: p + weight.offset, ldb: H, beta: 1, c: out, ldc: V)
    }

    /// Parameter gradients accumulate; dx (rows, H) is written.
    package func backward(x: UnsafePointer<Float>, dout: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>,
                         g: UnsafeMutablePointer<Float>, ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        let V = outFeatures, H = inFeatures
        // logits = y · Wᵀ + b  ⇒  dW += doutᵀ · y,  db += Σ dout,  dy = dout · W
        pgemm(.trans, .noTrans, m: V, n: H, k: rows, a: dout, lda: V, b: x, ldb: H, beta: 1, c: g + weight.offset, ldc: H)
        pgemvTrans(m: rows, n: V, a: dout, lda: V, x: ones, beta: 1, y: g + bias.offset)
        pgemm(.noTrans, .noTrans, m: rows, n: H, k: V, a: dout, lda: V, b: p + weight.offset, ldb: H, beta: 0, c: dx, ldc: H)
    }

    /// `forward` with bf16 products: logits = b + bf16(x) · bf16(W)ᵀ, W from `m` (packed this step).
    /// Without `addBias`, out = bf16(x) · bf16(W)ᵀ alone and the caller adds b as it reads the rows
    /// (the full softmax's training pass): (x·Wᵀ) + b has the bits of b + x·Wᵀ, and no pass writes b
    /// into every row first for the product to read back.
    func forward16(x: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, m: DecoderBF16,
                   addBias: Bool = true) {
        let V = outFeatures, H = inFeatures
        let b = p + bias.offset
        if addBias { for r in 0..<rows { (out + r * V).update(from: b, count: V) } }
        bf16Gemm(m: rows, a: x, lda: H, b: m.wT, scratch: m.scratch.rows, c: out, ldc: V, accumulate: addBias)
    }

    /// `backward` with bf16 products: dW += bf16(dout)ᵀ · bf16(x), dx = bf16(dout) · bf16(W); db += Σ dout
    /// in float32, summed in the pass that rounds dout for dW.
    /// With `doutRounded`, the caller has left bf16(dout) in `m.scratch.rows` (the softmax's pass).
    func backward16(x: UnsafePointer<Float>, dout: UnsafePointer<Float>, rows: Int, p: UnsafePointer<Float>,
                    g: UnsafeMutablePointer<Float>, dx: UnsafeMutablePointer<Float>, m: DecoderBF16, doutRounded: Bool = false) {
        let V = outFeatures, H = inFeatures, s = m.scratch
        bf16GemmTN(m: V, n: H, k: rows, a: dout, lda: V, b: x, ldb: H, aScratch: s.pairs, bScratch: s.acts,
                   c: g + weight.offset, ldc: H, accumulate: true, columnSums: s.sums.ptr)
        addVectors(g + bias.offset, s.sums.ptr, into: g + bias.offset, n: V)
        if doutRounded {
            precondition(s.rows.rows == rows && s.rows.k == V, "backward16: dout is not in the rows scratch")
            bf16Gemm(a: s.rows, b: m.w, c: dx, ldc: H, accumulate: false)
        } else {
            bf16Gemm(m: rows, a: dout, lda: V, b: m.w, scratch: s.rows, c: dx, ldc: H, accumulate: false)
        }
    }
}
