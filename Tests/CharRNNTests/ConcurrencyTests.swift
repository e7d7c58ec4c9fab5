// ConcurrencyTests.swift — the multithreaded paths (WorkerPool: streams split across workers in the
// time loop, big GEMMs split by blocks), so that `swift test --sanitize=thread` exercises them: every
// cell trains and validates with 3 workers and matches the single-threaded run, and the same width
// twice is bit-identical.

import Foundation
import XCTest
@testable import CharRNN

final class ConcurrencyTests: XCTestCase {
    override func tearDown() { try? WorkerPool.configure(threads: 1) }

    func losses(cell: CellKind, width: Int) throws -> [Double] {
        try WorkerPool.configure(threads: 1)
        try WorkerPool.shared.setWidth(width)   // not configure: that bounds the width by this machine's cores
        let dir = NSTemporaryDirectory() + "charrnn-conc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = String(repeating: "To be, or not to be, that is the question. 床前明月光\n", count: 40)
        let c = try Corpus(bytes: Array(text.utf8), name: "c.txt")
        var t = TrainConfig(); t.seq = 12; t.batch = 9; t.maxIters = 6; t.evalEvery = 3; t.threads = width
        let tr = try Trainer(corpus: c, corpusInfo: CorpusInfo(name: "c", path: "c.txt", bytes: 0, tokens: c.count),
                             model: ModelConfig(cell: cell, layers: 2, hidden: 24, embed: cell == .gru ? 5 : 0,
                                                dropout: cell == .rnn ? 0.1 : 0, vocabSize: c.vocabulary.count),
                             train: t, runDir: dir)
        var out: [Double] = []
        _ = try tr.run { e in
            if case let .iteration(_, _, _, loss, _, _, _) = e { out.append(loss) }
            if case let .validation(_, _, v, _, _) = e { out.append(v) }
        }
        return out
    }

    func testWorkerPoolTrainingMatchesSingleThreadedAndIsDeterministic() throws {
        for cell in CellKind.allCases {
            let one = try losses(cell: cell, width: 1)
            let three = try losses(cell: cell, width: 3)
            let again = try losses(cell: cell, width: 3)
            XCTAssertEqual(three, again, "\(cell): same width must be bit-identical")
            XCTAssertEqual(one.count, three.count)
            for (a, b) in zip(one, three) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(a)), "\(cell)") }
        }
    }

    func testWorkerPoolRunsEveryPartOnce() throws {
        try WorkerPool.shared.setWidth(4)
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        counts.initialize(repeating: 0, count: 4)
        defer { counts.deallocate() }
        for _ in 0..<2000 {
            WorkerPool.shared.run(parts: 4, context: UnsafeRawPointer(counts)) { ctx, part in
                UnsafeMutablePointer(mutating: ctx.assumingMemoryBound(to: Int.self))[part] += 1
            }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: counts, count: 4)), [2000, 2000, 2000, 2000])
    }
}
