// Tests/CharRNNTests/ModelGradientTests.swift — CharRNNModel.trainStep against the Double reference
// model (GradCheck.swift's pieces wired as embedding/one-hot → L layers → dropout → decoder → mean CE),
// plus the invariants: carried state equals one long pass, and same seed ⇒ bit-identical losses.
//
// Legend: T steps, B batch, V vocabulary, E embedding width (0 = one-hot), H hidden, L = 2 layers, N = T·B.
// Parameters are uniform(±0.5) rather than char-rnn's ±0.08 so every gradient is well away from zero.

import XCTest
@testable import CharRNN

final class ModelGradientTests: XCTestCase {
    /// Mean-loss gradients are O(1e-3–1e-1) with ≈ 1e-8 absolute Float32 error, so a 1e-3 floor.
    static let modelFloor = 1e-3

    /// A model with random parameters and a random carried state, its minibatch and the reference.
    struct Setup {
        let model: CharRNNModel
        let state: RecurrentState
        let reference: ReferenceModel
        let params: [Double]
        let x: [Int32], y: [Int32]
        let xs: IntStorage, ys: IntStorage
        var h0: [[Double]] { state.h.map { $0.doubles(count: $0.count) } }
        var c0: [[Double]] { state.c.map { $0.doubles(count: $0.count) } }

        init(_ config: ModelConfig, T: Int, B: Int, maxT: Int? = nil, seed: UInt64) {
            var data = TestData(seed: seed)
            model = CharRNNModel(config: config, maxT: maxT ?? T, maxB: B + 1)
            for v in model.layout.views { model.params.set(data.uniform(v.count, 0.5), at: v.offset) }
            params = model.params.doubles(count: model.params.count)
            state = RecurrentState(config: config, batch: B)
            for s in state.h + state.c { s.set(data.uniform(s.count, 0.8)) }
            x = idsWithRepeats(&data, count: T * B, below: config.vocabSize)
            y = data.ids(T * B, below: config.vocabSize)
            xs = IntStorage(ids: x); ys = IntStorage(ids: y)
            reference = ReferenceModel(config: config, layout: model.layout, T: T, B: B)
        }
    }

    static func configs(dropout: Float = 0) -> [ModelConfig] {
        CellKind.allCases.flatMap { cell in
            // one-hot input with H = 6 (SIMD tails), embedding input with H = 8 (full SIMD vectors)
            [ModelConfig(cell: cell, layers: 2, hidden: 6, embed: 0, dropout: dropout, vocabSize: 11),
             ModelConfig(cell: cell, layers: 2, hidden: 8, embed: 5, dropout: dropout, vocabSize: 11)]
        }
    }

    static func tag(_ c: ModelConfig) -> String {
        "model \(c.cell) L\(c.layers) H\(c.hidden) \(c.embed > 0 ? "E\(c.embed)" : "one-hot") V\(c.vocabSize)" + (c.dropout > 0 ? " dropout \(c.dropout)" : "")
    }

    /// Compares loss, every gradient view and the new carried state with the reference.
    func compare(_ s: Setup, loss: Double, expected r: ReferenceModel.Result, _ tag: String,
                 file: StaticString = #filePath, line: UInt = #line) {
        assertClose([loss], [r.loss], tol: Tol.float, floor: Tol.floatFloor, "\(tag) loss", file: file, line: line)
        for v in s.model.layout.views {
            assertClose(s.model.grads.doubles(v), Array(r.grads[v.offset..<(v.offset + v.count)]),
                        tol: Tol.float, floor: Self.modelFloor, "\(tag) d\(v.name)", file: file, line: line)
        }
        // alignment padding between views must stay zero
        let all = s.model.grads.toArray()
        var inViews = [Bool](repeating: false, count: all.count)
        for v in s.model.layout.views { for i in v.offset..<(v.offset + v.count) { inViews[i] = true } }
        XCTAssertTrue(all.indices.allSatisfy { inViews[$0] || all[$0] == 0 }, "\(tag): gradient written outside a view", file: file, line: line)
        for k in 0..<s.model.config.layers {
            assertClose(s.state.h[k].toArray(), r.hT[k], tol: Tol.float, floor: Tol.floatFloor, "\(tag) state h\(k)", file: file, line: line)
            if s.model.config.cell == .lstm {
                assertClose(s.state.c[k].toArray(), r.cT[k], tol: Tol.float, floor: Tol.floatFloor, "\(tag) state c\(k)", file: file, line: line)
            }
        }
    }

