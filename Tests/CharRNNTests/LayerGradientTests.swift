// Tests/CharRNNTests/LayerGradientTests.swift — every layer's forward and backward against the Double
// reference of GradCheck.swift, after that reference has itself been checked by central differences.
//
// Legend: T steps, B batch, D input width, H hidden, G = gates·H, V vocabulary, E embedding width, N rows.
// Shapes: (T3, B2, D4, H5) is the brief's tiny case; (T4, B3, D7, H6) is non-square with H below
// one 16-lane vector (tail only); H16 runs one full vector with no tail; H21 a full vector plus a
// tail of 5; H37 two full vectors plus a tail.

import XCTest
@testable import CharRNN

final class LayerGradientTests: XCTestCase {
    static let shapes: [(T: Int, B: Int, D: Int, H: Int)] = [(3, 2, 4, 5), (4, 3, 7, 6), (3, 2, 5, 16), (2, 2, 3, 21), (2, 1, 3, 37)]

    // MARK: - 1. The Double reference against central differences

    func testReferenceCellsMatchCentralDifferences() {
        for kind in CellKind.allCases {
            for (n, s) in [Self.shapes[0], Self.shapes[1]].enumerated() {
                var data = TestData(seed: 100 + UInt64(n))
                let cell = ReferenceRecurrent(kind: kind, T: s.T, B: s.B, D: s.D, H: s.H)
                let v = RecurrentTensors.random(kind, T: s.T, B: s.B, D: s.D, H: s.H, data: &data)
                let dOut = data.uniform(s.T * s.B * s.H)
                let analytic = cell.backward(v, cell.forward(v), dy: dOut)
                for (name, key) in RecurrentTensors.keys(kind) {
                    let numeric = numericGradient(v, key) { dotSum(cell.forward($0).output, dOut) }
                    assertClose(analytic[keyPath: key], numeric, tol: Tol.numeric, floor: Tol.numericFloor,
                                "reference \(kind) \(s) d\(name) vs central differences")
                }
            }
        }
    }

    func testReferenceLinearEmbeddingDropoutMatchCentralDifferences() {
        var data = TestData(seed: 7)
        // nn.Linear, N=6, I=5, O=13
        let (N, I, O) = (6, 5, 13)
        let x = data.uniform(N * I), w = data.uniform(O * I), b = data.uniform(O), dOut = data.uniform(N * O)
        let lin = ReferenceLinear.backward(x: x, w: w, dout: dOut, N: N, I: I, O: O)
        assertClose(lin.dx, numericGradient(x, \.self) { dotSum(ReferenceLinear.forward(x: $0, w: w, b: b, N: N, I: I, O: O), dOut) },
                    tol: Tol.numeric, floor: Tol.numericFloor, "reference linear dx")
        assertClose(lin.dw, numericGradient(w, \.self) { dotSum(ReferenceLinear.forward(x: x, w: $0, b: b, N: N, I: I, O: O), dOut) },
                    tol: Tol.numeric, floor: Tol.numericFloor, "reference linear dW")
        assertClose(lin.db, numericGradient(b, \.self) { dotSum(ReferenceLinear.forward(x: x, w: w, b: $0, N: N, I: I, O: O), dOut) },
                    tol: Tol.numeric, floor: Tol.numericFloor, "reference linear db")
        // nn.Embedding with repeated ids
        let (V, E) = (6, 4)
        let ids = idsWithRepeats(&data, count: 8, below: V)
        let table = data.uniform(V * E), dEmb = data.uniform(8 * E)
        assertClose(ReferenceEmbedding.backward(ids: ids, dout: dEmb, V: V, E: E),
                    numericGradient(table, \.self) { dotSum(ReferenceEmbedding.forward(ids: ids, w: $0, E: E), dEmb) },
                    tol: Tol.numeric, floor: Tol.numericFloor, "reference embedding dW")
        // Dropout with a fixed mask: dx = dy ⊙ m
        let mask = (0..<20).map { i in i % 3 == 0 ? 0.0 : 1 / 0.7 }
        let xd = data.uniform(20), dyd = data.uniform(20)
        assertClose(ReferenceDropout.apply(dyd, mask: mask),
                    numericGradient(xd, \.self) { dotSum(ReferenceDropout.apply($0, mask: mask), dyd) },
                    tol: Tol.numeric, floor: Tol.numericFloor, "reference dropout dx")
    }

