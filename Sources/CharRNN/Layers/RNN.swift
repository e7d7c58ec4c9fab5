// Layers/RNN.swift — PyTorch nn.RNN with tanh: h' = tanh(W_ih x + b_ih + W_hh h + b_hh).
//
// Legend: T steps, B batch, H hidden, G = H. Cache: gx (T, B, H) keeps nothing of its own after
// forward; h (T+1, B, H) holds the outputs, which is all backward needs (tanh' = 1 − h'²).
// The time loops are the shared ones of Recurrent.swift; this file is the cell's two kernels.

package final class RNNLayer: RecurrentLayerCore, RecurrentCell, @unchecked Sendable {
    static var kind: CellKind { .rnn }
    static var hasCellState: Bool { false }
    static var keepsHiddenProduct: Bool { false }
    static var hasDirectHiddenPath: Bool { false }

    package init(inputSize D: Int, hiddenSize H: Int, oneHot: Bool, maxT: Int, maxB: Int, params: RecurrentParams) {
        super.init(cell: RNNLayer.self, inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
    }

    @inline(__always)
    func forwardStep(_ s: StepRows, p: UnsafePointer<Float>) {
        rnnForwardKernel(pre: s.g(gx.ptr, s.t), bias: biasSum.ptr, input: foldedInput(s), h: s.h(h.ptr, s.t + 1), rows: s.rows, H: H)
    }

    @inline(__always)
    func backwardStep(_ s: StepRows, dy: UnsafePointer<Float>, dh: UnsafeMutablePointer<Float>) {
        rnnBackwardKernel(h: s.h(h.ptr, s.t + 1), dy: dy, dh: dh, dA: s.g(dGx.ptr, s.t), rows: s.rows, H: H)
    }

    @inline(__always)
    func stepKernel(gx: UnsafeMutablePointer<Float>, gh: UnsafeMutablePointer<Float>, h: UnsafeMutablePointer<Float>,
                    c: UnsafeMutablePointer<Float>?, rows: Int, bias: UnsafePointer<Float>, p: UnsafePointer<Float>,
                    scratch: UnsafeMutablePointer<Float>) {
        rnnForwardKernel(pre: gx, bias: bias, input: nil, h: h, rows: rows, H: H)
    }
}

/// h = tanh(pre (+ the one-hot row of `input`) + bias) for `rows` rows of H. Writes h.
@inline(__always)
func rnnForwardKernel(pre: UnsafePointer<Float>, bias: UnsafePointer<Float>, input: FoldedInput?, h: UnsafeMutablePointer<Float>,
                      rows: Int, H: Int) {
    for b in 0..<rows {
        let a = pre + b * H, x = input?.row(b), hr = h + b * H
        forEachLaneBlock(H, { $0.store(vtanh(preActivation($0, a, x, bias, $1)), hr + $1) },
                         tail: { $0.store(vtanh(preActivation($0, a, x, bias, $1)), hr + $1) })
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
