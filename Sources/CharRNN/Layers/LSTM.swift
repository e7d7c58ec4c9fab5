// Layers/LSTM.swift — PyTorch nn.LSTM, gates packed [i f g o].
//
//   i = σ(W_ii x + b_ii + W_hi h + b_hi)     f = σ(W_if x + b_if + W_hf h + b_hf)
//   g = tanh(W_ig x + b_ig + W_hg h + b_hg)  o = σ(W_io x + b_io + W_ho h + b_ho)
//   c' = f ⊙ c + i ⊙ g                       h' = o ⊙ tanh(c')
//
// Legend: T steps, B batch, H hidden, G = 4H. Caches for backward: gx (T, B, G) overwritten with the
// post-activation gates, c (T+1, B, H) with slot 0 = carried c (the core's second state slot), tanhC
// (T, B, H). Per step (the shared loop of Recurrent.swift): one recurrent GEMM into gx[t], then the
// fused SIMD kernel below (bias and a one-hot input's W_ih row, σ/tanh, c', h'); backward: the
// kernel's derivative into dA = dGx = dGh.

package final class LSTMLayer: RecurrentLayerCore, RecurrentCell, @unchecked Sendable {
    static var kind: CellKind { .lstm }
    static var hasCellState: Bool { true }
    static var keepsHiddenProduct: Bool { false }
    static var hasDirectHiddenPath: Bool { false }

    let tanhC: Storage   // (T, B, H)

    package init(inputSize D: Int, hiddenSize H: Int, oneHot: Bool, maxT: Int, maxB: Int, params: RecurrentParams) {
        tanhC = Storage(count: maxT * maxB * H)
        super.init(cell: LSTMLayer.self, inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
    }

    @inline(__always)
    func forwardStep(_ s: StepRows, p: UnsafePointer<Float>) {
        let c = c.ptr, t = s.t
        lstmForwardKernel(gates: s.g(gx.ptr, t), bias: biasSum.ptr, input: foldedInput(s), cPrev: s.h(c, t), c: s.h(c, t + 1),
                          tanhC: s.h(tanhC.ptr, t), h: s.h(h.ptr, t + 1), rows: s.rows, H: H)
    }

    @inline(__always)
    func backwardStep(_ s: StepRows, dy: UnsafePointer<Float>, dh: UnsafeMutablePointer<Float>) {
        let t = s.t
        lstmBackwardKernel(gates: s.g(gx.ptr, t), cPrev: s.h(c.ptr, t), tanhC: s.h(tanhC.ptr, t), dy: dy, dh: dh,
                           dc: dcNext.ptr + s.oh, dA: s.g(dGx.ptr, t), rows: s.rows, H: H)
    }

    @inline(__always)
    func stepKernel(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                    c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                    scratch: UnsafeMutablePointer<Float>) {
        lstmForwardKernel(gates: gx, bias: bias, input: nil, cPrev: c!, c: c!, tanhC: scratch, h: h, rows: rows, H: H)
    }
}

// MARK: - Fused kernels

/// One step for `rows` rows. gates (rows, 4H): pre-activations without bias in (plus, with `input`,
/// the one-hot rows W_ihᵀ[token] this kernel adds: see `RecurrentLayerCore.foldsGather`),
/// post-activations [i f g o] out. Writes c, tanhC, h (rows, H). cPrev may alias c (sampling).
@inline(__always)
func lstmForwardKernel(gates: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, input: FoldedInput?,
                       cPrev: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, tanhC: UnsafeMutablePointer<Float>,
                       h: UnsafeMutablePointer<Float>, rows: Int, H: Int) {
    let G = 4 * H
    for b in 0..<rows {
        let a = gates + b * G, x = input?.row(b)
        let cp = cPrev + b * H, cr = c + b * H, tr = tanhC + b * H, hr = h + b * H
        forEachLaneBlock(H, { lstmForwardLanes($0, a: a, x: x, bias: bias, cp: cp, c: cr, tanhC: tr, h: hr, j: $1, H: H) },
                         tail: { lstmForwardLanes($0, a: a, x: x, bias: bias, cp: cp, c: cr, tanhC: tr, h: hr, j: $1, H: H) })
    }
}

/// The forward cell math for lanes j… of one row (gates a (4H), the one-hot row x (4H) or nil,
/// cp/c/tanhC/h (H)).
@inline(__always)
func lstmForwardLanes<L: Lanes>(_ l: L, a: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>?, bias: UnsafePointer<Float>,
                                cp: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, tanhC: UnsafeMutablePointer<Float>,
                                h: UnsafeMutablePointer<Float>, j: Int, H: Int) {
    let i = vsigmoid(preActivation(l, a, x, bias, j))
    let f = vsigmoid(preActivation(l, a, x, bias, H + j))
    let gg = vtanh(preActivation(l, a, x, bias, 2 * H + j))
    let o = vsigmoid(preActivation(l, a, x, bias, 3 * H + j))
    let cn = f * l.load(cp + j) + i * gg          // c' = f ⊙ c + i ⊙ g
    let tc = vtanh(cn)
    l.store(i, a + j); l.store(f, a + H + j); l.store(gg, a + 2 * H + j); l.store(o, a + 3 * H + j)
    l.store(cn, c + j); l.store(tc, tanhC + j)
    l.store(o * tc, h + j)                        // h' = o ⊙ tanh(c')
}

/// Backward of one step. Reads the post-activation gates, c[t-1], tanh(c[t]), dy[t]; dh holds
/// ∂L/∂h[t] from step t+1 (read), dc holds ∂L/∂c[t] from step t+1 (read, then overwritten with
/// ∂L/∂c[t-1]). Writes dA (rows, 4H) = ∂L/∂ pre-activations.
@inline(__always)
func lstmBackwardKernel(gates: UnsafePointer<Float>, cPrev: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
                        dy: UnsafePointer<Float>, dh: UnsafePointer<Float>, dc: UnsafeMutablePointer<Float>,
                        dA: UnsafeMutablePointer<Float>, rows: Int, H: Int) {
    let G = 4 * H
    for b in 0..<rows {
        let a = gates + b * G, d = dA + b * G
        let cp = cPrev + b * H, tr = tanhC + b * H, dyr = dy + b * H, dhr = dh + b * H, dcr = dc + b * H
        forEachLaneBlock(H, { lstmBackwardLanes($0, a: a, cp: cp, tanhC: tr, dy: dyr, dh: dhr, dc: dcr, dA: d, j: $1, H: H) },
                         tail: { lstmBackwardLanes($0, a: a, cp: cp, tanhC: tr, dy: dyr, dh: dhr, dc: dcr, dA: d, j: $1, H: H) })
    }
}

/// The backward cell math for lanes j… of one row.
@inline(__always)
func lstmBackwardLanes<L: Lanes>(_ l: L, a: UnsafePointer<Float>, cp: UnsafePointer<Float>, tanhC: UnsafePointer<Float>,
                                 dy: UnsafePointer<Float>, dh: UnsafePointer<Float>, dc: UnsafeMutablePointer<Float>,
                                 dA d: UnsafeMutablePointer<Float>, j: Int, H: Int) {
    let i = l.load(a + j), f = l.load(a + H + j), gg = l.load(a + 2 * H + j), o = l.load(a + 3 * H + j)
    let tc = l.load(tanhC + j)
    let dhv = l.load(dy + j) + l.load(dh + j)
    // h' = o ⊙ tanh(c')  ⇒  dc' += dh ⊙ o ⊙ (1 − tanh²c'),  do = dh ⊙ tanh c'
    let dcv = l.load(dc + j) + dhv * o * (1 - tc * tc)
    let dO = dhv * tc
    // c' = f ⊙ c + i ⊙ g  ⇒  di = dc ⊙ g, df = dc ⊙ c, dg = dc ⊙ i, dc_prev = dc ⊙ f
    let dI = dcv * gg, dF = dcv * l.load(cp + j), dG = dcv * i
    l.store(dI * i * (1 - i), d + j)               // σ' = σ(1−σ)
    l.store(dF * f * (1 - f), d + H + j)
    l.store(dG * (1 - gg * gg), d + 2 * H + j)     // tanh' = 1 − tanh²
    l.store(dO * o * (1 - o), d + 3 * H + j)
    l.store(dcv * f, dc + j)
}
