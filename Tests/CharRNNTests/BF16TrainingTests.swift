// BF16TrainingTests.swift — training with `--precision bf16` (issue 19): the bf16 gradients of every
// cell kind against the float32 ones within a tolerance derived from bf16's 8-bit significand (and a
// wrong term exceeding it), the same bits for the same seed, a bit-exact resume, the loss falling as
// in float32, the portable kernel agreeing with AVX512_BF16, the adaptive softmax, and what the config records.
//
// The tolerance. bf16 keeps 8 significant bits, so rounding to nearest even moves a value by at most
// u = 2⁻⁸ of itself (relative, half an ulp of 2⁻⁷). A product with both operands rounded is off by at
// most (2u + u²)·Σ|a||b| per element, float32 sums adding ~2⁻²⁴ per term (negligible). A weight
// gradient depends on a chain of such products: the forward through L layers and the decoder, then
// the backward through the decoder and back down to its layer — at most P = 2(L + 1) products, each
// contributing (to first order) its 2u. Norm-wise, per tensor: ‖g_bf16 − g_fp32‖ ≤ P·2u·‖g_fp32‖ when
// the sums do not cancel; with L = 2, P·2u = 12·2⁻⁸ ≈ 0.047. Cancellation could exceed it for a tensor
// whose gradient is small against its terms, so the test checks the norm over each tensor (a small
// element may be off by more) and the measured errors are far inside (about u, the errors being
// independent). A wrong term is an error of order one in some tensor: the check that a recurrent
// product reading a wrongly packed W_hh (scaled by 1 + 2⁻², i.e. a 64u error in one operand) exceeds
// the tolerance shows the test can fail.

import Foundation
import XCTest
@testable import CharRNN

final class BF16TrainingTests: XCTestCase {
    /// u: the largest relative rounding error of float32 → bf16 (nearest even).
    static let u = 1.0 / 256
    /// The norm-wise tolerance for L layers (see the header).
    static func tolerance(layers L: Int) -> Double { Double(2 * (L + 1)) * 2 * u }

    override func tearDown() { BF16GEMMKernel.forced = nil }

    /// A model, its twin switched to bf16 with the same weights, a minibatch and carried state.
    struct Pair {
        let fp32: CharRNNModel, bf16: CharRNNModel
        let x: [Int32], y: [Int32], T: Int, B: Int
    }

    func pair(_ cfg: ModelConfig, T: Int = 6, B: Int = 9, seed: UInt64 = 7) -> Pair {
        let a = CharRNNModel(config: cfg, maxT: T, maxB: B), b = CharRNNModel(config: cfg, maxT: T, maxB: B)
        var rng = Xoshiro256(seed: seed)
        a.initialize(rng: &rng)
        // larger weights than char-rnn's ±0.08, so that the recurrent products matter
        for i in 0..<a.layout.count { a.params.ptr[i] *= 4 }
        b.params.ptr.update(from: a.params.ptr, count: a.layout.count)
        b.parametersChanged()
        b.enableBF16Training()
        var d = Xoshiro256(seed: seed + 1)
        let V = UInt64(cfg.vocabSize)
        let x = (0..<(T * B)).map { _ in Int32(d.next() % V) }, y = (0..<(T * B)).map { _ in Int32(d.next() % V) }
        return Pair(fp32: a, bf16: b, x: x, y: y, T: T, B: B)
    }

    /// Gradients of one step from a random carried state (the same for both), and the losses.
    func gradients(_ p: Pair, dropoutKey: UInt64 = 99) -> (g32: [Float], g16: [Float], l32: Double, l16: Double) {
        func run(_ m: CharRNNModel) -> ([Float], Double) {
            let s = RecurrentState(config: m.config, batch: p.B)
            var r = Xoshiro256(seed: 5)
            for t in s.h + s.c { for i in 0..<t.count { t.ptr[i] = r.nextFloat() - 0.5 } }
            let loss = p.x.withUnsafeBufferPointer { x in
                p.y.withUnsafeBufferPointer { y in
                    m.trainStep(x: x.baseAddress!, y: y.baseAddress!, T: p.T, B: p.B, state: s, dropout: DropoutDraw(key: dropoutKey))
                }
            }
            return (Array(UnsafeBufferPointer(start: m.grads.ptr, count: m.layout.count)), loss)
        }
        let (g32, l32) = run(p.fp32), (g16, l16) = run(p.bf16)
        return (g32, g16, l32, l16)
    }

