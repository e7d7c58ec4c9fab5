// Layers/LSTM.swift — PyTorch nn.LSTM, gates packed [i f g o].
//
//   i = σ(W_ii x + b_ii + W_hi h + b_hi)     f = σ(W_if x + b_if + W_hf h + b_hf)
//   g = tanh(W_ig x + b_ig + W_hg h + b_hg)  o = σ(W_io x + b_io + W_ho h + b_ho)
//   c' = f ⊙ c + i ⊙ g                       h' = o ⊙ tanh(c')
//
// Legend: T steps, B batch, H hidden, G = 4H. Caches for backward: gx (T, B, G) overwritten with the
// post-activation gates, c (T+1, B, H) with slot 0 = carried c, tanhC (T, B, H).
// Per step: one recurrent GEMM into gx[t] plus one fused SIMD kernel (bias, σ/tanh, c', h').

public final class LSTMLayer: RecurrentLayer, @unchecked Sendable {
    let c: Storage       // (T+1, B, H)
    let tanhC: Storage   // (T, B, H)
    let dcNext: Storage  // (B, H) ∂L/∂c[t-1] flowing left; after backward: ∂L/∂c0

    public init(inputSize D: Int, hiddenSize H: Int, oneHot: Bool, maxT: Int, maxB: Int, params: RecurrentParams) {
        c = Storage(count: (maxT + 1) * maxB * H)
        tanhC = Storage(count: maxT * maxB * H)
        dcNext = Storage(count: maxB * H)
        super.init(kind: .lstm, inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
    }

    public override var dc0: UnsafePointer<Float>? { UnsafePointer(dcNext.ptr) }

    // MARK: - Forward

    public override func forward(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>,
                                 h0: UnsafePointer<Float>, c0: UnsafePointer<Float>?,
                                 hT: UnsafeMutablePointer<Float>, cT: UnsafeMutablePointer<Float>?) {
        checkShape(T: T, B: B)
        let BH = B * H
        projectInput(x, T: T, B: B, p: p)
        addVectors(p + params.bIH.offset, p + params.bHH.offset, into: biasSum.ptr, n: G)
        h.ptr.update(from: h0, count: BH)
        c.ptr.update(from: c0!, count: BH)
        whhT.packTransposed(p + params.wHH.offset, k: H, n: G, ld: H)
        runTimeLoop(T: T, B: B, p: p, dy: nil)
        hT.update(from: h.ptr + T * BH, count: BH)
        cT!.update(from: c.ptr + T * BH, count: BH)
    }

    override func forwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, timed: Bool) {
        let BH = B * H, BG = B * G
        let gx = gx.ptr, h = h.ptr, c = c.ptr, tanhC = tanhC.ptr, bias = biasSum.ptr
        let nb = r.count, oh = r.lowerBound * H, og = r.lowerBound * G
        var probe = timed ? Profiler.start() : Profiler.idle
        for t in 0..<T {
            let gt = gx + t * BG + og
            // gx[t] += h[t-1] · W_hhᵀ   (this part's streams only)
            packedGemm(m: nb, a: h + t * BH + oh, lda: H, b: whhT, c: gt, ldc: G, accumulate: true)
            if timed { probe = Profiler.stop(.recurrentProducts, probe) }
            lstmForwardKernel(gates: gt, bias: bias, cPrev: c + t * BH + oh, c: c + (t + 1) * BH + oh,
                              tanhC: tanhC + t * BH + oh, h: h + (t + 1) * BH + oh, rows: nb, H: H)
            if timed { probe = Profiler.stop(.gates, probe) }
        }
    }

    // MARK: - Backward

    public override func backward(_ x: LayerInput, dy: UnsafePointer<Float>, T: Int, B: Int,
                                  p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                                  ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?) {
        checkShape(T: T, B: B)
        dhNext.zero(); dcNext.zero()   // truncated BPTT: nothing flows back from the next minibatch
        whhP.pack(p + params.wHH.offset, k: G, n: H, ld: H)
        runTimeLoop(T: T, B: B, p: p, dy: dy)
        accumulateGradients(x, T: T, B: B, p: p, g: g, ones: ones, dx: dx)
    }

    override func backwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>, timed: Bool) {
        let BH = B * H, BG = B * G
        let gx = gx.ptr, c = c.ptr, tanhC = tanhC.ptr, dA = dGx.ptr, dh = dhNext.ptr, dc = dcNext.ptr
        let nb = r.count, oh = r.lowerBound * H, og = r.lowerBound * G
        var probe = timed ? Profiler.start() : Profiler.idle
        for t in stride(from: T - 1, through: 0, by: -1) {
            lstmBackwardKernel(gates: gx + t * BG + og, cPrev: c + t * BH + oh, tanhC: tanhC + t * BH + oh,
                               dy: dy + t * BH + oh, dh: dh + oh, dc: dc + oh, dA: dA + t * BG + og, rows: nb, H: H)
            if timed { probe = Profiler.stop(.gates, probe) }
            // forward: gx[t] += h[t-1] · W_hhᵀ  ⇒  ∂L/∂h[t-1] = dA[t] · W_hh
            packedGemm(m: nb, a: dA + t * BG + og, lda: G, b: whhP, c: dh + oh, ldc: H, accumulate: false)
            if timed { probe = Profiler.stop(.recurrentProducts, probe) }
        }
    }

    // MARK: - Inference step

    public override func stepRows(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                                  c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                                  scratch: UnsafeMutablePointer<Float>) {
        addVectors(gx, gh, into: gx, n: rows * G)                                   // W_ih x + W_hh h
        lstmForwardKernel(gates: gx, bias: bias, cPrev: c!, c: c!, tanhC: scratch, h: h, rows: rows, H: H)
    }
}

// MARK: - Fused kernels

/// One step for `rows` rows. gates (rows, 4H): pre-activations without bias in, post-activations
/// [i f g o] out. Writes c, tanhC, h (rows, H). cPrev may alias c (sampling).
@inline(__always)
func lstmForwardKernel(gates: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, cPrev: UnsafePointer<Float>,
                       c: UnsafeMutablePointer<Float>, tanhC: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                       rows: Int, H: Int) {
    let G = 4 * H
    for b in 0..<rows {
        let a = gates + b * G
        let cp = cPrev + b * H, cr = c + b * H, tr = tanhC + b * H, hr = h + b * H
        forEachLaneBlock(H, { lstmForwardLanes($0, a: a, bias: bias, cp: cp, c: cr, tanhC: tr, h: hr, j: $1, H: H) },
                         tail: { lstmForwardLanes($0, a: a, bias: bias, cp: cp, c: cr, tanhC: tr, h: hr, j: $1, H: H) })
    }
}

/// The forward cell math for lanes j… of one row (gates a (4H), cp/c/tanhC/h (H)).
@inline(__always)
func lstmForwardLanes<L: Lanes>(_ l: L, a: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, cp: UnsafePointer<Float>,
                                c: UnsafeMutablePointer<Float>, tanhC: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                                j: Int, H: Int) {
    let i = vsigmoid(l.load(a + j) + l.load(bias + j))
    let f = vsigmoid(l.load(a + H + j) + l.load(bias + H + j))
    let gg = vtanh(l.load(a + 2 * H + j) + l.load(bias + 2 * H + j))
    let o = vsigmoid(l.load(a + 3 * H + j) + l.load(bias + 3 * H + j))
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
