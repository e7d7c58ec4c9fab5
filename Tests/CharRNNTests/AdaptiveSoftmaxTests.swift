// AdaptiveSoftmaxTests.swift — the adaptive softmax against a naive Double reference:
// 1. the reference's analytic gradients by central differences (eps 1e-6, rel. error ≤ 1e-6);
// 2. the Float layer's loss, parameter gradients and dx against the reference (≤ 1e-4 relative, floor 1e-3);
// 3. the exact distribution: every row sums to 1, equals the reference's log p, and its NLL equals the
//    training loss; a model with the adaptive decoder trains, checkpoints under PyTorch's names and samples.

import Foundation
import XCTest
@testable import CharRNN

/// Naive Double adaptive softmax, straight from the equations in Layers/AdaptiveSoftmax.swift.
struct RefAdaptive {
    let H: Int, V: Int, S: Int, C: Int
    let bounds: [Int], widths: [Int], order: [Int]
    var Wh: [Double], bh: [Double]          // (K, H), (K)
    var W0: [[Double]], W1: [[Double]]      // C × (w_i, H), C × (n_i, w_i)
    var K: Int { S + C }

    func rank(of id: Int) -> Int { order.firstIndex(of: id)! }

    static func logSoftmax(_ z: [Double]) -> [Double] {
        let m = z.max()!
        let lse = m + log(z.reduce(0) { $0 + exp($1 - m) })
        return z.map { $0 - lse }
    }

    func head(_ x: ArraySlice<Double>) -> [Double] {
        var z = bh
        for k in 0..<K { for h in 0..<H { z[k] += Wh[k * H + h] * x[x.startIndex + h] } }
        return z
    }

    func tail(_ i: Int, _ x: ArraySlice<Double>) -> (P: [Double], u: [Double]) {
        let w = widths[i], n = bounds[i + 1] - bounds[i]
        var P = [Double](repeating: 0, count: w), u = [Double](repeating: 0, count: n)
        for a in 0..<w { for h in 0..<H { P[a] += W0[i][a * H + h] * x[x.startIndex + h] } }
        for j in 0..<n { for a in 0..<w { u[j] += W1[i][j * w + a] * P[a] } }
        return (P, u)
    }

    /// log p(v | x) for all ids v.
    func logProbs(_ x: ArraySlice<Double>) -> [Double] {
        let lh = Self.logSoftmax(head(x))
        var out = [Double](repeating: 0, count: V)
        for r in 0..<S { out[order[r]] = lh[r] }
        for i in 0..<C {
            let lu = Self.logSoftmax(tail(i, x).u)
            for j in 0..<lu.count { out[order[bounds[i] + j]] = lh[S + i] + lu[j] }
        }
        return out
    }

    func loss(_ X: [Double], _ y: [Int]) -> Double {
        let N = y.count
        return (0..<N).reduce(0) { $0 - logProbs(X[($1 * H)..<(($1 + 1) * H)])[y[$1]] } / Double(N)
    }

    /// Analytic gradients of `loss`: (dWh, dbh, dW0, dW1, dX).
    func gradients(_ X: [Double], _ y: [Int]) -> (dWh: [Double], dbh: [Double], dW0: [[Double]], dW1: [[Double]], dX: [Double]) {
        let N = y.count
        var dWh = [Double](repeating: 0, count: K * H), dbh = [Double](repeating: 0, count: K)
        var dW0 = W0.map { [Double](repeating: 0, count: $0.count) }, dW1 = W1.map { [Double](repeating: 0, count: $0.count) }
        var dX = [Double](repeating: 0, count: N * H)
        for r in 0..<N {
            let x = X[(r * H)..<((r + 1) * H)]
            let rk = rank(of: y[r])
            let cluster = rk < S ? -1 : (0..<C).first { rk < bounds[$0 + 1] }!
            let hk = rk < S ? rk : S + cluster
            // head: dz = (softmax(z) − e_hk)/N
            var dz = Self.logSoftmax(head(x)).map { exp($0) / Double(N) }
            dz[hk] -= 1 / Double(N)
            for k in 0..<K {
                dbh[k] += dz[k]
                for h in 0..<H { dWh[k * H + h] += dz[k] * x[x.startIndex + h]; dX[r * H + h] += dz[k] * Wh[k * H + h] }
            }
            guard cluster >= 0 else { continue }
            let i = cluster, w = widths[i]
            let (P, u) = tail(i, x)
            var du = Self.logSoftmax(u).map { exp($0) / Double(N) }
            du[rk - bounds[i]] -= 1 / Double(N)
            var dP = [Double](repeating: 0, count: w)
            for j in 0..<u.count { for a in 0..<w { dW1[i][j * w + a] += du[j] * P[a]; dP[a] += du[j] * W1[i][j * w + a] } }
            for a in 0..<w { for h in 0..<H { dW0[i][a * H + h] += dP[a] * x[x.startIndex + h]; dX[r * H + h] += dP[a] * W0[i][a * H + h] } }
        }
        return (dWh, dbh, dW0, dW1, dX)
    }
}