    /// ‖a − b‖ / ‖b‖ per named tensor.
    func errors(_ m: CharRNNModel, _ g16: [Float], _ g32: [Float]) -> [(String, Double)] {
        m.spec.parameters.map { t in
            let v = m.layout[t.name]!
            var d = 0.0, n = 0.0
            for i in v.offset..<(v.offset + v.count) {
                d += pow(Double(g16[i]) - Double(g32[i]), 2); n += pow(Double(g32[i]), 2)
            }
            return (t.name, (d / max(n, 1e-300)).squareRoot())
        }
    }

    func configs() -> [(String, ModelConfig)] {
        var out: [(String, ModelConfig)] = []
        for cell in CellKind.allCases {
            // one-hot first layer (gather), and an embedding (dense first layer: dx, dW_ih by products)
            out.append(("\(cell) one-hot", ModelConfig(cell: cell, layers: 2, hidden: 40, embed: 0, dropout: 0, vocabSize: 37)))
            out.append(("\(cell) embed+dropout", ModelConfig(cell: cell, layers: 2, hidden: 40, embed: 24, dropout: 0.2, vocabSize: 37)))
        }
        return out
    }

    func testGradientsMatchFP32WithinTheBF16Tolerance() throws {
        try WorkerPool.configure(threads: 2)
        let tol = Self.tolerance(layers: 2)
        for (name, cfg) in configs() {
            let p = pair(cfg)
            let (g32, g16, l32, l16) = gradients(p)
            XCTAssertFalse(g16 == g32, "\(name): bf16 gave the float32 bits: the bf16 path did not run")
            // the loss: one forward chain of L + 1 products
            XCTAssertLessThan(abs(l16 - l32) / l32, Double(cfg.layers + 1) * 2 * Self.u, name)
            for (t, e) in errors(p.fp32, g16, g32) {
                XCTAssertLessThan(e, tol, "\(name) \(t): ‖Δg‖/‖g‖ = \(e)")
                // and far inside: the rounding errors are independent, so of order u, not P·2u
                XCTAssertLessThan(e, 4 * Self.u, "\(name) \(t): ‖Δg‖/‖g‖ = \(e), expected ≈ u")
            }
        }
    }

    /// A wrong term — a recurrent product of layer 0 reading W_hh·(1 + 2⁻²), in the forward pack or
    /// in the backward one — is caught.
    func testTheToleranceCatchesAWrongTerm() throws {
        try WorkerPool.configure(threads: 1)
        let tol = Self.tolerance(layers: 2)
        for cell in CellKind.allCases {
            for backward in [false, true] {
                let p = pair(ModelConfig(cell: cell, layers: 2, hidden: 40, embed: 0, dropout: 0, vocabSize: 37))
                p.bf16.packBF16Weights()
                let l0 = p.bf16.layers[0], H = l0.H, G = l0.G
                let wrong = (0..<(G * H)).map { p.bf16.params.ptr[l0.params.wHH.offset + $0] * 1.25 }
                wrong.withUnsafeBufferPointer {
                    let packs = p.bf16.bf16!.layers[0]
                    if backward { packs.whh.pack($0.baseAddress!, k: G, n: H, ldb: H) } else {
                        packs.whhT.packTransposed($0.baseAddress!, k: H, n: G, ldw: H)
                    }
                }
                let (g32, g16, _, _) = gradients(p)
                let worst = errors(p.fp32, g16, g32).map(\.1).max()!
                XCTAssertGreaterThan(worst, tol, "\(cell) \(backward ? "backward" : "forward"): a wrong W_hh pack went unnoticed (worst ‖Δg‖/‖g‖ \(worst))")
            }
        }
    }