    func testReferenceSoftmaxCrossEntropyMatchesCentralDifferences() {
        var data = TestData(seed: 8)
        for (V, scale) in [(7, 3.0), (13, 50.0)] {
            let N = 5
            let z = data.uniform(N * V, scale), y = data.ids(N, below: V)
            let numeric = numericGradient(z, \.self) { ReferenceSoftmaxCE.loss(logits: $0, targets: y, V: V) }
            // With ±50 logits the loss is ≈ 50: the quotient's round-off is ≈ 50·2⁻⁵³/1e-6 ≈ 5e-9 absolute.
            assertClose(ReferenceSoftmaxCE.gradient(logits: z, targets: y, V: V), numeric,
                        tol: Tol.numeric, floor: Tol.numericFloor, "reference softmax CE dz V\(V) ±\(scale)")
        }
    }

    // MARK: - 2. Production recurrent layers against the reference

    /// Forward (h, c, final state) and every gradient of one production layer vs the reference.
    func checkLayer(_ kind: CellKind, _ s: (T: Int, B: Int, D: Int, H: Int), oneHot: Bool, seed: UInt64,
                    file: StaticString = #filePath, line: UInt = #line) {
        let (T, B, D, H) = s
        var data = TestData(seed: seed)
        var v = RecurrentTensors.random(kind, T: T, B: B, D: D, H: H, data: &data)
        var tokens: [Int32]? = nil
        if oneHot {
            tokens = idsWithRepeats(&data, count: T * B, below: D)
            v.x = CharRNNTests.oneHot(tokens!, V: D)
        }
        let cell = ReferenceRecurrent(kind: kind, T: T, B: B, D: D, H: H)
        let fw = cell.forward(v)
        let dOut = data.uniform(T * B * H)
        let ref = cell.backward(v, fw, dy: dOut)

        let layer = LayerHarness(kind, T: T, B: B, D: D, H: H, oneHot: oneHot)
        layer.load(v, tokens: tokens)
        layer.forward()
        let tag = "\(kind) \(oneHot ? "one-hot" : "dense") T\(T) B\(B) D\(D) H\(H)"
        assertClose(layer.output, fw.output, tol: Tol.float, floor: Tol.floatFloor, "\(tag) h", file: file, line: line)
        assertClose(layer.hT.toArray(), fw.hT, tol: Tol.float, floor: Tol.floatFloor, "\(tag) hT", file: file, line: line)
        if kind == .lstm {
            assertClose(layer.cells, fw.cells, tol: Tol.float, floor: Tol.floatFloor, "\(tag) c", file: file, line: line)
            assertClose(layer.cT.toArray(), fw.cT, tol: Tol.float, floor: Tol.floatFloor, "\(tag) cT", file: file, line: line)
        }
        layer.dx.fill(777)   // dx must be written, not accumulated
        layer.backward(dy: dOut)
        let got = layer.gradients
        for (name, key) in RecurrentTensors.keys(kind) where !(oneHot && name == "x") {
            assertClose(got[keyPath: key], ref[keyPath: key], tol: Tol.float, floor: Tol.floatFloor, "\(tag) d\(name)", file: file, line: line)
        }
    }

    func testLSTMDenseMatchesReference() {
        for (n, s) in Self.shapes.enumerated() { checkLayer(.lstm, s, oneHot: false, seed: 10 + UInt64(n)) }
    }

    func testLSTMOneHotMatchesReference() {
        for (n, s) in Self.shapes.enumerated() { checkLayer(.lstm, s, oneHot: true, seed: 20 + UInt64(n)) }
    }

    func testGRUDenseMatchesReference() {
        for (n, s) in Self.shapes.enumerated() { checkLayer(.gru, s, oneHot: false, seed: 30 + UInt64(n)) }
    }

    func testGRUOneHotMatchesReference() {
        for (n, s) in Self.shapes.enumerated() { checkLayer(.gru, s, oneHot: true, seed: 40 + UInt64(n)) }
    }

    func testRNNDenseMatchesReference() {
        for (n, s) in Self.shapes.enumerated() { checkLayer(.rnn, s, oneHot: false, seed: 50 + UInt64(n)) }
    }