    // MARK: - The reference model against central differences

    /// Sampled (torch-rnn check_random_dims style): 3 entries of every parameter tensor, with dropout
    /// masks and a carried state, for each cell and both input kinds.
    func testReferenceModelMatchesCentralDifferences() {
        for (n, config) in Self.configs(dropout: 0.3).enumerated() {
            let (T, B) = (3, 2)
            let s = Setup(config, T: T, B: B, seed: 200 + UInt64(n))
            var data = TestData(seed: 300 + UInt64(n))
            let masks = (0..<config.layers).map { _ in
                data.uniform(T * B * config.hidden).map { $0 < -0.4 ? 0 : 1 / 0.7 }   // ≈ 30 % dropped
            }
            let (h0, c0) = (s.h0, s.c0)
            let analytic = s.reference.run(params: s.params, x: s.x, y: s.y, h0: h0, c0: c0, masks: masks)
            var indices: [Int] = []
            for v in s.model.layout.views { for _ in 0..<3 { indices.append(v.offset + Int(data.rng.next() % UInt64(v.count))) } }
            let numeric = numericGradient(s.params, \.self, indices: indices) {
                s.reference.run(params: $0, x: s.x, y: s.y, h0: h0, c0: c0, masks: masks, gradients: false).loss
            }
            assertClose(indices.map { analytic.grads[$0] }, indices.map { numeric[$0] }, tol: Tol.numeric, floor: Tol.numericFloor,
                        "reference \(Self.tag(config)) sampled gradients vs central differences")
        }
    }

    // MARK: - trainStep against the reference

    func testTrainStepMatchesReference() {
        for (n, config) in Self.configs().enumerated() {
            let (T, B) = (4, 3)
            let s = Setup(config, T: T, B: B, maxT: T + 2, seed: 400 + UInt64(n))
            let expected = s.reference.run(params: s.params, x: s.x, y: s.y, h0: s.h0, c0: s.c0)
            var rng = Xoshiro256(seed: 1)
            s.model.grads.fill(5)   // trainStep must zero the gradients itself
            let loss = s.model.trainStep(x: s.xs.ptr, y: s.ys.ptr, T: T, B: B, state: s.state, rng: &rng)
            compare(s, loss: loss, expected: expected, Self.tag(config))
            XCTAssertEqual(rng, Xoshiro256(seed: 1), "\(Self.tag(config)): no dropout, yet the rng was used")
        }
    }

    /// Dropout: the step's key is one word of the rng and layer k's mask is `Dropout.drawMask` of
    /// (key, k), so a copy of the rng reproduces them for the reference.
    func testTrainStepWithDropoutMatchesReference() {
        for (n, config) in Self.configs(dropout: 0.3).enumerated() {
            let (T, B) = (4, 3)
            let s = Setup(config, T: T, B: B, seed: 500 + UInt64(n))
            let N = T * B, H = config.hidden
            var rng = Xoshiro256(seed: 77 + UInt64(n))
            var replay = rng
            let draw = DropoutDraw(key: replay.next())
            let masks = (0..<config.layers).map { k in
                let m = Storage(count: N * H)
                Dropout.drawMask(m.ptr, T: T, B: B, H: H, layer: k, prob: config.dropout, draw: draw)
                return m.doubles(count: N * H)
            }
            XCTAssertTrue(masks.allSatisfy { $0.contains(0) && $0.contains { $0 != 0 } }, "masks must drop some units and keep others")
            let expected = s.reference.run(params: s.params, x: s.x, y: s.y, h0: s.h0, c0: s.c0, masks: masks)
            let loss = s.model.trainStep(x: s.xs.ptr, y: s.ys.ptr, T: T, B: B, state: s.state, rng: &rng)
            compare(s, loss: loss, expected: expected, Self.tag(config))
            XCTAssertEqual(rng, replay, "\(Self.tag(config)): trainStep must draw exactly one word (the step's dropout key)")
            // evaluate never drops: its loss is the reference's without masks
            let e = Setup(config, T: T, B: B, seed: 500 + UInt64(n))
            let clean = e.reference.run(params: e.params, x: e.x, y: e.y, h0: e.h0, c0: e.c0, gradients: false)
            let evalLoss = e.model.evaluate(x: e.xs.ptr, y: e.ys.ptr, T: T, B: B, state: e.state)
            assertClose([evalLoss], [clean.loss], tol: Tol.float, floor: Tol.floatFloor, "\(Self.tag(config)) evaluate loss")
        }
    }

