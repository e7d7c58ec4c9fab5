// Tests/CharRNNTests/GradCheck.swift — gradient-check helpers and the Double reference implementation.
//
// Legend: T steps, B batch, D input width, H hidden, G = gates·H, V vocabulary, E embedding width,
// N = T·B rows, L layers. Layout as in the library: time-major (T, B, ·), row-major weights (PyTorch).
//
// The reference is written straight from PyTorch's documented equations (nn.LSTM, nn.GRU, nn.RNN with
// tanh, nn.Embedding, nn.Linear, nn.CrossEntropyLoss with mean reduction, nn.Dropout with a fixed mask)
// as plain Double loops over (t, b, unit): no GEMMs, no fused kernels, no buffer reuse, nothing shared
// with the production code's structure. Its analytic gradients are themselves checked against central
// differences (LayerGradientTests.testReference*, ModelGradientTests.testReferenceModel*), so the
// production Float32 kernels are compared with something that is known to be right.
//
// Error measure: torch-rnn's relative error with a floor, |a − b| / max(|a|, |b|, floor).
// Set GRADCHECK_REPORT=1 to print the worst relative error of every comparison.

import Foundation
import XCTest
@testable import CharRNN

// MARK: - Error measure and assertions

/// torch-rnn's relative error, |a − b| / max(|a|, |b|, floor). NaN or ∞ in either gives +∞.
func relativeError(_ a: Double, _ b: Double, floor: Double) -> Double {
    guard a.isFinite && b.isFinite else { return .infinity }
    let d = abs(a - b)
    return d == 0 ? 0 : d / max(abs(a), abs(b), floor)
}

let gradcheckReport = ProcessInfo.processInfo.environment["GRADCHECK_REPORT"] != nil

/// Asserts that every element of `actual` is within `tol` relative error (with `floor`) of `expected`;
/// returns the worst error. Fails on a count mismatch, NaN or ∞.
@discardableResult
func assertClose(_ actual: [Double], _ expected: [Double], tol: Double, floor: Double, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) -> Double {
    XCTAssertEqual(actual.count, expected.count, "\(what): element count", file: file, line: line)
    var worst = 0.0, at = -1, worstAbs = 0.0, scale = 0.0
    for i in 0..<min(actual.count, expected.count) {
        let e = relativeError(actual[i], expected[i], floor: floor)
        if !(e <= worst) { worst = e; at = i }
        worstAbs = max(worstAbs, abs(actual[i] - expected[i])); scale = max(scale, abs(expected[i]))
    }
    if at >= 0 {
        XCTAssertLessThanOrEqual(worst, tol, "\(what): max relative error \(worst) at [\(at)]: got \(actual[at]), expected \(expected[at])",
                                 file: file, line: line)
    }
    if gradcheckReport { print("gradcheck \(what) maxrel=\(worst) maxabs=\(worstAbs) scale=\(scale)") }
    return worst
}

/// Same for Float32 results against a Double reference.
@discardableResult
func assertClose(_ actual: [Float], _ expected: [Double], tol: Double, floor: Double, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) -> Double {
    assertClose(actual.map(Double.init), expected, tol: tol, floor: floor, what, file: file, line: line)
}

/// Tolerances.
/// - Double reference vs central differences (eps 1e-6): 1e-6 with a 1e-2 floor. The floor covers
///   the round-off of the difference quotient, ≈ |L|·2⁻⁵³/eps, which reaches 2e-9 absolute for the
///   fake losses here (|L| ≈ 5) and 5e-9 for the ±50-logit cross-entropy (|L| ≈ 50).
/// - Float32 production vs the Double reference: 1e-4 with a 1e-2 floor. The layer tests' tensors
///   are O(1) and Float32 sums of O(1) terms leave ≈ 5e-7 absolute error (a few ulp of the largest
///   terms; tanh = 1 − 2/(e^2x+1) alone is only good to ≈ 3e-7 absolute near 0), so a 1e-3 floor
///   (1e-7 absolute) would test round-off, not the equations. Entries ≥ 1e-2 still must agree to 1e-4.
enum Tol {
    static let eps = 1e-6
    static let numeric = 1e-6, numericFloor = 1e-2
    static let float = 1e-4, floatFloor = 1e-2
}