    func testRNNOneHotMatchesReference() {
        for (n, s) in Self.shapes.enumerated() { checkLayer(.rnn, s, oneHot: true, seed: 60 + UInt64(n)) }
    }

    /// Parameter gradients accumulate (a second forward+backward doubles them); dx, dh0, dc0 are
    /// written. Backward consumes the forward caches (it writes the pre-activation gradients over the
    /// gates in place), so each backward follows its own forward.
    func testParameterGradientsAccumulateAndActivationGradientsAreWritten() {
        for kind in CellKind.allCases {
            for oneHot in [false, true] {
                let (T, B, D, H) = (3, 2, 5, 11)
                var data = TestData(seed: 70)
                let v = RecurrentTensors.random(kind, T: T, B: B, D: D, H: H, data: &data)
                let layer = LayerHarness(kind, T: T, B: B, D: D, H: H, oneHot: oneHot)
                layer.load(v, tokens: oneHot ? idsWithRepeats(&data, count: T * B, below: D) : nil)
                layer.forward()
                let dOut = data.uniform(T * B * H)
                layer.backward(dy: dOut)
                let once = layer.gradients
                layer.forward()
                layer.backward(dy: dOut)
                let twice = layer.gradients
                let tag = "\(kind) \(oneHot ? "one-hot" : "dense")"
                for (name, key) in [("W_ih", \RecurrentTensors.wIH), ("W_hh", \.wHH), ("b_ih", \.bIH), ("b_hh", \.bHH)] {
                    XCTAssertGreaterThan(once[keyPath: key].map(abs).max()!, 1e-3, "\(tag) d\(name) is trivially zero")
                    assertClose(twice[keyPath: key], once[keyPath: key].map { 2 * $0 }, tol: 1e-6, floor: 1e-6,
                                "\(tag) d\(name) accumulates")
                }
                XCTAssertEqual(twice.x, once.x, "\(tag) dx is overwritten")
                XCTAssertEqual(twice.h0, once.h0, "\(tag) dh0 is overwritten")
                XCTAssertEqual(twice.c0, once.c0, "\(tag) dc0 is overwritten")
            }
        }
    }

    /// The inference step's cell update (`stepRows`, what sampling runs) equals one step of the
    /// reference for B = 3 streams, with H = 21 (one full 16-lane vector plus a tail).
    func testInferenceStepRowsMatchReference() {
        for kind in CellKind.allCases {
            let (B, D, H) = (3, 4, 21)
            var data = TestData(seed: 80)
            let v = RecurrentTensors.random(kind, T: 1, B: B, D: D, H: H, data: &data)
            let fw = ReferenceRecurrent(kind: kind, T: 1, B: B, D: D, H: H).forward(v)
            let layer = LayerHarness(kind, T: 1, B: B, D: D, H: H, oneHot: false)
            layer.load(v)
            let G = kind.gates * H
            let p = layer.p.ptr
            let wIH = p + layer.params.wIH.offset, wHH = p + layer.params.wHH.offset
            let gx = Storage(count: B * G), gh = Storage(count: B * G), bias = Storage(count: G), scratch = Storage(count: B * H)
            let h = Storage(values: v.h0), c = Storage(values: v.c0)
            for b in 0..<B {
                for r in 0..<G {
                    var sx: Float = 0, sh: Float = 0
                    for d in 0..<D { sx += wIH[r * D + d] * Float(v.x[b * D + d]) }
                    for j in 0..<H { sh += wHH[r * H + j] * h.ptr[b * H + j] }
                    gx.ptr[b * G + r] = sx; gh.ptr[b * G + r] = sh
                }
            }
            for r in 0..<G { bias.ptr[r] = p[layer.params.bIH.offset + r] + p[layer.params.bHH.offset + r] }
            layer.layer.stepRows(gx: gx.ptr, gh: gh.ptr, h: h.ptr, c: kind == .lstm ? c.ptr : nil, rows: B, bias: bias.ptr,
                                 p: p, scratch: scratch.ptr)
            assertClose(h.toArray(), fw.hT, tol: Tol.float, floor: Tol.floatFloor, "\(kind) step h")
            if kind == .lstm { assertClose(c.toArray(), fw.cT, tol: Tol.float, floor: Tol.floatFloor, "\(kind) step c") }
        }
    }