    // MARK: - Invariants

    /// torch-rnn's rememberStatesTestV2: T = 6 in one call equals two calls of T = 3 with the state carried.
    func testCarriedStateEqualsOneLongPass() {
        for (n, config) in Self.configs().enumerated() {
            let (T, B) = (6, 2), half = 3
            let s = Setup(config, T: T, B: B, seed: 600 + UInt64(n))
            let tag = Self.tag(config)
            let split = RecurrentState(config: config, batch: B)
            split.copy(from: s.state)
            let V = config.vocabSize
            let long = s.model.evaluate(x: s.xs.ptr, y: s.ys.ptr, T: T, B: B, state: s.state)
            let first = s.model.evaluate(x: s.xs.ptr, y: s.ys.ptr, T: half, B: B, state: split)
            let second = s.model.evaluate(x: s.xs.ptr + half * B, y: s.ys.ptr + half * B, T: half, B: B, state: split)
            assertClose([(first + second) / 2], [long], tol: 1e-6, floor: 1e-6, "\(tag) carried loss")
            for k in 0..<config.layers {
                assertClose(split.h[k].doubles(count: split.h[k].count), s.state.h[k].doubles(count: split.h[k].count),
                            tol: 1e-6, floor: 1e-6, "\(tag) carried h\(k)")
                if config.cell == .lstm {
                    assertClose(split.c[k].doubles(count: split.c[k].count), s.state.c[k].doubles(count: split.c[k].count),
                                tol: 1e-6, floor: 1e-6, "\(tag) carried c\(k)")
                }
            }
            // the log-probabilities too, from the same starting state
            let start = RecurrentState(config: config, batch: B), a = RecurrentState(config: config, batch: B)
            let out = Storage(count: T * B * V)
            s.model.logProbs(x: s.xs.ptr, T: T, B: B, state: start, out: out.ptr)
            let longLP = out.doubles(count: T * B * V)
            s.model.logProbs(x: s.xs.ptr, T: half, B: B, state: a, out: out.ptr)
            let firstLP = out.doubles(count: half * B * V)
            s.model.logProbs(x: s.xs.ptr + half * B, T: half, B: B, state: a, out: out.ptr)
            let secondLP = out.doubles(count: half * B * V)
            assertClose(firstLP + secondLP, longLP, tol: 1e-6, floor: 1e-6, "\(tag) carried log-probabilities")
            // and the carried state matters: a reset state gives different log-probabilities
            a.reset()
            s.model.logProbs(x: s.xs.ptr + half * B, T: half, B: B, state: a, out: out.ptr)
            XCTAssertNotEqual(out.doubles(count: half * B * V), secondLP, "\(tag): the carried state had no effect")
        }
    }

    /// Same seed ⇒ bit-identical loss sequence over 5 SGD steps (p −= 0.1·g) with dropout, in two fresh models.
    func testSameSeedGivesBitIdenticalLosses() {
        for cell in CellKind.allCases {
            let config = ModelConfig(cell: cell, layers: 2, hidden: 8, embed: cell == .gru ? 4 : 0, dropout: 0.25, vocabSize: 9)
            let (T, B) = (5, 3)
            func run() -> (losses: [Double], params: [Float]) {
                let model = CharRNNModel(config: config, maxT: T, maxB: B)
                var rng = Xoshiro256(seed: 42)
                model.initialize(rng: &rng)
                let state = RecurrentState(config: config, batch: B)
                var data = TestData(seed: 43)
                var losses: [Double] = []
                for _ in 0..<5 {
                    let x = IntStorage(ids: data.ids(T * B, below: config.vocabSize))
                    let y = IntStorage(ids: data.ids(T * B, below: config.vocabSize))
                    losses.append(model.trainStep(x: x.ptr, y: y.ptr, T: T, B: B, state: state, rng: &rng))
                    axpy(n: model.layout.count, alpha: -0.1, x: model.grads.ptr, y: model.params.ptr)
                }
                return (losses, model.params.toArray())
            }
            let a = run(), b = run()
            XCTAssertTrue(a.losses.allSatisfy(\.isFinite), "\(cell): non-finite loss \(a.losses)")
            XCTAssertEqual(a.losses, b.losses, "\(cell): same seed, different losses")
            XCTAssertTrue(a.params == b.params, "\(cell): same seed, different parameters after 5 steps")
            XCTAssertEqual(Set(a.losses).count, 5, "\(cell): the parameters or batches did not change between steps")
        }
    }
}