// MARK: - Central differences

/// ∂f/∂s[key][i] by central differences, for every i in `indices` (all when nil); other entries 0.
func numericGradient<S>(_ s: S, _ key: WritableKeyPath<S, [Double]>, indices: [Int]? = nil, eps: Double = Tol.eps,
                        _ f: (S) -> Double) -> [Double] {
    var s = s
    var g = [Double](repeating: 0, count: s[keyPath: key].count)
    for i in indices ?? Array(g.indices) {
        let v = s[keyPath: key][i]
        s[keyPath: key][i] = v + eps
        let plus = f(s)
        s[keyPath: key][i] = v - eps
        let minus = f(s)
        s[keyPath: key][i] = v
        g[i] = (plus - minus) / (2 * eps)
    }
    return g
}

/// Σ a ⊙ b, the fake loss L = Σ out ⊙ dOut of llm.c and torch-rnn.
func dotSum(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count)
    var s = 0.0
    for i in a.indices { s += a[i] * b[i] }
    return s
}

// MARK: - Deterministic test data

/// Seeded test data. Values are rounded to Float so that the Float32 code and the Double reference
/// see exactly the same numbers.
struct TestData {
    var rng: Xoshiro256
    init(seed: UInt64) { rng = Xoshiro256(seed: seed) }

    /// n values uniform in [−a, a).
    mutating func uniform(_ n: Int, _ a: Double = 1) -> [Double] {
        var out = [Double](repeating: 0, count: n)
        for i in 0..<n { out[i] = Double(Float((rng.nextDouble() * 2 - 1) * a)) }
        return out
    }

    /// n token ids in 0..<v.
    mutating func ids(_ n: Int, below v: Int) -> [Int32] {
        var out = [Int32](repeating: 0, count: n)
        for i in 0..<n { out[i] = Int32(rng.next() % UInt64(v)) }
        return out
    }
}

/// Token ids (T·B) with deliberate repeats: rows 0 and 1 (same step, two streams) and the last row
/// share an id, so the one-hot scatter-add must sum several rows into one column.
func idsWithRepeats(_ data: inout TestData, count n: Int, below v: Int) -> [Int32] {
    var ids = data.ids(n, below: v)
    if n >= 3 { ids[1] = ids[0]; ids[n - 1] = ids[0] }
    return ids
}

// MARK: - Float buffers

extension Storage {
    /// A Storage holding `values` rounded to Float.
    convenience init(values: [Double]) {
        self.init(count: values.count)
        for i in values.indices { ptr[i] = Float(values[i]) }
    }

    /// Writes `values` at `offset`.
    func set(_ values: [Double], at offset: Int = 0) {
        precondition(offset + values.count <= count)
        for i in values.indices { ptr[offset + i] = Float(values[i]) }
    }

    func doubles(at offset: Int = 0, count n: Int) -> [Double] { readDoubles(ptr + offset, n) }
    func doubles(_ v: TensorView) -> [Double] { doubles(at: v.offset, count: v.count) }
    func fill(_ value: Float) { ptr.update(repeating: value, count: count) }
}

func readDoubles(_ p: UnsafePointer<Float>, _ n: Int) -> [Double] {
    var out = [Double](repeating: 0, count: n)
    for i in 0..<n { out[i] = Double(p[i]) }
    return out
}

extension IntStorage {
    convenience init(ids: [Int32]) {
        self.init(count: ids.count)
        for i in ids.indices { ptr[i] = ids[i] }
    }
}

/// One-hot rows (n, V) of `ids`.
func oneHot(_ ids: [Int32], V: Int) -> [Double] {
    var x = [Double](repeating: 0, count: ids.count * V)
    for (r, id) in ids.enumerated() { x[r * V + Int(id)] = 1 }
    return x
}

// MARK: - Reference: recurrent cells

func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

/// The inputs and parameters of one recurrent layer; the same struct holds their gradients.
struct RecurrentTensors {
    var x: [Double]      // (T, B, D)
    var h0: [Double]     // (B, H)
    var c0: [Double]     // (B, H), used by LSTM only
    var wIH: [Double]    // (G, D)   rnn.weight_ih_l{k}
    var wHH: [Double]    // (G, H)   rnn.weight_hh_l{k}
    var bIH: [Double]    // (G)      rnn.bias_ih_l{k}
    var bHH: [Double]    // (G)      rnn.bias_hh_l{k}