    /// The portable kernel is within the bf16 tolerance of float32 and, when the CPU has AVX512_BF16,
    /// gives its gradients bit for bit.
    func testPortableKernelAgrees() throws {
        try WorkerPool.configure(threads: 2)
        let cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 40, embed: 16, dropout: 0, vocabSize: 37)
        BF16GEMMKernel.forced = .portable
        let (g32, gp, _, _) = gradients(pair(cfg))
        for (t, e) in errors(pair(cfg).fp32, gp, g32) { XCTAssertLessThan(e, Self.tolerance(layers: 2), "portable \(t)") }
        guard BF16GEMMKernel.cpuHasAVX512BF16 else { return }
        BF16GEMMKernel.forced = .avx512bf16
        let (_, ga, _, _) = gradients(pair(cfg))
        // the same bits: products of bf16 values are exact in float32 and both add them in the same
        // order (VDPBF16PS alone would flush a subnormal product or partial sum; none occurs here)
        XCTAssertTrue(ga == gp, "portable and AVX512_BF16 gradients differ")
    }

    // MARK: - Training runs

    func trainer(_ cell: CellKind, precision: Precision, iters: Int, dir: String, corpus: Corpus, text: String) throws -> Trainer {
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = iters; t.evalEvery = 1000; t.threads = 1; t.trainFrac = 0.9; t.valFrac = 0.1
        t.lr = 5e-3
        t.stepPrecision = precision
        let cfg = ModelConfig(cell: cell, layers: 2, hidden: 32, embed: cell == .gru ? 8 : 0, dropout: 0.1,
                              vocabSize: corpus.vocabulary.count)
        let info = CorpusInfo(name: "s", path: dir + "/s.txt", bytes: text.utf8.count, tokens: corpus.count)
        return try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: t, runDir: dir + "/run")
    }

    func losses(_ tr: Trainer) throws -> [Double] {
        var l: [Double] = []
        _ = try tr.run { if case let .iteration(_, _, _, loss, _, _, _) = $0 { l.append(loss) } }
        return l
    }

    /// Same seed, precision and threads ⇒ the same bits; the loss falls as float32's does (mean of
    /// the last 10 of 60 iterations within 3%); a resume continues bit for bit; the config records bf16.
    func testBF16RunsAreDeterministicResumeExactlyAndLearnLikeFP32() throws {
        try WorkerPool.configure(threads: 1)
        let text = syntheticCorpusText()
        let corpus = try Corpus(bytes: Array(text.utf8), name: "s")
        for cell in CellKind.allCases {
            let root = tempDir("bf16run")
            defer { try? FileManager.default.removeItem(atPath: root) }
            let a = try trainer(cell, precision: .bf16, iters: 60, dir: root + "/a", corpus: corpus, text: text)
            let b = try trainer(cell, precision: .bf16, iters: 60, dir: root + "/b", corpus: corpus, text: text)
            let f = try trainer(cell, precision: .fp32, iters: 60, dir: root + "/f", corpus: corpus, text: text)
            XCTAssertTrue(a.model.trainsInBF16); XCTAssertFalse(f.model.trainsInBF16)
            let la = try losses(a), lb = try losses(b), lf = try losses(f)
            XCTAssertEqual(la.map(\.bitPattern), lb.map(\.bitPattern), "\(cell): same seed, different bf16 run")
            XCTAssertTrue(memcmp(a.model.params.ptr, b.model.params.ptr, a.model.layout.count * 4) == 0, "\(cell)")
            XCTAssertNotEqual(la.map(\.bitPattern), lf.map(\.bitPattern), "\(cell): bf16 ran the float32 path")
            func tail(_ l: [Double]) -> Double { l.suffix(10).reduce(0, +) / 10 }
            XCTAssertLessThan(tail(la), la[0] - 0.3, "\(cell): bf16 loss did not fall (\(la[0]) → \(tail(la)))")
            XCTAssertLessThan(abs(tail(la) - tail(lf)) / tail(lf), 0.03, "\(cell): bf16 \(tail(la)) vs fp32 \(tail(lf))")

            // the checkpoint records bf16; a resume from iteration 30 reproduces iterations 31…60
            let c = try trainer(cell, precision: .bf16, iters: 30, dir: root + "/c", corpus: corpus, text: text)
            let lc = try losses(c)
            let loaded = try Checkpoint.load(path: c.latestPath)
            XCTAssertEqual(loaded.meta.train.stepPrecision, .bf16)
            let r = try Trainer(resume: loaded, corpus: corpus, maxIters: 60, epochs: nil)
            XCTAssertTrue(r.model.trainsInBF16, "\(cell): --resume lost bf16")
            let lr = try losses(r)
            XCTAssertEqual((lc + lr).map(\.bitPattern), la.map(\.bitPattern), "\(cell): bf16 resume is not bit-exact")
            XCTAssertTrue(memcmp(r.model.params.ptr, a.model.params.ptr, a.model.layout.count * 4) == 0, "\(cell)")
        }
    }

    /// A group of one (`SoloGroup`: every data-parallel branch of the trainer, the gathered state and
    /// the weights hash) in bf16 is the single-process bf16 run bit for bit; the N = 2 runs under
    /// mpirun are scripts/mpi-check.sh's section 7.
    func testDataParallelBranchesInBF16() throws {
        try WorkerPool.configure(threads: 1)
        let text = syntheticCorpusText()
        let corpus = try Corpus(bytes: Array(text.utf8), name: "s")
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = 12; t.evalEvery = 5; t.threads = 1; t.trainFrac = 0.9; t.valFrac = 0.1
        t.stepPrecision = .bf16
        let cfg = ModelConfig(cell: .gru, layers: 2, hidden: 16, embed: 4, dropout: 0.1, vocabSize: corpus.vocabulary.count)
        var params: [[UInt32]] = []
        for group in [nil, SoloGroup()] as [SoloGroup?] {
            let dir = tempDir("bf16dp")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let info = CorpusInfo(name: "s", path: dir + "/s.txt", bytes: text.utf8.count, tokens: corpus.count)
            let tr = try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: t, runDir: dir + "/run", reducer: group ?? LocalReducer())
            try tr.checkAgreement()
            _ = try tr.run { _ in }
            XCTAssertTrue(tr.model.trainsInBF16)
            if let group { XCTAssertEqual(group.calls, 12) }
            params.append(tr.model.params.toArray().map(\.bitPattern))
        }
        XCTAssertEqual(params[0], params[1])
    }

    /// Nothing is allocated by a bf16 training step after the first (which packs the weights into
    /// buffers made at the switch): full and adaptive softmax, one-hot and embedded input, dropout,
    /// cold starts.
    /// Counts with scripts/malloc-count.c preloaded (.ci/run), on one thread so that every part runs here.
    func testBF16StepAllocatesNothing() throws {
        typealias Fn = @convention(c) () -> UInt
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "charrnn_malloc_count_thread") else {
            throw XCTSkip("run with LD_PRELOAD of scripts/malloc-count.c to count allocations")
        }
        let count = unsafeBitCast(sym, to: Fn.self)
        try WorkerPool.configure(threads: 1)
        let V = 37, (T, B) = (8, 6)
        for adaptive in [false, true] {
            for (cell, embed) in [(CellKind.lstm, 0), (.gru, 12), (.rnn, 0)] {
                var cfg = ModelConfig(cell: cell, layers: 2, hidden: 24, embed: embed, dropout: 0.2, vocabSize: V)
                if adaptive { cfg.adaptive = AdaptiveSoftmaxConfig.choose(counts: (0..<V).map { 500 / ($0 + 1) }, hidden: 24, manual: [8, 20]) }
                let model = CharRNNModel(config: cfg, maxT: T, maxB: B)
                var rng = Xoshiro256(seed: 3)
                model.initialize(rng: &rng)
                // cold starts every 2 steps: some streams restart at every one
                let step = TrainingStep(model: model, optimizer: Optimizer(kind: .adam, count: model.layout.count),
                                        reducer: LocalReducer(), batch: B, seq: T, precision: .bf16, coldStartEvery: 2)
                let state = RecurrentState(config: cfg, batch: B)
                func one(_ it: Int) {
                    _ = step.run(iteration: it, state: state, rng: &rng, lr: 1e-2, clipMode: .norm, clip: 5, stopRequested: { false }) { x, y, _ in
                        for i in 0..<(T * B) { x[i] = Int32((i * 7 + it) % V); y[i] = Int32((i * 5 + 3 + it) % V) }
                    }
                }
                for it in 1...2 { one(it) }
                let start = count()
                for it in 3...8 { one(it) }
                XCTAssertEqual(count() - start, 0, "\(cell) embed \(embed) adaptive \(adaptive): allocations in bf16 steps")
            }
        }
    }

    /// The fused update of a process alone (`updateAndPackBF16`: each block of 32 rows updated, then
    /// rounded into both copies) leaves the weights, the moments and every packed word as the
    /// optimizer's step followed by `packBF16Weights` does: each optimizer, one and two threads,
    /// full and adaptive softmax, one-hot and embedded input, two steps (Adam's step count), with
    /// each kernel this machine has (the portable path packs block by block in Swift).
    func testFusedUpdateHasTheBitsOfStepThenPack() throws {
        let V = 37
        for kernel in BF16GEMMKernel.cpuHasAVX512BF16 ? [BF16GEMMKernel.portable, .avx512bf16] : [.portable] {
            BF16GEMMKernel.forced = kernel
            for threads in [1, 2] {
                try WorkerPool.configure(threads: threads)
                for kind in OptimizerKind.allCases {
                    for (adaptive, cell, embed) in [(false, CellKind.lstm, 0), (true, .gru, 12), (false, .rnn, 16)] {
                        var cfg = ModelConfig(cell: cell, layers: 2, hidden: 40, embed: embed, dropout: 0, vocabSize: V)
                        if adaptive { cfg.adaptive = AdaptiveSoftmaxConfig.choose(counts: (0..<V).map { 900 / ($0 + 1) }, hidden: 40, manual: [8, 20]) }
                        let p = pair(cfg)
                        p.fp32.enableBF16Training()
                        let n = p.fp32.layout.count
                        let (split, fused) = (Optimizer(kind: kind, count: n), Optimizer(kind: kind, count: n))
                        var r = Xoshiro256(seed: 9)
                        for _ in 0..<2 {
                            let g = (0..<n).map { _ in (r.nextFloat() - 0.5) * 0.1 }
                            p.fp32.grads.ptr.update(from: g, count: n); p.bf16.grads.ptr.update(from: g, count: n)
                            split.step(params: p.fp32.params.ptr, grads: p.fp32.grads.ptr, lr: 1e-2)
                            p.fp32.packBF16Weights()
                            p.bf16.updateAndPackBF16(optimizer: fused, lr: 1e-2)
                        }
                        let name = "\(kind) \(cell) embed \(embed) adaptive \(adaptive), \(threads) threads, \(kernel)"
                        XCTAssertEqual(p.bf16.params.toArray().map(\.bitPattern), p.fp32.params.toArray().map(\.bitPattern), name)
                        for (a, b) in zip(fused.moments, split.moments) { XCTAssertEqual(a.toArray().map(\.bitPattern), b.toArray().map(\.bitPattern), name) }
                        let (mf, ms) = (p.bf16.bf16!.matrices, p.fp32.bf16!.matrices)
                        XCTAssertEqual(mf.count, ms.count)
                        XCTAssertEqual(mf.count, 2 * cfg.layers - (embed == 0 ? 1 : 0) + (adaptive ? 1 + 2 * cfg.adaptive!.cutoffs.count : 1), name)
                        for (a, b) in zip(mf, ms) {
                            for (x, y) in [(a.wT, b.wT), (a.w, b.w)] {
                                XCTAssertEqual(x.k, y.k); XCTAssertEqual(x.n, y.n)
                                let words = (y.k + 1) / 2 * y.panels * 32
                                XCTAssertEqual(Array(UnsafeBufferPointer(start: x.words, count: words)),
                                               Array(UnsafeBufferPointer(start: y.words, count: words)), "\(name): \(a.rows)×\(a.cols)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// fp32 is not recorded (an fp32 checkpoint's header is what it was before --precision); a header
    /// without the key reads as fp32; bf16 is recorded and read back.
    func testPrecisionInTheRecordedConfig() throws {
        var t = TrainConfig()
        let enc = JSONEncoder()
        XCTAssertFalse(String(decoding: try enc.encode(t), as: UTF8.self).contains("precision"))
        t.stepPrecision = .fp32
        XCTAssertNil(t.precision)
        XCTAssertFalse(String(decoding: try enc.encode(t), as: UTF8.self).contains("precision"))
        t.stepPrecision = .bf16
        let json = try enc.encode(t)
        XCTAssertTrue(String(decoding: json, as: UTF8.self).contains("\"precision\":\"bf16\""))
        XCTAssertEqual(try JSONDecoder().decode(TrainConfig.self, from: json).stepPrecision, .bf16)
        XCTAssertEqual(try JSONDecoder().decode(TrainConfig.self, from: try enc.encode(TrainConfig())).stepPrecision, .fp32)
    }

    /// The adaptive softmax's head and tails in bf16: its gradients too within the tolerance (and
    /// far inside), one-hot and embedded input.
    func testAdaptiveSoftmaxGradientsMatchFP32() throws {
        try WorkerPool.configure(threads: 2)
        let V = 37
        let counts = (0..<V).map { 1000 / ($0 + 1) }
        for embed in [0, 16] {
            var cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 40, embed: embed, dropout: 0, vocabSize: V)
            cfg.adaptive = AdaptiveSoftmaxConfig.choose(counts: counts, hidden: 40, divValue: 2, manual: [8, 20])
            let p = pair(cfg, T: 8, B: 12)
            XCTAssertNotNil(p.bf16.bf16?.adaptive)
            let (g32, g16, l32, l16) = gradients(p)
            XCTAssertFalse(g16 == g32)
            XCTAssertLessThan(abs(l16 - l32) / l32, Double(cfg.layers + 1) * 2 * Self.u)
            for (t, e) in errors(p.fp32, g16, g32) {
                XCTAssertLessThan(e, Self.tolerance(layers: 2), "adaptive embed \(embed) \(t): \(e)")
                XCTAssertLessThan(e, 4 * Self.u, "adaptive embed \(embed) \(t): \(e), expected ≈ u")
            }
        }
    }
}
