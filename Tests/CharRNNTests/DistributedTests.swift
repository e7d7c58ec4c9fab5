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
    func sumInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int) { calls += 1 }
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
    func sumInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
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
                                         model: cfg, train: t, runDir: dir + "/run", group: PartitionOnly(rank: 0, size: 3))) {
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
        for group in [nil, SoloGroup()] as [SoloGroup?] {
            let dir = tempDir("dp-one")
            let info = CorpusInfo(name: "synthetic", path: dir + "/s.txt", bytes: text.utf8.count, tokens: corpus.count)
            let tr = try Trainer(corpus: corpus, corpusInfo: info, model: cfg, train: t, runDir: dir + "/run", group: group)
            try tr.checkAgreement()
            _ = try tr.run { _ in }
            if let group { XCTAssertEqual(group.calls, 25) }
            runs.append((tr, dir))
        }
        defer { for (_, d) in runs { try? FileManager.default.removeItem(atPath: d) } }
        let (a, b) = (runs[0].0, runs[1].0)
        XCTAssertNil(a.group); XCTAssertNotNil(b.group)
        let rows = runs.map { r in (try? String(contentsOfFile: r.1 + "/run/loss.csv", encoding: .utf8))?
            .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).prefix(4).joined(separator: ",") } ?? [] }
        XCTAssertEqual(rows[0].count, 26)
        XCTAssertEqual(rows[0], rows[1])
        XCTAssertEqual(a.model.params.toArray().map(\.bitPattern), b.model.params.toArray().map(\.bitPattern))
        for (x, y) in zip(a.trainState.h + a.trainState.c, b.trainState.h + b.trainState.c) { XCTAssertEqual(x.toArray(), y.toArray()) }
        XCTAssertEqual(a.meta.progress.bestValLoss, b.meta.progress.bestValLoss)
    }
}