    /// Every tensor, by name.
    static var all: [(String, WritableKeyPath<RecurrentTensors, [Double]>)] {
        [("x", \.x), ("h0", \.h0), ("c0", \.c0), ("W_ih", \.wIH), ("W_hh", \.wHH), ("b_ih", \.bIH), ("b_hh", \.bHH)]
    }

    /// The tensors that matter for `kind` (c0 only for LSTM).
    static func keys(_ kind: CellKind) -> [(String, WritableKeyPath<RecurrentTensors, [Double]>)] {
        all.filter { kind == .lstm || $0.0 != "c0" }
    }

    /// Zeros of the same shapes.
    var zeros: RecurrentTensors {
        var z = self
        for (_, k) in Self.all { z[keyPath: k] = [Double](repeating: 0, count: self[keyPath: k].count) }
        return z
    }

    /// Random values: x, states and weights uniform(±0.5..1), so no gate saturates.
    static func random(_ kind: CellKind, T: Int, B: Int, D: Int, H: Int, data: inout TestData) -> RecurrentTensors {
        let G = kind.gates * H
        return RecurrentTensors(x: data.uniform(T * B * D), h0: data.uniform(B * H, 0.8),
                                c0: data.uniform(B * H, kind == .lstm ? 0.8 : 0),
                                wIH: data.uniform(G * D, 0.5), wHH: data.uniform(G * H, 0.5),
                                bIH: data.uniform(G, 0.5), bHH: data.uniform(G, 0.5))
    }
}

/// PyTorch's recurrent cells over T steps, plain loops.
///
///   LSTM (gates i, f, g, o):  i = σ(W_ii x + b_ii + W_hi h + b_hi), f = σ(…), g = tanh(…), o = σ(…),
///                             c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')
///   GRU (gates r, z, n):      r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(…),
///                             n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h
///   RNN:                      h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
struct ReferenceRecurrent {
    let kind: CellKind
    let T: Int, B: Int, D: Int, H: Int
    var G: Int { kind.gates * H }

    struct Forward {
        let T: Int, B: Int, H: Int
        var h: [Double]       // (T+1, B, H), slot 0 = h0
        var c: [Double]       // (T+1, B, H), slot 0 = c0 (LSTM)
        var act: [[Double]]   // per gate: (T, B, H) post-activation; GRU adds block 3 = W_hn h + b_hn
        /// h[1...T] as (T, B, H).
        var output: [Double] { Array(h[(B * H)...]) }
        /// c[1...T] as (T, B, H).
        var cells: [Double] { Array(c[(B * H)...]) }
        var hT: [Double] { Array(h[(T * B * H)...]) }
        var cT: [Double] { Array(c[(T * B * H)...]) }
    }