private func relErr(_ a: Double, _ b: Double, floor: Double) -> Double { abs(a - b) / max(floor, abs(a) + abs(b)) }

final class AdaptiveSoftmaxTests: XCTestCase {
    let H = 8, V = 11
    // Counts give a non-identity frequency order; cutoffs [4, 8] → head of 4 + 2 clusters; div 2 → widths 4, 2.
    let counts = [3, 50, 7, 9, 40, 1, 2, 30, 6, 8, 5]

    func makeConfig() -> AdaptiveSoftmaxConfig {
        AdaptiveSoftmaxConfig.choose(counts: counts, hidden: H, divValue: 2, manual: [4, 8])
    }

    func makeReference(_ cfg: AdaptiveSoftmaxConfig, rng: inout Xoshiro256) -> RefAdaptive {
        func rand(_ n: Int) -> [Double] { (0..<n).map { _ in rng.nextDouble() * 2 - 1 } }
        let b = cfg.bounds, C = cfg.clusters, S = cfg.headSize
        let widths = (0..<C).map { cfg.tailWidth($0, hidden: H) }
        return RefAdaptive(H: H, V: V, S: S, C: C, bounds: b, widths: widths, order: cfg.order,
                           Wh: rand((S + C) * H), bh: rand(S + C),
                           W0: (0..<C).map { rand(widths[$0] * H) }, W1: (0..<C).map { rand((b[$0 + 1] - b[$0]) * widths[$0]) })
    }

    /// Targets: two in the head, two in each tail.
    func targets(_ cfg: AdaptiveSoftmaxConfig) -> [Int] {
        [cfg.order[0], cfg.order[3], cfg.order[4], cfg.order[7], cfg.order[8], cfg.order[10], cfg.order[1]]
    }

    func testConfigOrderAndWidths() {
        let cfg = makeConfig()
        XCTAssertEqual(cfg.order, [1, 4, 7, 3, 9, 2, 8, 10, 0, 6, 5])   // by count, descending
        XCTAssertEqual(cfg.bounds, [4, 8, 11])
        XCTAssertEqual((0..<2).map { cfg.tailWidth($0, hidden: H) }, [4, 2])
        XCTAssertNil(cfg.problem)
        XCTAssertNotNil(AdaptiveSoftmaxConfig(cutoffs: [4, 4], order: cfg.order).problem)
        XCTAssertNotNil(AdaptiveSoftmaxConfig(cutoffs: [11], order: cfg.order).problem)
        // automatic cutoffs on a Zipf-like distribution: the head covers 80–95% of the tokens
        let zipf = (1...3000).map { 1_000_000 / $0 }
        let auto = AdaptiveSoftmaxConfig.choose(counts: zipf, hidden: 512)
        let total = zipf.reduce(0, +), head = auto.order.prefix(auto.headSize).reduce(0) { $0 + zipf[$1] }
        XCTAssertGreaterThanOrEqual(Double(head) / Double(total), 0.80)
        XCTAssertLessThanOrEqual(Double(head) / Double(total), 0.96)
        XCTAssertNil(auto.problem)
    }

    func testReferenceGradientsByCentralDifferences() {
        var rng = Xoshiro256(seed: 11)
        let cfg = makeConfig()
        var ref = makeReference(cfg, rng: &rng)
        let y = targets(cfg)
        var X = (0..<(y.count * H)).map { _ in rng.nextDouble() * 2 - 1 }
        let g = ref.gradients(X, y)
        let eps = 1e-6
        var worst = 0.0
        func check(_ analytic: Double, _ plus: Double, _ minus: Double) {
            worst = max(worst, relErr(analytic, (plus - minus) / (2 * eps), floor: 1e-8))
        }
        for k in 0..<ref.Wh.count {
            let v = ref.Wh[k]; ref.Wh[k] = v + eps; let lp = ref.loss(X, y); ref.Wh[k] = v - eps; let lm = ref.loss(X, y); ref.Wh[k] = v
            check(g.dWh[k], lp, lm)
        }
        for k in 0..<ref.bh.count {
            let v = ref.bh[k]; ref.bh[k] = v + eps; let lp = ref.loss(X, y); ref.bh[k] = v - eps; let lm = ref.loss(X, y); ref.bh[k] = v
            check(g.dbh[k], lp, lm)
        }
        for i in 0..<ref.C {
            for k in 0..<ref.W0[i].count {
                let v = ref.W0[i][k]; ref.W0[i][k] = v + eps; let lp = ref.loss(X, y); ref.W0[i][k] = v - eps; let lm = ref.loss(X, y); ref.W0[i][k] = v
                check(g.dW0[i][k], lp, lm)
            }
            for k in 0..<ref.W1[i].count {
                let v = ref.W1[i][k]; ref.W1[i][k] = v + eps; let lp = ref.loss(X, y); ref.W1[i][k] = v - eps; let lm = ref.loss(X, y); ref.W1[i][k] = v
                check(g.dW1[i][k], lp, lm)
            }
        }
        for k in 0..<X.count {
            let v = X[k]; X[k] = v + eps; let lp = ref.loss(X, y); X[k] = v - eps; let lm = ref.loss(X, y); X[k] = v
            check(g.dX[k], lp, lm)
        }
        XCTAssertLessThanOrEqual(worst, 1e-6, "worst relative error of the Double reference's gradients")
    }

