// WorkerPoolTests.swift — the worker pool at more workers than this machine has cores (3, 5 and 8 on
// two): every part runs exactly once whatever mix of part counts the calls use, widths can be
// changed between calls, the threaded training step and inference step give the one-worker results
// (within float-summation tolerance where the split changes a sum's order, bit for bit where it does
// not) and the same bits on a rerun, and `configure(threads:)` bounds the width by the cores. Every
// wait is bounded, so a lost hand-off fails the test instead of hanging it.

import Foundation
import XCTest
@testable import CharRNN

final class WorkerPoolTests: XCTestCase {
    override func tearDown() { try? WorkerPool.configure(threads: 1) }

    static let widths = [3, 5, 8]

    /// Runs `body` on a thread of its own and fails if it has not finished within `seconds`.
    func bounded(_ what: String, seconds: Double = 120, _ body: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        let t = Thread { body(); done.signal() }
        t.stackSize = 8 << 20
        t.start()
        XCTAssertEqual(done.wait(timeout: .now() + seconds), .success, "\(what): did not finish in \(seconds) s (a hand-off hung?)")
    }

    /// Calls of every part count 1…width, in a rotating mix, with pauses long enough for some workers
    /// to park: each part of each call runs once (a worker that ran a part twice, or for a call that did
    /// not ask for it, would show in the counts), at every width, and after changing the width.
    func testEveryPartRunsOnceAtAnyWidthAndPartCount() throws {
        final class Counts: @unchecked Sendable {
            let a = UnsafeMutablePointer<Int>.allocate(capacity: 8)
            init() { a.initialize(repeating: 0, count: 8) }
            deinit { a.deallocate() }
        }
        for width in Self.widths + [1, 8, 3] {
            try WorkerPool.shared.setWidth(width)
            XCTAssertEqual(WorkerPool.shared.width, width)
            let counts = Counts()
            let calls = 1500
            bounded("width \(width)") {
                for i in 0..<calls {
                    let parts = 1 + (i * 7) % width
                    WorkerPool.shared.run(parts: parts, context: UnsafeRawPointer(counts.a)) { ctx, p in
                        UnsafeMutablePointer(mutating: ctx.assumingMemoryBound(to: Int.self))[p] += 1
                    }
                    if i % 211 == 0 { usleep(2000) } else if i % 17 == 0 { usleep(30) }
                }
            }
            var expected = [Int](repeating: 0, count: 8)
            for i in 0..<calls { for p in 0..<(1 + (i * 7) % width) { expected[p] += 1 } }
            XCTAssertEqual(Array(UnsafeBufferPointer(start: counts.a, count: 8)), expected, "width \(width)")
        }
    }

    func randomMatrix(_ n: Int, seed: UInt64) -> Storage {
        var rng = Xoshiro256(seed: seed)
        let s = Storage(count: n)
        for i in 0..<n { s.ptr[i] = rng.nextFloat() * 2 - 1 }
        return s
    }

    /// The block-split GEMM at each width, widths changed in between: the single-call result within
    /// float tolerance, and the same bits when repeated at the same width.
    func testBlockSplitGemmAtEachWidth() throws {
        let (m, n, k) = (400, 96, 70)
        let a = randomMatrix(m * k, seed: 1), b = randomMatrix(k * n, seed: 2), c0 = randomMatrix(m * n, seed: 3)
        let ref = Storage(count: m * n)
        ref.ptr.update(from: c0.ptr, count: m * n)
        gemm(.noTrans, .noTrans, m: m, n: n, k: k, a: a.ptr, lda: k, b: b.ptr, ldb: n, beta: 1, c: ref.ptr, ldc: n)
        var first: [Int: [Float]] = [:]
        for width in Self.widths + [1] + Self.widths.reversed() {
            try WorkerPool.shared.setWidth(width)
            let c = Storage(count: m * n)
            c.ptr.update(from: c0.ptr, count: m * n)
            bounded("pgemm width \(width)", seconds: 60) {
                pgemm(.noTrans, .noTrans, m: m, n: n, k: k, a: a.ptr, lda: k, b: b.ptr, ldb: n, beta: 1, c: c.ptr, ldc: n)
            }
            for i in 0..<(m * n) { XCTAssertEqual(c.ptr[i], ref.ptr[i], accuracy: 1e-5 * max(1, abs(ref.ptr[i])), "width \(width) at \(i)") }
            if let f = first[width] { XCTAssertEqual(c.toArray(), f, "width \(width): a rerun gave other bits") } else { first[width] = c.toArray() }
        }
    }