    func forward(_ v: RecurrentTensors) -> Forward {
        let BH = B * H
        var h = [Double](repeating: 0, count: (T + 1) * BH)
        var c = h
        for i in 0..<BH { h[i] = v.h0[i] }
        if kind == .lstm { for i in 0..<BH { c[i] = v.c0[i] } }
        var act = [[Double]](repeating: [Double](repeating: 0, count: T * BH), count: kind == .gru ? 4 : kind.gates)
        // W_i· x + b_i· for gate block k, unit j, and W_h· h[t−1] + b_h· likewise.
        func inputPart(_ k: Int, _ t: Int, _ b: Int, _ j: Int) -> Double {
            let r = k * H + j
            var s = v.bIH[r]
            for d in 0..<D { s += v.wIH[r * D + d] * v.x[(t * B + b) * D + d] }
            return s
        }
        func hiddenPart(_ k: Int, _ t: Int, _ b: Int, _ j: Int) -> Double {
            let r = k * H + j
            var s = v.bHH[r]
            for m in 0..<H { s += v.wHH[r * H + m] * h[t * BH + b * H + m] }
            return s
        }
        for t in 0..<T {
            for b in 0..<B {
                for j in 0..<H {
                    let u = t * BH + b * H + j        // (t, b, j) in a (T, B, H) array
                    let prev = u, next = u + BH       // h[t−1], h[t] in the slot-0 buffer
                    switch kind {
                    case .lstm:
                        let i = sigmoid(inputPart(0, t, b, j) + hiddenPart(0, t, b, j))
                        let f = sigmoid(inputPart(1, t, b, j) + hiddenPart(1, t, b, j))
                        let g = tanh(inputPart(2, t, b, j) + hiddenPart(2, t, b, j))
                        let o = sigmoid(inputPart(3, t, b, j) + hiddenPart(3, t, b, j))
                        let cn = f * c[prev] + i * g
                        c[next] = cn
                        h[next] = o * tanh(cn)
                        act[0][u] = i; act[1][u] = f; act[2][u] = g; act[3][u] = o
                    case .gru:
                        let r = sigmoid(inputPart(0, t, b, j) + hiddenPart(0, t, b, j))
                        let z = sigmoid(inputPart(1, t, b, j) + hiddenPart(1, t, b, j))
                        let hn = hiddenPart(2, t, b, j)
                        let n = tanh(inputPart(2, t, b, j) + r * hn)
                        h[next] = (1 - z) * n + z * h[prev]
                        act[0][u] = r; act[1][u] = z; act[2][u] = n; act[3][u] = hn
                    case .rnn:
                        h[next] = tanh(inputPart(0, t, b, j) + hiddenPart(0, t, b, j))
                        act[0][u] = h[next]
                    }
                }
            }
        }
        return Forward(T: T, B: B, H: H, h: h, c: c, act: act)
    }

    /// Gradients of L = Σ output ⊙ dy, dy (T, B, H). Truncated BPTT: nothing arrives through hT/cT.
    func backward(_ v: RecurrentTensors, _ fw: Forward, dy: [Double]) -> RecurrentTensors {
        let BH = B * H
        var gr = v.zeros
        var dhNext = [Double](repeating: 0, count: BH)   // ∂L/∂h[t] from step t+1
        var dcNext = dhNext                              // ∂L/∂c[t] from step t+1
        for t in stride(from: T - 1, through: 0, by: -1) {
            var daX = [Double](repeating: 0, count: B * G)   // ∂L/∂(input-side pre-activation) at step t
            var daH = daX                                    // ∂L/∂(hidden-side pre-activation)
            var dhPrev = [Double](repeating: 0, count: BH)
            var dcPrev = dhPrev
            for b in 0..<B {
                for j in 0..<H {
                    let u = t * BH + b * H + j, prev = u, next = u + BH, s = b * H + j
                    let dh = dy[u] + dhNext[s]
                    switch kind {
                    case .lstm:
                        let i = fw.act[0][u], f = fw.act[1][u], g = fw.act[2][u], o = fw.act[3][u]
                        let tc = tanh(fw.c[next])
                        // h' = o ⊙ tanh(c')
                        let dc = dcNext[s] + dh * o * (1 - tc * tc)
                        let dO = dh * tc
                        // c' = f ⊙ c + i ⊙ g
                        let da = [dc * g * i * (1 - i), dc * fw.c[prev] * f * (1 - f), dc * i * (1 - g * g), dO * o * (1 - o)]
                        for k in 0..<4 { daX[b * G + k * H + j] = da[k]; daH[b * G + k * H + j] = da[k] }
                        dcPrev[s] = dc * f
                    case .gru:
                        let r = fw.act[0][u], z = fw.act[1][u], n = fw.act[2][u], hn = fw.act[3][u]
                        // h' = (1 − z) ⊙ n + z ⊙ h
                        let dn = dh * (1 - z), dz = dh * (fw.h[prev] - n)
                        dhPrev[s] += dh * z
                        // n = tanh(a_n), a_n = W_in x + b_in + r ⊙ hn, hn = W_hn h + b_hn
                        let dan = dn * (1 - n * n)
                        let dar = dan * hn * r * (1 - r), daz = dz * z * (1 - z)
                        daX[b * G + j] = dar; daX[b * G + H + j] = daz; daX[b * G + 2 * H + j] = dan
                        daH[b * G + j] = dar; daH[b * G + H + j] = daz; daH[b * G + 2 * H + j] = dan * r
                    case .rnn:
                        let hv = fw.h[next]
                        daX[b * G + j] = dh * (1 - hv * hv)
                        daH[b * G + j] = daX[b * G + j]
                    }
                }
            }
            // input side = W_ih x + b_ih, hidden side = W_hh h[t−1] + b_hh
            for b in 0..<B {
                for r in 0..<G {
                    let ax = daX[b * G + r], ah = daH[b * G + r]
                    gr.bIH[r] += ax
                    gr.bHH[r] += ah
                    for d in 0..<D {
                        gr.wIH[r * D + d] += ax * v.x[(t * B + b) * D + d]
                        gr.x[(t * B + b) * D + d] += ax * v.wIH[r * D + d]
                    }
                    for m in 0..<H {
                        gr.wHH[r * H + m] += ah * fw.h[t * BH + b * H + m]
                        dhPrev[b * H + m] += ah * v.wHH[r * H + m]
                    }
                }
            }
            dhNext = dhPrev
            dcNext = dcPrev
        }
        gr.h0 = dhNext
        if kind == .lstm { gr.c0 = dcNext }
        return gr
    }
}