    /// The Float layer on the reference's weights.
    struct FloatSetup {
        let layer: AdaptiveSoftmaxLayer
        let ws: AdaptiveSoftmaxWorkspace
        let params: Storage, grads: Storage
    }

    func makeFloat(_ cfg: AdaptiveSoftmaxConfig, _ ref: RefAdaptive, rows: Int) -> FloatSetup {
        let layout = ParameterLayout(NetworkSpec.adaptiveTensors(cfg, hidden: H))
        let layer = AdaptiveSoftmaxLayer(config: cfg, hidden: H, layout: layout)
        let params = Storage(count: layout.count), grads = Storage(count: layout.count)
        func put(_ v: TensorView, _ a: [Double]) { XCTAssertEqual(v.count, a.count); for k in 0..<a.count { params.ptr[v.offset + k] = Float(a[k]) } }
        put(layer.head.weight, ref.Wh); put(layer.head.bias, ref.bh)
        for i in 0..<ref.C { put(layer.tails[i].proj, ref.W0[i]); put(layer.tails[i].out, ref.W1[i]) }
        return FloatSetup(layer: layer, ws: AdaptiveSoftmaxWorkspace(layer: layer, maxRows: rows, blockRows: 3), params: params, grads: grads)
    }

    func testFloatLayerMatchesReference() {
        var rng = Xoshiro256(seed: 5)
        let cfg = makeConfig()
        let ref = makeReference(cfg, rng: &rng)
        let y = targets(cfg), N = y.count
        let X = (0..<(N * H)).map { _ in rng.nextDouble() * 2 - 1 }
        let g = ref.gradients(X, y)
        let f = makeFloat(cfg, ref, rows: N)
        let x = X.map(Float.init), yi = y.map(Int32.init)
        let head = Storage(count: N * (cfg.headSize + cfg.clusters)), ones = Storage(count: N), dx = Storage(count: N * H)
        for k in 0..<N { ones.ptr[k] = 1 }
        let p = UnsafePointer(f.params.ptr)
        let loss = x.withUnsafeBufferPointer { xb in
            yi.withUnsafeBufferPointer { yb -> Double in
                f.layer.head.forward(x: xb.baseAddress!, rows: N, p: p, out: head.ptr)
                let l = f.layer.trainLoss(x: xb.baseAddress!, targets: yb.baseAddress!, rows: N, head: head.ptr, p: p, g: f.grads.ptr, ws: f.ws)
                f.layer.head.backward(x: xb.baseAddress!, dout: head.ptr, rows: N, p: p, g: f.grads.ptr, ones: ones.ptr, dx: dx.ptr)
                return l
            }
        }
        XCTAssertEqual(loss, ref.loss(X, y), accuracy: 1e-5)
        var worst = 0.0
        func cmp(_ v: TensorView, _ a: [Double]) { for k in 0..<a.count { worst = max(worst, relErr(Double(f.grads.ptr[v.offset + k]), a[k], floor: 1e-3)) } }
        cmp(f.layer.head.weight, g.dWh); cmp(f.layer.head.bias, g.dbh)
        for i in 0..<ref.C { cmp(f.layer.tails[i].proj, g.dW0[i]); cmp(f.layer.tails[i].out, g.dW1[i]) }
        for k in 0..<(N * H) { worst = max(worst, relErr(Double(dx.ptr[k] + f.ws.dxTail.ptr[k]), g.dX[k], floor: 1e-3)) }
        XCTAssertLessThanOrEqual(worst, 1e-4, "Float adaptive softmax vs Double reference")
    }

