// The worker pool, the block-split GEMMs and the packed recurrent GEMM against plain sgemm.

import Foundation
import XCTest
@testable import CharRNN

final class ParallelTests: XCTestCase {
    override func tearDown() { try? WorkerPool.configure(threads: 1) }

    /// Many hand-offs, with pauses long enough for the worker to fall asleep between some of them:
    /// every part runs exactly once per call and no wake-up is ever lost (a lost one hangs `run`).
    func testPoolHandOffsNeverLoseAWakeUp() throws {
        try WorkerPool.configure(threads: 2)
        let done = DispatchSemaphore(value: 0)
        // one counter per part, each written by exactly one thread (raw memory: no Array to race on)
        final class Counts: @unchecked Sendable {
            let a = UnsafeMutablePointer<Int>.allocate(capacity: 2)
            init() { a.initialize(repeating: 0, count: 2) }
            deinit { a.deallocate() }
        }
        let counts = Counts()
        Thread {
            for i in 0..<3000 {
                WorkerPool.shared.run(parts: 2, context: UnsafeRawPointer(counts.a)) { ctx, p in
                    UnsafeMutablePointer(mutating: ctx.assumingMemoryBound(to: Int.self))[p] += 1
                }
                if i % 97 == 0 { usleep(3000) }       // let the worker go to sleep
                else if i % 13 == 0 { usleep(20) }
            }
            done.signal()
        }.start()
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "a hand-off hung")
        XCTAssertEqual([counts.a[0], counts.a[1]], [3000, 3000])
    }

    func randomMatrix(_ n: Int, seed: UInt64) -> Storage {
        var rng = Xoshiro256(seed: seed)
        let s = Storage(count: n)
        for i in 0..<n { s.ptr[i] = rng.nextFloat() * 2 - 1 }
        return s
    }

    func testPackedGemmMatchesSgemm() {
        for (m, k, n) in [(1, 5, 7), (2, 16, 32), (3, 17, 33), (7, 64, 96), (25, 128, 512), (50, 33, 70), (13, 1, 40)] {
            let a = randomMatrix(m * k, seed: 1), w = randomMatrix(n * k, seed: 2)   // w: (n × k) = Bᵀ
            let ref = randomMatrix(m * n, seed: 3), out = Storage(count: m * n)
            out.ptr.update(from: ref.ptr, count: m * n)
            for accumulate in [false, true] {
                let expect = Storage(count: m * n)
                expect.ptr.update(from: ref.ptr, count: m * n)
                gemm(.noTrans, .trans, m: m, n: n, k: k, a: a.ptr, lda: k, b: w.ptr, ldb: k, beta: accumulate ? 1 : 0, c: expect.ptr, ldc: n)
                let packed = PackedPanels(maxK: k, maxN: n)
                packed.packTransposed(w.ptr, k: k, n: n, ld: k)
                out.ptr.update(from: ref.ptr, count: m * n)
                packedGemm(m: m, a: a.ptr, lda: k, b: packed, c: out.ptr, ldc: n, accumulate: accumulate)
                for i in 0..<(m * n) { XCTAssertEqual(out.ptr[i], expect.ptr[i], accuracy: 1e-4, "m \(m) k \(k) n \(n) acc \(accumulate) at \(i)") }
                // B given untransposed: pack(wT)
                let wT = Storage(count: k * n)
                transpose(w.ptr, rows: n, cols: k, into: wT.ptr)
                packed.pack(wT.ptr, k: k, n: n, ld: n)
                out.ptr.update(from: ref.ptr, count: m * n)
                packedGemm(m: m, a: a.ptr, lda: k, b: packed, c: out.ptr, ldc: n, accumulate: accumulate)
                for i in 0..<(m * n) { XCTAssertEqual(out.ptr[i], expect.ptr[i], accuracy: 1e-4, "pack m \(m) k \(k) n \(n) at \(i)") }
            }
        }
    }

    func testBlockSplitGemmEqualsSingleCall() throws {
        try WorkerPool.configure(threads: 2)
        for (ta, tb, m, n, k) in [(Transpose.noTrans, Transpose.trans, 300, 200, 64), (.trans, .noTrans, 96, 400, 250), (.noTrans, .noTrans, 40, 900, 33)] {
            let a = randomMatrix(m * k, seed: 4), b = randomMatrix(k * n, seed: 5)
            let c1 = randomMatrix(m * n, seed: 6), c2 = Storage(count: m * n)
            c2.ptr.update(from: c1.ptr, count: m * n)
            let lda = ta == .noTrans ? k : m, ldb = tb == .noTrans ? n : k
            gemm(ta, tb, m: m, n: n, k: k, a: a.ptr, lda: lda, b: b.ptr, ldb: ldb, beta: 1, c: c1.ptr, ldc: n)
            pgemm(ta, tb, m: m, n: n, k: k, a: a.ptr, lda: lda, b: b.ptr, ldb: ldb, beta: 1, c: c2.ptr, ldc: n)
            for i in 0..<(m * n) { XCTAssertEqual(c1.ptr[i], c2.ptr[i], accuracy: 1e-5 * max(1, abs(c1.ptr[i]))) }
        }
    }

    /// The same seed gives the same losses whether one or two cores run the time loop and GEMMs.
    func testTrainingAgreesAcrossCoreCounts() throws {
        func losses(_ threads: Int) throws -> [Double] {
            try WorkerPool.configure(threads: threads)
            let cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 40, vocabSize: 30)
            let model = CharRNNModel(config: cfg, maxT: 10, maxB: 24)
            var rng = Xoshiro256(seed: 9)
            model.initialize(rng: &rng)
            let state = RecurrentState(config: cfg, batch: 24)
            let x = IntStorage(count: 240), y = IntStorage(count: 240)
            var out: [Double] = []
            for it in 0..<4 {
                for i in 0..<240 { x.ptr[i] = Int32((i * 7 + it) % 30); y.ptr[i] = Int32((i * 11 + it) % 30) }
                out.append(model.trainStep(x: x.ptr, y: y.ptr, T: 10, B: 24, state: state, rng: &rng))
                for i in 0..<model.layout.count { model.params.ptr[i] -= 0.1 * model.grads.ptr[i] }
            }
            return out
        }
        let one = try losses(1), two = try losses(2)
        for (a, b) in zip(one, two) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }
}