// MARK: - Reference: embedding, linear, softmax cross-entropy, dropout

/// nn.Embedding: out[r] = W[id r]; dW[id r] += dout[r].
enum ReferenceEmbedding {
    static func forward(ids: [Int32], w: [Double], E: Int) -> [Double] {
        var out = [Double](repeating: 0, count: ids.count * E)
        for (r, id) in ids.enumerated() { for e in 0..<E { out[r * E + e] = w[Int(id) * E + e] } }
        return out
    }
    static func backward(ids: [Int32], dout: [Double], V: Int, E: Int) -> [Double] {
        var dw = [Double](repeating: 0, count: V * E)
        for (r, id) in ids.enumerated() { for e in 0..<E { dw[Int(id) * E + e] += dout[r * E + e] } }
        return dw
    }
}

/// nn.Linear: out (N, O) = x (N, I) · Wᵀ + b.
enum ReferenceLinear {
    static func forward(x: [Double], w: [Double], b: [Double], N: Int, I: Int, O: Int) -> [Double] {
        var out = [Double](repeating: 0, count: N * O)
        for n in 0..<N {
            for o in 0..<O {
                var s = b[o]
                for i in 0..<I { s += x[n * I + i] * w[o * I + i] }
                out[n * O + o] = s
            }
        }
        return out
    }
    static func backward(x: [Double], w: [Double], dout: [Double], N: Int, I: Int, O: Int) -> (dx: [Double], dw: [Double], db: [Double]) {
        var dx = [Double](repeating: 0, count: N * I), dw = [Double](repeating: 0, count: O * I), db = [Double](repeating: 0, count: O)
        for n in 0..<N {
            for o in 0..<O {
                let d = dout[n * O + o]
                db[o] += d
                for i in 0..<I { dw[o * I + i] += d * x[n * I + i]; dx[n * I + i] += d * w[o * I + i] }
            }
        }
        return (dx, dw, db)
    }
}

/// nn.CrossEntropyLoss (mean over rows): loss = (1/N) Σ_r [logsumexp(z_r) − z_r,y_r].
enum ReferenceSoftmaxCE {
    static func loss(logits z: [Double], targets: [Int32], V: Int) -> Double {
        let N = targets.count
        var total = 0.0
        for r in 0..<N {
            var m = -Double.infinity
            for v in 0..<V { m = max(m, z[r * V + v]) }
            var s = 0.0
            for v in 0..<V { s += exp(z[r * V + v] - m) }
            total += log(s) + m - z[r * V + Int(targets[r])]
        }
        return total / Double(N)
    }
    /// ∂loss/∂z = (softmax(z_r) − onehot(y_r)) / N.
    static func gradient(logits z: [Double], targets: [Int32], V: Int) -> [Double] {
        let N = targets.count
        var g = [Double](repeating: 0, count: z.count)
        for r in 0..<N {
            var m = -Double.infinity
            for v in 0..<V { m = max(m, z[r * V + v]) }
            var s = 0.0
            for v in 0..<V { s += exp(z[r * V + v] - m) }
            for v in 0..<V { g[r * V + v] = exp(z[r * V + v] - m) / s / Double(N) }
            g[r * V + Int(targets[r])] -= 1 / Double(N)
        }
        return g
    }
}