    func testFullDistributionIsExactAndNormalized() {
        var rng = Xoshiro256(seed: 8)
        let cfg = makeConfig()
        let ref = makeReference(cfg, rng: &rng)
        let y = targets(cfg), N = y.count
        let X = (0..<(N * H)).map { _ in rng.nextDouble() * 4 - 2 }
        let f = makeFloat(cfg, ref, rows: N)
        let x = X.map(Float.init), yi = y.map(Int32.init)
        let out = Storage(count: V)
        let head = Storage(count: N * (cfg.headSize + cfg.clusters))
        let p = UnsafePointer(f.params.ptr)
        x.withUnsafeBufferPointer { xb in
            for r in 0..<N {
                f.layer.fullLogProbs(x: xb.baseAddress! + r * H, rows: 1, headLogits: nil, p: p, out: out.ptr, ws: f.ws)
                let lp = (0..<V).map { Double(out.ptr[$0]) }
                XCTAssertEqual(lp.reduce(0) { $0 + exp($1) }, 1, accuracy: 1e-5, "row \(r) sums to 1")
                let want = ref.logProbs(X[(r * H)..<((r + 1) * H)])
                for v in 0..<V { XCTAssertEqual(lp[v], want[v], accuracy: 1e-4, "row \(r) id \(v)") }
            }
            // exact NLL over blocks of 3 rows == reference loss == training loss
            f.layer.head.forward(x: xb.baseAddress!, rows: N, p: p, out: head.ptr)
            let exact = yi.withUnsafeBufferPointer {
                f.layer.exactLoss(x: xb.baseAddress!, targets: $0.baseAddress!, rows: N, head: head.ptr, p: p, ws: f.ws)
            }
            XCTAssertEqual(exact, ref.loss(X, y), accuracy: 1e-5)
        }
    }

    func testModelWithAdaptiveDecoderTrainsCheckpointsAndSamples() throws {
        let text = syntheticCorpusText()
        let corpus = try Corpus(bytes: Array(text.utf8), name: "synthetic")
        let counts = CorpusLoader.countTokens(corpus.store, V: corpus.vocabulary.count)
        var cfg = ModelConfig(cell: .lstm, layers: 1, hidden: 16, embed: 8, vocabSize: corpus.vocabulary.count)
        cfg.adaptive = AdaptiveSoftmaxConfig.choose(counts: counts, hidden: 16)
        XCTAssertNil(cfg.problem)
        let d = tempDir("adaptive")
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = 60; t.evalEvery = 30; t.lr = 1e-2; t.threads = 1
        let tr = try Trainer(corpus: corpus, corpusInfo: CorpusInfo(name: "s", path: d + "/s.txt", bytes: 0, tokens: corpus.count),
                             model: cfg, train: t, runDir: d + "/run")
        XCTAssertEqual(tr.model.layout.count >= cfg.parameterCount, true)
        let first = tr.validate()
        let summary = try tr.run { _ in }
        XCTAssertLessThan(summary.lastValLoss!, first - 0.3, "validation loss falls")
        // the training loss (head + tail) and the exact loss agree on the same minibatch and state
        let x = IntStorage(count: 128), y = IntStorage(count: 128)
        tr.batches.fill(.train, index: 0, corpus: corpus, x: x.ptr, y: y.ptr)
        let s1 = RecurrentState(config: cfg, batch: 8), s2 = RecurrentState(config: cfg, batch: 8)
        var rng = Xoshiro256(seed: 1)
        let trainLoss = tr.model.trainStep(x: x.ptr, y: y.ptr, T: 16, B: 8, state: s1, rng: &rng)
        let exact = tr.model.evaluate(x: x.ptr, y: y.ptr, T: 16, B: 8, state: s2)
        XCTAssertEqual(trainLoss, exact, accuracy: 1e-4)
        // checkpoint names mirror nn.AdaptiveLogSoftmaxWithLoss; it loads back and samples
        let loaded = try Checkpoint.load(path: tr.latestPath)
        let names = Set(loaded.file.tensors.keys)
        for n in ["decoder.head.weight", "decoder.head.bias", "decoder.tail.0.0.weight", "decoder.tail.0.1.weight"] {
            XCTAssertTrue(names.contains(n), n)
        }
        XCTAssertFalse(names.contains("decoder.weight"))
        XCTAssertEqual(loaded.meta.model, cfg)
        XCTAssertTrue(loaded.hasOptimizerState)
        let sampler = try Sampler(checkpoint: loaded, options: SamplingOptions(temperature: 1), seed: 3)
        sampler.start()
        let lp = sampler.currentLogProbs().map { Double($0) }
        XCTAssertEqual(lp.reduce(0) { $0 + exp($1) }, 1, accuracy: 1e-4, "sampler logits are exact log-probs")
        for _ in 0..<50 { let tok = sampler.next(); XCTAssertTrue(tok >= 0 && tok < corpus.vocabulary.count) }
    }
}