    /// Losses and gradients of four training steps (B = 64, so the time loop really splits 3, 5 and 8
    /// ways) against one worker within float tolerance, and bit-identical when rerun at the same width.
    func testTrainingStepsAtEachWidth() throws {
        func run(_ width: Int) throws -> (losses: [Double], grads: [Float]) {
            try WorkerPool.shared.setWidth(width)
            let cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 32, vocabSize: 30)
            let T = 6, B = 64
            let model = CharRNNModel(config: cfg, maxT: T, maxB: B)
            var rng = Xoshiro256(seed: 9)
            model.initialize(rng: &rng)
            let state = RecurrentState(config: cfg, batch: B)
            let x = IntStorage(count: T * B), y = IntStorage(count: T * B)
            var losses: [Double] = []
            nonisolated(unsafe) var loss = 0.0
            nonisolated(unsafe) var r = rng
            for it in 0..<4 {
                for i in 0..<(T * B) { x.ptr[i] = Int32((i * 7 + it) % 30); y.ptr[i] = Int32((i * 11 + it) % 30) }
                bounded("train step width \(width)", seconds: 60) { loss = model.trainStep(x: x.ptr, y: y.ptr, T: T, B: B, state: state, rng: &r) }
                losses.append(loss)
                for i in 0..<model.layout.count { model.params.ptr[i] -= 0.1 * model.grads.ptr[i] }
            }
            XCTAssertEqual(model.layers[0].timeLoopParts(B: B), width, "the time loop uses every worker")
            return (losses, model.grads.toArray())
        }
        let one = try run(1)
        for width in Self.widths {
            let a = try run(width), again = try run(width)
            XCTAssertEqual(a.losses, again.losses, "width \(width): rerun losses differ")
            XCTAssertEqual(a.grads, again.grads, "width \(width): rerun gradients differ")
            for (p, q) in zip(one.losses, a.losses) { XCTAssertEqual(p, q, accuracy: 1e-5 * max(1, abs(p)), "width \(width)") }
            var worst: Float = 0
            for (p, q) in zip(one.grads, a.grads) { worst = max(worst, abs(p - q) / max(1e-3, abs(p))) }
            XCTAssertLessThan(worst, 1e-3, "width \(width): gradients vs one worker")
        }
    }

    /// The inference step splits its products by 32-column panels, which changes no sum: at every
    /// width the log-probabilities are the one-worker bits (both weight precisions).
    func testInferenceStepBitsDoNotDependOnWidth() throws {
        let cfg = ModelConfig(cell: .lstm, layers: 2, hidden: 96, vocabSize: 200)
        let B = 12, T = 5
        let tokens = (0..<(T * B)).map { Int32(($0 * 37) % 200) }
        for precision in WeightPrecision.allCases {
            func run(_ width: Int) throws -> [Float] {
                try WorkerPool.shared.setWidth(width)
                let m = CharRNNModel(config: cfg, maxT: 1, maxB: B)
                var rng = Xoshiro256(seed: 4)
                for i in 0..<m.layout.count { m.params.ptr[i] = (rng.nextFloat() * 2 - 1) * 0.3 }
                m.parametersChanged()
                m.inferencePrecision = precision
                let s = InferenceState(config: cfg, streams: B), out = Storage(count: B * 200)
                var all: [Float] = []
                for t in 0..<T {
                    bounded("step width \(width)", seconds: 60) {
                        tokens.withUnsafeBufferPointer { m.step(tokens: $0.baseAddress! + t * B, state: s, logProbs: out.ptr) }
                    }
                    all += out.toArray()
                }
                return all
            }
            // the products are big enough to be split (B·G·H ≥ 400,000 multiply-adds)
            XCTAssertGreaterThanOrEqual(B * 4 * 96 * 96, 400_000)
            let one = try run(1)
            for width in Self.widths { XCTAssertEqual(try run(width), one, "\(precision) width \(width)") }
        }
    }

    /// `configure(threads:)` never makes the pool wider than the cores the process may use; 0 means all
    /// of them; an affinity mask of one CPU counts as one core.
    func testConfigureBoundsTheWidthByTheCores() throws {
        let cores = WorkerPool.availableCores
        XCTAssertGreaterThanOrEqual(cores, 1)
        XCTAssertLessThanOrEqual(cores, ProcessInfo.processInfo.activeProcessorCount)
        try WorkerPool.configure(threads: cores + 6)
        XCTAssertEqual(WorkerPool.shared.width, cores)
        try WorkerPool.configure(threads: 0)
        XCTAssertEqual(WorkerPool.shared.width, cores)
        try WorkerPool.configure(threads: 1)
        XCTAssertEqual(WorkerPool.shared.width, 1)
        XCTAssertEqual(WorkerPool.width(forThreads: 64 * cores), cores)
        XCTAssertThrowsError(try WorkerPool.configure(threads: Bounds.threadLimit + 1))
        // pinned to one CPU (sched_getaffinity reads the calling thread's mask): one core available
        nonisolated(unsafe) var pinned = 0
        // (sched_setaffinity through dlsym: Swift's Glibc module leaves the _GNU_SOURCE calls out)
        typealias SetAffinity = @convention(c) (Int32, Int, UnsafeRawPointer) -> Int32
        let sym = try XCTUnwrap(dlsym(nil, "sched_setaffinity"))   // nil: RTLD_DEFAULT
        let setAffinity = unsafeBitCast(sym, to: SetAffinity.self)
        bounded("affinity", seconds: 30) {
            var mask = [UInt8](repeating: 0, count: 128)   // a cpu_set_t: CPU 0 only
            mask[0] = 1
            guard mask.withUnsafeBytes({ setAffinity(0, 128, $0.baseAddress!) }) == 0 else { return }
            pinned = WorkerPool.availableCores
        }
        XCTAssertEqual(pinned, 1, "a one-CPU affinity mask should give one core")
    }

    func testAWorkerThreadThatCannotStartIsReportedNotWaitedFor() throws {
        // a stack no machine can map makes pthread_create fail as a full process table would
        let pool = WorkerPool(stackBytes: 1 << 56)
        XCTAssertThrowsError(try pool.setWidth(3)) { e in
            guard case .cannotStart(requested: 3, started: 1, code: _)? = e as? WorkerPoolError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("cannot start worker thread 2 of 3"), "\(e)")
        }
        XCTAssertEqual(pool.width, 1, "the pool counts a thread that never ran")
        var ran = 0
        withUnsafeMutablePointer(to: &ran) { p in
            pool.run(parts: 1, context: UnsafeRawPointer(p)) { ctx, _ in UnsafeMutablePointer(mutating: ctx.assumingMemoryBound(to: Int.self)).pointee += 1 }
        }
        XCTAssertEqual(ran, 1)
        XCTAssertThrowsError(try pool.setWidth(Bounds.threadLimit + 1))
    }
}