/// nn.Dropout with a fixed mask m ∈ {0, 1/(1−p)}: y = x ⊙ m, dx = dy ⊙ m.
enum ReferenceDropout {
    static func apply(_ x: [Double], mask: [Double]) -> [Double] { zip(x, mask).map { $0 * $1 } }
}

// MARK: - Reference: the whole model

/// embedding (or one-hot) → L recurrent layers, each followed by dropout with a fixed mask → decoder
/// → mean softmax cross-entropy. Parameters are one flat array in the model's `ParameterLayout`, so
/// gradients compare view by view with `CharRNNModel.grads`.
struct ReferenceModel {
    let config: ModelConfig
    let layout: ParameterLayout
    let T: Int, B: Int

    struct Result {
        var loss: Double
        var logits: [Double]      // (N, V)
        var grads: [Double]       // layout.count, zero outside views
        var hT: [[Double]]        // L × (B, H)
        var cT: [[Double]]        // L × (B, H), LSTM
    }

    func slice(_ p: [Double], _ name: String) -> [Double] {
        let v = layout[name]!
        return Array(p[v.offset..<(v.offset + v.count)])
    }

    /// - Parameters: masks, when given, are L × (T, B, H) dropout masks of each layer's output.
    func run(params p: [Double], x: [Int32], y: [Int32], h0: [[Double]], c0: [[Double]],
             masks: [[Double]]? = nil, gradients: Bool = true) -> Result {
        let V = config.vocabSize, H = config.hidden, E = config.embed, L = config.layers, N = T * B
        var input = E > 0 ? ReferenceEmbedding.forward(ids: x, w: slice(p, StateDict.embedding), E: E) : oneHot(x, V: V)
        var cells: [ReferenceRecurrent] = [], tensors: [RecurrentTensors] = [], forwards: [ReferenceRecurrent.Forward] = []
        for k in 0..<L {
            let cell = ReferenceRecurrent(kind: config.cell, T: T, B: B, D: config.inputSize(layer: k), H: H)
            let v = RecurrentTensors(x: input, h0: h0[k], c0: config.cell == .lstm ? c0[k] : [Double](repeating: 0, count: B * H),
                                     wIH: slice(p, StateDict.weightIH(k)), wHH: slice(p, StateDict.weightHH(k)),
                                     bIH: slice(p, StateDict.biasIH(k)), bHH: slice(p, StateDict.biasHH(k)))
            let fw = cell.forward(v)
            cells.append(cell); tensors.append(v); forwards.append(fw)
            input = masks.map { ReferenceDropout.apply(fw.output, mask: $0[k]) } ?? fw.output
        }
        let wDec = slice(p, StateDict.decoderWeight)
        let logits = ReferenceLinear.forward(x: input, w: wDec, b: slice(p, StateDict.decoderBias), N: N, I: H, O: V)
        let loss = ReferenceSoftmaxCE.loss(logits: logits, targets: y, V: V)
        var result = Result(loss: loss, logits: logits, grads: [], hT: forwards.map(\.hT),
                            cT: config.cell == .lstm ? forwards.map(\.cT) : [])
        guard gradients else { return result }

        var g = [Double](repeating: 0, count: layout.count)
        func put(_ name: String, _ values: [Double]) {
            let v = layout[name]!
            precondition(values.count == v.count)
            for i in 0..<v.count { g[v.offset + i] += values[i] }
        }
        let dlogits = ReferenceSoftmaxCE.gradient(logits: logits, targets: y, V: V)
        let dec = ReferenceLinear.backward(x: input, w: wDec, dout: dlogits, N: N, I: H, O: V)
        put(StateDict.decoderWeight, dec.dw)
        put(StateDict.decoderBias, dec.db)
        var d = dec.dx
        for k in stride(from: L - 1, through: 0, by: -1) {
            if let masks { d = ReferenceDropout.apply(d, mask: masks[k]) }
            let gr = cells[k].backward(tensors[k], forwards[k], dy: d)
            put(StateDict.weightIH(k), gr.wIH); put(StateDict.weightHH(k), gr.wHH)
            put(StateDict.biasIH(k), gr.bIH); put(StateDict.biasHH(k), gr.bHH)
            d = gr.x
        }
        if E > 0 { put(StateDict.embedding, ReferenceEmbedding.backward(ids: x, dout: d, V: V, E: E)) }
        result.grads = g
        return result
    }
}

