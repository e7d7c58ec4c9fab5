// Layers/GRU.swift — PyTorch nn.GRU, gates packed [r z n].
//
//   r = σ(W_ir x + b_ir + W_hr h + b_hr)     z = σ(W_iz x + b_iz + W_hz h + b_hz)
//   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//   h' = (1 − z) ⊙ n + z ⊙ h
//
// Legend: T steps, B batch, H hidden, G = 3H. Caches: gx (T, B, G) overwritten with [r z n] after
// activation; gh (T, B, G) = h[t-1]·W_hhᵀ per step (kept apart from gx: r multiplies its n block),
// its n block overwritten with W_hn h + b_hn. The time loops are the shared ones of Recurrent.swift.
// Backward has two pre-activation gradients: dGx = [dr̃ dz̃ dñ] for the input side and
// dGh = [dr̃ dz̃ r ⊙ dñ] for the hidden side (r multiplies the hidden n-term only); h' also depends on
// h directly (z ⊙ h), so the kernel writes that part of ∂L/∂h[t-1] and the recurrent product adds to it.

package final class GRULayer: RecurrentLayerCore, RecurrentCell, @unchecked Sendable {
    static var kind: CellKind { .gru }
    static var hasCellState: Bool { false }
    static var keepsHiddenProduct: Bool { true }
    static var hasDirectHiddenPath: Bool { true }

    package init(inputSize D: Int, hiddenSize H: Int, oneHot: Bool, maxT: Int, maxB: Int, params: RecurrentParams) {
        super.init(cell: GRULayer.self, inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
    }

    @inline(__always)
    func forwardStep(_ s: StepRows, p: UnsafePointer<Float>) {
        let h = h.ptr, t = s.t
        gruForwardKernel(gx: s.g(gx.ptr, t), gh: s.g(gh.ptr, t), bIH: p + params.bIH.offset, bHH: p + params.bHH.offset,
                         hPrev: s.h(h, t), h: s.h(h, t + 1), rows: s.rows, H: H)
    }

    @inline(__always)
    func backwardStep(_ s: StepRows, dy: UnsafePointer<Float>, dh: UnsafeMutablePointer<Float>) {
        let t = s.t
        // writes dGx[t], dGh[t] and the direct part dhNext = dh ⊙ z
        gruBackwardKernel(gates: s.g(gx.ptr, t), gh: s.g(gh.ptr, t), hPrev: s.h(h.ptr, t), dy: dy, dh: dh,
                          dGx: s.g(dGx.ptr, t), dGh: s.g(dGh.ptr, t), rows: s.rows, H: H)
    }

    @inline(__always)
    func stepKernel(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                    c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                    scratch: UnsafeMutablePointer<Float>) {
        // r multiplies the hidden n-term with its own bias, so the two biases stay apart here
        gruForwardKernel(gx: gx, gh: gh, bIH: p + params.bIH.offset, bHH: p + params.bHH.offset, hPrev: h, h: h, rows: rows, H: H)
    }
}

// MARK: - Fused kernels

/// One step. gx (rows, 3H): input projection without bias in, [r z n] out; gh (rows, 3H): hidden
/// projection without bias in, its n block replaced by W_hn h + b_hn. Writes h (may alias hPrev).
@inline(__always)
func gruForwardKernel(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, bIH: UnsafePointer<Float>,
                      bHH: UnsafePointer<Float>, hPrev: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, rows: Int, H: Int) {
    let G = 3 * H
    for b in 0..<rows {
        let xi = gx + b * G, hh = gh + b * G, hp = hPrev + b * H, hr = h + b * H
        forEachLaneBlock(H, { gruForwardLanes($0, xi: xi, hh: hh, bIH: bIH, bHH: bHH, hp: hp, h: hr, j: $1, H: H) },
                         tail: { gruForwardLanes($0, xi: xi, hh: hh, bIH: bIH, bHH: bHH, hp: hp, h: hr, j: $1, H: H) })
    }
}

/// The forward cell math for lanes j… of one row.
@inline(__always)
func gruForwardLanes<L: Lanes>(_ l: L, xi: UnsafeMutablePointer<Float>, hh: UnsafeMutablePointer<Float>, bIH: UnsafePointer<Float>,
                               bHH: UnsafePointer<Float>, hp: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, j: Int, H: Int) {
    let r = vsigmoid(l.load(xi + j) + l.load(bIH + j) + l.load(hh + j) + l.load(bHH + j))
    let z = vsigmoid(l.load(xi + H + j) + l.load(bIH + H + j) + l.load(hh + H + j) + l.load(bHH + H + j))
    let hn = l.load(hh + 2 * H + j) + l.load(bHH + 2 * H + j)                  // W_hn h + b_hn
    let nn = vtanh(l.load(xi + 2 * H + j) + l.load(bIH + 2 * H + j) + r * hn)  // n
    let hv = l.load(hp + j)
    l.store(r, xi + j); l.store(z, xi + H + j); l.store(nn, xi + 2 * H + j)
    l.store(hn, hh + 2 * H + j)
    l.store(nn + z * (hv - nn), h + j)                                        // h' = (1−z)⊙n + z⊙h
}

/// Backward of one step: dh holds ∂L/∂h[t] from step t+1 (read) and receives the direct part of
/// ∂L/∂h[t-1] (dh_total ⊙ z). Writes dGx, dGh (rows, 3H).
@inline(__always)
func gruBackwardKernel(gates: UnsafePointer<Float>, gh: UnsafePointer<Float>, hPrev: UnsafePointer<Float>,
                       dy: UnsafePointer<Float>, dh: UnsafeMutablePointer<Float>,
                       dGx: UnsafeMutablePointer<Float>, dGh: UnsafeMutablePointer<Float>, rows: Int, H: Int) {
    let G = 3 * H
    for b in 0..<rows {
        let a = gates + b * G, hh = gh + b * G, hp = hPrev + b * H, dyr = dy + b * H, dhr = dh + b * H
        let dx = dGx + b * G, dhh = dGh + b * G
        forEachLaneBlock(H, { gruBackwardLanes($0, a: a, hh: hh, hp: hp, dy: dyr, dh: dhr, dx: dx, dhh: dhh, j: $1, H: H) },
                         tail: { gruBackwardLanes($0, a: a, hh: hh, hp: hp, dy: dyr, dh: dhr, dx: dx, dhh: dhh, j: $1, H: H) })
    }
}

/// The backward cell math for lanes j… of one row.
@inline(__always)
func gruBackwardLanes<L: Lanes>(_ l: L, a: UnsafePointer<Float>, hh: UnsafePointer<Float>, hp: UnsafePointer<Float>,
                                dy: UnsafePointer<Float>, dh: UnsafeMutablePointer<Float>,
                                dx: UnsafeMutablePointer<Float>, dhh: UnsafeMutablePointer<Float>, j: Int, H: Int) {
    let r = l.load(a + j), z = l.load(a + H + j), nn = l.load(a + 2 * H + j)
    let hn = l.load(hh + 2 * H + j), hv = l.load(hp + j)
    let d = l.load(dy + j) + l.load(dh + j)
    // h' = (1−z)⊙n + z⊙h  ⇒  dn = dh⊙(1−z), dz = dh⊙(h − n), dh_prev(direct) = dh⊙z
    let dAn = d * (1 - z) * (1 - nn * nn)               // through n = tanh(·)
    let dAz = d * (hv - nn) * z * (1 - z)
    // n = tanh(x_n + r ⊙ hn)  ⇒  dr = dñ ⊙ hn,  d(hn) = dñ ⊙ r
    let dAr = dAn * hn * r * (1 - r)
    l.store(dAr, dx + j); l.store(dAz, dx + H + j); l.store(dAn, dx + 2 * H + j)
    l.store(dAr, dhh + j); l.store(dAz, dhh + H + j); l.store(dAn * r, dhh + 2 * H + j)
    l.store(d * z, dh + j)
}
