// DistributedTests.swift — the data-parallel path without MPI: stream blocks, the weights hash, and a
// one-process group (which runs every data-parallel branch of Trainer: block fill, weighted sum,
// agreed stop, gathered state, hash check) giving exactly the single-process run. The N=2 runs under
// mpirun are checked by scripts/mpi-check.sh (.ci/run).

import Foundation
import XCTest
@testable import CharRNN

/// A group of one: every collective is the identity.
final class SoloGroup: GradientReducer, @unchecked Sendable {
    var rank: Int { 0 }
    var size: Int { 1 }
    var calls = 0
    func reduceScatterInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int) { calls += 1 }
    func allgatherChunks(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    func gather(_ values: [Double]) -> [Double] { values }
    func gatherBytes(_ bytes: [UInt8]) -> [[UInt8]] { [bytes] }
    func gatherBlocks(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, counts: [Int]) {
        full.update(from: local, count: counts[0])
    }
}

/// Rank `rank` of `size`, for the partition only.
final class PartitionOnly: GradientReducer, @unchecked Sendable {
    let rank: Int, size: Int
    init(rank: Int, size: Int) { self.rank = rank; self.size = size }
    func reduceScatterInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    func allgatherChunks(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    func gather(_ values: [Double]) -> [Double] { values }
    func gatherBytes(_ bytes: [UInt8]) -> [[UInt8]] { [bytes] }
    func gatherBlocks(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, counts: [Int]) {}
}

final class DistributedTests: XCTestCase {
    func testStreamBlocksPartitionTheBatch() {
        for (B, N) in [(50, 2), (9, 2), (7, 3), (5, 5), (64, 16)] {
            let blocks = (0..<N).map { PartitionOnly(rank: $0, size: N).streams(of: B) }
            XCTAssertEqual(blocks.first?.lowerBound, 0)
            XCTAssertEqual(blocks.last?.upperBound, B)
            for (a, b) in zip(blocks, blocks.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            XCTAssertTrue(blocks.allSatisfy { !$0.isEmpty && abs($0.count - B / N) <= 1 }, "\(B) \(N) \(blocks)")
        }
        XCTAssertEqual(PartitionOnly(rank: 0, size: 2).streams(of: 9), 0..<4)
    }

    func testChunksPartitionTheBuffer() {
        for (count, N) in [(10, 2), (11, 2), (7, 3), (5, 4), (3, 5), (3_320_385, 2), (1, 1)] {
            let chunks = (0..<N).map { PartitionOnly(rank: $0, size: N).chunk(of: count) }
            XCTAssertEqual(chunks.first?.lowerBound, 0)
            XCTAssertEqual(chunks.last?.upperBound, count, "\(count) \(N) \(chunks)")
            for (a, b) in zip(chunks, chunks.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            XCTAssertTrue(chunks.allSatisfy { $0.count <= (count + N - 1) / N })
        }
    }

    /// The sharded update: N optimizers in the same state, each clipping and stepping only its chunk,
    /// put together give the bits of one optimizer stepping everything (every kind, both clip modes,
    /// chunks that cut vectors in the middle).
    func testShardedStepEqualsTheWholeStep() {
        let n = 1_000 + 13
        for kind in OptimizerKind.allCases {
            for mode in ClipMode.allCases {
                for N in [2, 3] {
                    var rng = Xoshiro256(seed: 7)
                    let p0 = (0..<n).map { _ in (rng.nextFloat() - 0.5) }
                    let whole = Optimizer(kind: kind, count: n)
                    let shards = (0..<N).map { _ in Optimizer(kind: kind, count: n) }
                    let wp = Storage(count: n), sp = (0..<N).map { _ in Storage(count: n) }
                    wp.ptr.update(from: p0, count: n)
                    for s in sp { s.ptr.update(from: p0, count: n) }
                    for step in 0..<3 {
                        let g = (0..<n).map { _ in (rng.nextFloat() - 0.5) * Float(step + 1) }
                        let wg = Storage(count: n)
                        wg.ptr.update(from: g, count: n)
                        let norm = GradientClip.norm(wg.ptr, count: n)
                        whole.clipAndStep(params: wp.ptr, grads: wg.ptr, norm: norm, mode: mode, clip: 1, lr: 0.01, range: nil)
                        for r in 0..<N {
                            let sg = Storage(count: n)
                            sg.ptr.update(from: g, count: n)
                            let mine = PartitionOnly(rank: r, size: N).chunk(of: n)
                            shards[r].clipAndStep(params: sp[r].ptr, grads: sg.ptr, norm: norm, mode: mode, clip: 1, lr: 0.01, range: mine)
                            // the allgather: every rank's chunk to all
                            for q in 0..<N { (sp[q].ptr + mine.lowerBound).update(from: sp[r].ptr + mine.lowerBound, count: mine.count) }
                        }
                    }
                    for r in 0..<N {
                        XCTAssertEqual(weightsHash(sp[r].ptr, count: n), weightsHash(wp.ptr, count: n), "\(kind) \(mode) N=\(N) rank \(r)")
                        let mine = PartitionOnly(rank: r, size: N).chunk(of: n)
                        for (a, b) in zip(shards[r].moments, whole.moments) {
                            XCTAssertTrue(mine.allSatisfy { a.ptr[$0].bitPattern == b.ptr[$0].bitPattern }, "\(kind) moments of rank \(r)'s chunk")
                        }
                    }
                }
            }
        }
    }

    func testWeightsHashSeesEveryFloat() {
        let s = Storage(count: 7)
        for i in 0..<7 { s.ptr[i] = Float(i) }
        let h = weightsHash(s.ptr, count: 7)
        XCTAssertEqual(h, weightsHash(s.ptr, count: 7))
        for i in 0..<7 {
            s.ptr[i] = s.ptr[i].nextUp
            XCTAssertNotEqual(weightsHash(s.ptr, count: 7), h, "float \(i)")
            s.ptr[i] = Float(i)
        }
    }

    func testTooFewStreamsIsRefused() throws {
        let dir = tempDir("dp-few")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let corpus = try Corpus(bytes: Array(syntheticCorpusText().utf8), name: "s")
        var t = TrainConfig(); t.batch = 2; t.seq = 8; t.maxIters = 2; t.threads = 1
        let cfg = ModelConfig(cell: .gru, layers: 1, hidden: 8, embed: 0, dropout: 0, vocabSize: corpus.vocabulary.count)
        XCTAssertThrowsError(try Trainer(corpus: corpus, corpusInfo: CorpusInfo(name: "s", path: dir, bytes: 0, tokens: corpus.count),
                                         model: cfg, train: t, runDir: dir + "/run", reducer: PartitionOnly(rank: 0, size: 3))) {
            XCTAssertEqual($0 as? DistributedError, .tooFewStreams(batch: 2, ranks: 3))
        }
    }

    /// The data-parallel branches with one process reproduce the single-process run bit for bit.
    func testGroupOfOneEqualsTheSingleProcessRun() throws {
        try WorkerPool.configure(threads: 1)
        let text = syntheticCorpusText()
        let corpus = try Corpus(bytes: Array(text.utf8), name: "synthetic")
        var t = TrainConfig()
        t.seq = 16; t.batch = 8; t.maxIters = 25; t.evalEvery = 10; t.lr = 3e-2; t.threads = 1; t.trainFrac = 0.9; t.valFrac = 0.1
        let cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 16, embed: 4, dropout: 0, vocabSize: corpus.vocabulary.count)
        var runs: [(Trainer, String)] = []
        for group in [nil, SoloGroup()] as [SoloGroup?] {   // LocalReducer, and a test double that counts
            let dir = tempDir("dp-one")
            let info = CorpusInfo(name: "synthetic", path: dir + "/s.txt", bytes: text.utf8.count, tokens: corpus.count)
            let tr = try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: t, runDir: dir + "/run", reducer: group ?? LocalReducer())
            try tr.checkAgreement()
            _ = try tr.run { _ in }
            if let group { XCTAssertEqual(group.calls, 25) }
            runs.append((tr, dir))
        }
        defer { for (_, d) in runs { try? FileManager.default.removeItem(atPath: d) } }
        let (a, b) = (runs[0].0, runs[1].0)
        XCTAssertTrue(a.reducer is LocalReducer); XCTAssertTrue(b.reducer is SoloGroup)
        let rows = runs.map { r in (try? String(contentsOfFile: r.1 + "/run/loss.csv", encoding: .utf8))?
            .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).prefix(4).joined(separator: ",") } ?? [] }
        XCTAssertEqual(rows[0].count, 26)
        XCTAssertEqual(rows[0], rows[1])
        XCTAssertEqual(a.model.params.toArray().map(\.bitPattern), b.model.params.toArray().map(\.bitPattern))
        for (x, y) in zip(a.trainState.h + a.trainState.c, b.trainState.h + b.trainState.c) { XCTAssertEqual(x.toArray(), y.toArray()) }
        XCTAssertEqual(a.meta.progress.bestValLoss, b.meta.progress.bestValLoss)
    }

    // MARK: - Dropout of a block of streams

    /// The mask rows of a block of streams are the whole batch's rows of those streams, bit for bit;
    /// other layers, steps and keys draw other bits; about `prob` of the units are dropped.
    func testDropoutMaskOfABlockIsTheBatchsRows() {
        let (T, B, H, prob): (Int, Int, Int, Float) = (5, 9, 7, 0.3)
        let key = Xoshiro256(seed: 11).state.0
        let full = Storage(count: T * B * H)
        Dropout.drawMask(full.ptr, T: T, B: B, H: H, layer: 1, prob: prob, draw: DropoutDraw(key: key))
        let f = full.toArray()
        for block in [0..<4, 4..<9, 2..<3] {
            let Br = block.count, m = Storage(count: T * Br * H)
            Dropout.drawMask(m.ptr, T: T, B: Br, H: H, layer: 1, prob: prob, draw: DropoutDraw(key: key, firstStream: block.lowerBound))
            let b = m.toArray()
            for t in 0..<T {
                for s in block {
                    let local = Array(b[((t * Br) + s - block.lowerBound) * H ..< ((t * Br) + s - block.lowerBound + 1) * H])
                    XCTAssertEqual(local, Array(f[(t * B + s) * H ..< (t * B + s + 1) * H]), "step \(t) stream \(s) of block \(block)")
                }
            }
        }
        let dropped = Double(f.filter { $0 == 0 }.count) / Double(f.count)
        XCTAssertEqual(dropped, Double(prob), accuracy: 0.06)
        for (layer, k) in [(0, key), (1, key &+ 1)] {
            let other = Storage(count: T * B * H)
            Dropout.drawMask(other.ptr, T: T, B: B, H: H, layer: layer, prob: prob, draw: DropoutDraw(key: k))
            XCTAssertNotEqual(other.toArray(), f, "layer \(layer) key \(k)")
        }
        // no stream or step reuses another's bits: 64 units at p = 1/2, so equal rows would be a 2⁻⁶⁴ chance
        let wide = Storage(count: T * B * 64)
        Dropout.drawMask(wide.ptr, T: T, B: B, H: 64, layer: 0, prob: 0.5, draw: DropoutDraw(key: key))
        let w = wide.toArray()
        XCTAssertEqual(Set((0..<(T * B)).map { Array(w[$0 * 64 ..< ($0 + 1) * 64]) }).count, T * B)
    }

    /// What data-parallel training relies on, with dropout: the step of two blocks of streams (uneven),
    /// weighted by their share, gives the whole batch's loss, gradient and carried state.
    func testDropoutStepOfBlocksEqualsTheBatchStep() throws {
        try WorkerPool.configure(threads: 1)
        let (T, B, V) = (6, 7, 11)
        for cell in [CellKind.lstm, .gru] {
            let cfg = ModelConfig(cell: cell, layers: 2, hidden: 12, embed: 5, dropout: 0.3, vocabSize: V)
            let model = CharRNNModel(config: cfg, maxT: T, maxB: B)
            var rng = Xoshiro256(seed: 5)
            model.initialize(rng: &rng)
            var data = TestData(seed: 6)
            let x = IntStorage(count: T * B), y = IntStorage(count: T * B)
            for i in 0..<(T * B) { x.ptr[i] = Int32(i * 7 % V); y.ptr[i] = Int32((i * 5 + 3) % V) }
            let full = RecurrentState(config: cfg, batch: B)
            for st in full.h + full.c { for (i, v) in data.uniform(st.count).enumerated() { st.ptr[i] = Float(v) } }
            let blocks = [0..<3, 3..<7]
            let states = blocks.map { blk -> RecurrentState in
                let r = RecurrentState(config: cfg, batch: blk.count)
                for (l, f) in zip(r.h + r.c, full.h + full.c) { l.ptr.update(from: f.ptr + blk.lowerBound * cfg.hidden, count: blk.count * cfg.hidden) }
                return r
            }
            let key: UInt64 = 0x1234_5678_9ABC_DEF0
            let loss = model.trainStep(x: x.ptr, y: y.ptr, T: T, B: B, state: full, dropout: DropoutDraw(key: key))
            let grads = model.grads.toArray().map(Double.init)
            var sumLoss = 0.0, sumGrads = [Double](repeating: 0, count: grads.count)
            for (blk, st) in zip(blocks, states) {
                let Br = blk.count, xb = IntStorage(count: T * Br), yb = IntStorage(count: T * Br)
                for t in 0..<T { for s in blk { xb.ptr[t * Br + s - blk.lowerBound] = x.ptr[t * B + s]; yb.ptr[t * Br + s - blk.lowerBound] = y.ptr[t * B + s] } }
                let w = Double(Br) / Double(B)
                sumLoss += w * model.trainStep(x: xb.ptr, y: yb.ptr, T: T, B: Br, state: st, dropout: DropoutDraw(key: key, firstStream: blk.lowerBound))
                for (i, g) in model.grads.toArray().enumerated() { sumGrads[i] += w * Double(g) }
                for (l, f) in zip(st.h + st.c, full.h + full.c) {
                    _ = assertClose(l.toArray(), (f.toArray()[(blk.lowerBound * cfg.hidden)..<(blk.upperBound * cfg.hidden)]).map(Double.init),
                                    tol: 1e-5, floor: 1e-6, "\(cell) carried state of block \(blk)")
                }
            }
            _ = assertClose([sumLoss], [loss], tol: 1e-6, floor: 1e-6, "\(cell) loss")
            _ = assertClose(sumGrads, grads, tol: 1e-4, floor: 1e-5, "\(cell) gradient")
            // the same blocks without the stream offset draw other masks: the check above can fail
            let st = RecurrentState(config: cfg, batch: 4)
            let xb = IntStorage(count: T * 4), yb = IntStorage(count: T * 4)
            for t in 0..<T { for s in 3..<7 { xb.ptr[t * 4 + s - 3] = x.ptr[t * B + s]; yb.ptr[t * 4 + s - 3] = y.ptr[t * B + s] } }
            for (l, f) in zip(st.h + st.c, states[1].h + states[1].c) { l.ptr.update(from: f.ptr, count: l.count) }
            let a = model.trainStep(x: xb.ptr, y: yb.ptr, T: T, B: 4, state: RecurrentState(config: cfg, batch: 4), dropout: DropoutDraw(key: key, firstStream: 3))
            let b = model.trainStep(x: xb.ptr, y: yb.ptr, T: T, B: 4, state: RecurrentState(config: cfg, batch: 4), dropout: DropoutDraw(key: key, firstStream: 0))
            XCTAssertNotEqual(a, b, "\(cell): the masks must depend on the global stream")
        }
    }
}