// MARK: - Production harness for one recurrent layer

/// One production layer with its own parameter and gradient arenas and Float32 I/O buffers.
/// Workspaces are sized one larger than (T, B) so nothing relies on maxT == T; a dummy tensor
/// comes first in the layout so no parameter sits at offset 0.
final class LayerHarness {
    let kind: CellKind, T: Int, B: Int, D: Int, H: Int, oneHot: Bool
    let params: RecurrentParams
    let p: Storage, g: Storage
    let layer: RecurrentLayer
    let x: Storage, ids: IntStorage
    let h0: Storage, c0: Storage, hT: Storage, cT: Storage
    let dy: Storage, dx: Storage, ones: Storage

    init(_ kind: CellKind, T: Int, B: Int, D: Int, H: Int, oneHot: Bool) {
        self.kind = kind; self.T = T; self.B = B; self.D = D; self.H = H; self.oneHot = oneHot
        var layout = ParameterLayout()
        layout.add("dummy", shape: [3])
        for t in NetworkSpec.recurrentTensors(layer: 0, cell: kind, inputSize: D, hidden: H) { layout.add(t.name, shape: t.shape) }
        params = RecurrentParams(layout: layout, layer: 0)
        p = Storage(count: layout.count); g = Storage(count: layout.count)
        let maxT = T + 1, maxB = B + 1
        switch kind {
        case .lstm: layer = LSTMLayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
        case .gru: layer = GRULayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
        case .rnn: layer = RNNLayer(inputSize: D, hiddenSize: H, oneHot: oneHot, maxT: maxT, maxB: maxB, params: params)
        }
        x = Storage(count: T * B * D); ids = IntStorage(count: T * B)
        h0 = Storage(count: B * H); c0 = Storage(count: B * H); hT = Storage(count: B * H); cT = Storage(count: B * H)
        dy = Storage(count: T * B * H); dx = Storage(count: T * B * D)
        ones = Storage(count: T * B); ones.fill(1)
    }

    /// Loads parameters and state from `v`; the input is `v.x` (dense) or `tokens` (one-hot).
    func load(_ v: RecurrentTensors, tokens: [Int32]? = nil) {
        p.set(v.wIH, at: params.wIH.offset); p.set(v.wHH, at: params.wHH.offset)
        p.set(v.bIH, at: params.bIH.offset); p.set(v.bHH, at: params.bHH.offset)
        h0.set(v.h0); c0.set(v.c0)
        if let tokens { for i in tokens.indices { ids.ptr[i] = tokens[i] } } else { x.set(v.x) }
    }

    var input: LayerInput { oneHot ? .tokens(ids.ptr) : .dense(x.ptr) }

    func forward() {
        layer.forward(input, T: T, B: B, p: p.ptr, h0: h0.ptr, c0: kind == .lstm ? c0.ptr : nil,
                      hT: hT.ptr, cT: kind == .lstm ? cT.ptr : nil)
    }

    func backward(dy values: [Double]) {
        dy.set(values)
        layer.backward(input, dy: dy.ptr, T: T, B: B, p: p.ptr, g: g.ptr, ones: ones.ptr, dx: oneHot ? nil : dx.ptr)
    }

    /// h[1...T] (T, B, H).
    var output: [Double] { readDoubles(layer.output(B: B), T * B * H) }
    /// c[1...T] (T, B, H), LSTM.
    var cells: [Double] { (layer as! LSTMLayer).c.doubles(at: B * H, count: T * B * H) }

    /// Production gradients in the reference's struct (x is empty for one-hot input).
    var gradients: RecurrentTensors {
        RecurrentTensors(x: oneHot ? [] : dx.doubles(count: T * B * D), h0: readDoubles(layer.dh0, B * H),
                         c0: layer.dc0.map { readDoubles($0, B * H) } ?? [],
                         wIH: g.doubles(params.wIH), wHH: g.doubles(params.wHH), bIH: g.doubles(params.bIH), bHH: g.doubles(params.bHH))
    }
}
