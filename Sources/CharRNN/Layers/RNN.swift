// Layers/RNN.swift — PyTorch nn.RNN with tanh: h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
//
// Legend: T steps, B batch, H hidden, G = H. Cache: gx (T, B, H) keeps nothing of its own after
// forward; h (T+1, B, H) holds the outputs, which is all backward needs (tanh' = 1 − h'²).

public final class RNNLayer: RecurrentLayer, @unchecked Sendable {
    public init(inputSize D: Int, hiddenSize H: Int, oneHot: Bool, maxT: Int, maxB: Int, params: RecurrentParams) {
        super.init(kind: .rnn, inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
    }

    public override func forward(_ x: LayerInput, T: Int, B: Int, p: UnsafePointer<Float>,
                                 h0: UnsafePointer<Float>, c0: UnsafePointer<Float>?,
                                 hT: UnsafeMutablePointer<Float>, cT: UnsafeMutablePointer<Float>?) {
        checkShape(T: T, B: B)
        let BH = B * H
        projectInput(x, T: T, B: B, p: p)
        addVectors(p + params.bIH.offset, p + params.bHH.offset, into: biasSum.ptr, n: G)
        h.ptr.update(from: h0, count: BH)
        whhT.packTransposed(p + params.wHH.offset, k: H, n: H, ld: H)
        runTimeLoop(T: T, B: B, p: p, dy: nil)
        hT.update(from: h.ptr + T * BH, count: BH)
    }

    override func forwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, timed: Bool) {
        let BH = B * H
        let gx = gx.ptr, h = h.ptr, bias = biasSum.ptr
        let nb = r.count, o = r.lowerBound * H
        var probe = timed ? Profiler.start() : Profiler.idle
        for t in 0..<T {
            let gt = gx + t * BH + o
            // gx[t] += h[t-1] · W_hhᵀ   (this part's streams only)
            packedGemm(m: nb, a: h + t * BH + o, lda: H, b: whhT, c: gt, ldc: H, accumulate: true)
            if timed { probe = Profiler.stop(.recurrentProducts, probe) }
            rnnForwardKernel(pre: gt, bias: bias, h: h + (t + 1) * BH + o, rows: nb, H: H)
            if timed { probe = Profiler.stop(.gates, probe) }
        }
    }

    public override func backward(_ x: LayerInput, dy: UnsafePointer<Float>, T: Int, B: Int,
                                  p: UnsafePointer<Float>, g: UnsafeMutablePointer<Float>,
                                  ones: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?) {
        checkShape(T: T, B: B)
        dhNext.zero()
        whhP.pack(p + params.wHH.offset, k: H, n: H, ld: H)
        runTimeLoop(T: T, B: B, p: p, dy: dy)
        accumulateGradients(x, T: T, B: B, p: p, g: g, ones: ones, dx: dx)
    }

    override func backwardRows(_ r: Range<Int>, T: Int, B: Int, p: UnsafePointer<Float>, dy: UnsafePointer<Float>, timed: Bool) {
        let BH = B * H
        let h = h.ptr, dh = dhNext.ptr, dA = dGx.ptr
        let nb = r.count, o = r.lowerBound * H
        var probe = timed ? Profiler.start() : Profiler.idle
        for t in stride(from: T - 1, through: 0, by: -1) {
            rnnBackwardKernel(h: h + (t + 1) * BH + o, dy: dy + t * BH + o, dh: dh + o, dA: dA + t * BH + o, rows: nb, H: H)
            if timed { probe = Profiler.stop(.gates, probe) }
            // forward: gx[t] += h[t-1] · W_hhᵀ  ⇒  ∂L/∂h[t-1] = dA[t] · W_hh
            packedGemm(m: nb, a: dA + t * BH + o, lda: H, b: whhP, c: dh + o, ldc: H, accumulate: false)
            if timed { probe = Profiler.stop(.recurrentProducts, probe) }
        }
    }

    public override func stepRows(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                                  c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                                  scratch: UnsafeMutablePointer<Float>) {
        addVectors(gx, gh, into: gx, n: rows * G)
        rnnForwardKernel(pre: gx, bias: bias, h: h, rows: rows, H: H)
    }
}

/// h = tanh(pre + bias) for `rows` rows of H. Writes h.
@inline(__always)
func rnnForwardKernel(pre: UnsafePointer<Float>, bias: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, rows: Int, H: Int) {
    for b in 0..<rows {
        let a = pre + b * H, hr = h + b * H
        forEachLaneBlock(H, { $0.store(vtanh($0.load(a + $1) + $0.load(bias + $1)), hr + $1) },
                         tail: { $0.store(vtanh($0.load(a + $1) + $0.load(bias + $1)), hr + $1) })
    }
}

/// dA = (dy + dh) ⊙ (1 − h²). Writes dA (rows, H).
@inline(__always)
func rnnBackwardKernel(h: UnsafePointer<Float>, dy: UnsafePointer<Float>, dh: UnsafePointer<Float>,
                       dA: UnsafeMutablePointer<Float>, rows: Int, H: Int) {
    for b in 0..<rows {
        let hr = h + b * H, dyr = dy + b * H, dhr = dh + b * H, d = dA + b * H
        forEachLaneBlock(H, { rnnBackwardLanes($0, h: hr, dy: dyr, dh: dhr, dA: d, j: $1) },
                         tail: { rnnBackwardLanes($0, h: hr, dy: dyr, dh: dhr, dA: d, j: $1) })
    }
}

/// dA = (dy + dh) ⊙ (1 − h²) for lanes j… of one row.
@inline(__always)
func rnnBackwardLanes<L: Lanes>(_ l: L, h: UnsafePointer<Float>, dy: UnsafePointer<Float>, dh: UnsafePointer<Float>,
                                dA: UnsafeMutablePointer<Float>, j: Int) {
    let hv = l.load(h + j)
    l.store((l.load(dy + j) + l.load(dh + j)) * (1 - hv * hv), dA + j)
}