    // MARK: - 3. Decoder, softmax cross-entropy, embedding, dropout

    func testSoftmaxCrossEntropyMatchesReference() {
        var data = TestData(seed: 90)
        let N = 6
        for V in [5, 8, 13, 17] {
            for scale in [3.0, 50.0] {
                var z = data.uniform(N * V, scale)
                let y = data.ids(N, below: V)
                if scale == 50 {
                    // extreme rows: the target at −50 against +50 elsewhere, a flat row at +50, and rows
                    // at ±100 where exp without max subtraction leaves Float's range (vexp clamps to e^±88)
                    for v in 0..<V {
                        z[v] = v == Int(y[0]) ? -50 : 50
                        z[V + v] = 50
                        z[2 * V + v] = v == Int(y[2]) ? 95 : 100
                        z[3 * V + v] = v == Int(y[3]) ? -90 : -100
                    }
                }
                let tag = "softmax CE V\(V) ±\(scale)"
                let refLoss = ReferenceSoftmaxCE.loss(logits: z, targets: y, V: V)
                let refGrad = ReferenceSoftmaxCE.gradient(logits: z, targets: y, V: V)
                let logits = Storage(values: z), targets = IntStorage(ids: y)
                let before = logits.toArray()
                let lossOnly = softmaxCrossEntropy(logits: logits.ptr, targets: targets.ptr, rows: N, V: V, gradient: false)
                XCTAssertEqual(logits.toArray(), before, "\(tag): gradient: false must leave the logits alone")
                let loss = softmaxCrossEntropy(logits: logits.ptr, targets: targets.ptr, rows: N, V: V, gradient: true)
                assertClose([loss, lossOnly], [refLoss, refLoss], tol: Tol.float, floor: Tol.floatFloor, "\(tag) loss")
                assertClose(logits.toArray(), refGrad, tol: Tol.float, floor: Tol.floatFloor, "\(tag) dlogits")
                // scale multiplies the gradient only
                let scaled = Storage(values: z)
                let loss2 = softmaxCrossEntropy(logits: scaled.ptr, targets: targets.ptr, rows: N, V: V, gradient: true, scale: 0.5)
                XCTAssertEqual(loss2, loss, "\(tag): scale must not change the loss")
                assertClose(scaled.toArray(), refGrad.map { $0 * 0.5 }, tol: Tol.float, floor: Tol.floatFloor, "\(tag) scaled dlogits")
            }
        }
    }

    func testLinearDecoderMatchesReference() {
        var data = TestData(seed: 91)
        for (N, I, O) in [(6, 6, 13), (4, 16, 8)] {
            var layout = ParameterLayout()
            layout.add("dummy", shape: [5])
            let dec = LinearLayer(weight: layout.add(StateDict.decoderWeight, shape: [O, I]), bias: layout.add(StateDict.decoderBias, shape: [O]))
            let x = data.uniform(N * I), w = data.uniform(O * I, 0.5), b = data.uniform(O, 0.5), dOut = data.uniform(N * O)
            let p = Storage(count: layout.count), g = Storage(count: layout.count)
            p.set(w, at: dec.weight.offset); p.set(b, at: dec.bias.offset)
            let xs = Storage(values: x), out = Storage(count: N * O), douts = Storage(values: dOut)
            let dx = Storage(count: N * I), ones = Storage(count: N)
            ones.fill(1); dx.fill(777)
            let tag = "linear N\(N) H\(I) V\(O)"
            dec.forward(x: xs.ptr, rows: N, p: p.ptr, out: out.ptr)
            assertClose(out.toArray(), ReferenceLinear.forward(x: x, w: w, b: b, N: N, I: I, O: O),
                        tol: Tol.float, floor: Tol.floatFloor, "\(tag) logits")
            let ref = ReferenceLinear.backward(x: x, w: w, dout: dOut, N: N, I: I, O: O)
            dec.backward(x: xs.ptr, dout: douts.ptr, rows: N, p: p.ptr, g: g.ptr, ones: ones.ptr, dx: dx.ptr)
            assertClose(dx.toArray(), ref.dx, tol: Tol.float, floor: Tol.floatFloor, "\(tag) dx")
            assertClose(g.doubles(dec.weight), ref.dw, tol: Tol.float, floor: Tol.floatFloor, "\(tag) dW")
            assertClose(g.doubles(dec.bias), ref.db, tol: Tol.float, floor: Tol.floatFloor, "\(tag) db")
            dec.backward(x: xs.ptr, dout: douts.ptr, rows: N, p: p.ptr, g: g.ptr, ones: ones.ptr, dx: dx.ptr)
            assertClose(dx.toArray(), ref.dx, tol: Tol.float, floor: Tol.floatFloor, "\(tag) dx written")
            assertClose(g.doubles(dec.weight), ref.dw.map { 2 * $0 }, tol: Tol.float, floor: Tol.floatFloor, "\(tag) dW accumulates")
            assertClose(g.doubles(dec.bias), ref.db.map { 2 * $0 }, tol: Tol.float, floor: Tol.floatFloor, "\(tag) db accumulates")
        }
    }

    func testEmbeddingGatherAndScatterAddWithRepeatedIds() {
        var data = TestData(seed: 92)
        let (V, E, N) = (7, 5, 9)
        var layout = ParameterLayout()
        layout.add("dummy", shape: [1])
        let emb = EmbeddingLayer(weight: layout.add(StateDict.embedding, shape: [V, E]))
        let ids = idsWithRepeats(&data, count: N, below: V)
        let w = data.uniform(V * E), dOut = data.uniform(N * E)
        let p = Storage(count: layout.count), g = Storage(count: layout.count)
        p.set(w, at: emb.weight.offset)
        let idStore = IntStorage(ids: ids), out = Storage(count: N * E), douts = Storage(values: dOut)
        emb.forward(ids: idStore.ptr, rows: N, p: p.ptr, out: out.ptr)
        XCTAssertEqual(out.toArray().map(Double.init), ReferenceEmbedding.forward(ids: ids, w: w, E: E), "embedding gather is exact")
        let ref = ReferenceEmbedding.backward(ids: ids, dout: dOut, V: V, E: E)
        emb.backward(ids: idStore.ptr, rows: N, dout: douts.ptr, g: g.ptr)
        assertClose(g.doubles(emb.weight), ref, tol: Tol.float, floor: Tol.floatFloor, "embedding dW")
        emb.backward(ids: idStore.ptr, rows: N, dout: douts.ptr, g: g.ptr)
        assertClose(g.doubles(emb.weight), ref.map { 2 * $0 }, tol: Tol.float, floor: Tol.floatFloor, "embedding dW accumulates")
        XCTAssertEqual(g.doubles(at: 0, count: 1), [0], "embedding backward wrote outside its view")
    }

    func testDropoutWithFixedMask() {
        var rng = Xoshiro256(seed: 93)
        let n = 4000, prob: Float = 0.3
        let mask = Storage(count: n)
        Dropout.drawMask(mask.ptr, T: 40, B: 10, H: 10, layer: 0, prob: prob, draw: DropoutDraw(key: rng.next()))
        let keep = 1 / (1 - prob)
        let values = mask.toArray()
        XCTAssertTrue(values.allSatisfy { $0 == 0 || $0 == keep }, "mask values must be 0 or 1/(1−p)")
        let dropped = Double(values.filter { $0 == 0 }.count) / Double(n)
        XCTAssertEqual(dropped, Double(prob), accuracy: 0.03, "fraction dropped")
        var data = TestData(seed: 94)
        let x = data.uniform(n), dy = data.uniform(n)
        let m = values.map(Double.init)
        let xs = Storage(values: x), out = Storage(count: n)
        Dropout.apply(xs.ptr, mask: mask.ptr, out: out.ptr, n: n)
        assertClose(out.toArray(), ReferenceDropout.apply(x, mask: m), tol: 1e-7, floor: Tol.floatFloor, "dropout forward")
        // backward in place, as the model does it: dx = dy ⊙ m
        let d = Storage(values: dy)
        Dropout.apply(d.ptr, mask: mask.ptr, out: d.ptr, n: n)
        assertClose(d.toArray(), ReferenceDropout.apply(dy, mask: m), tol: 1e-7, floor: Tol.floatFloor, "dropout backward")
    }
}
