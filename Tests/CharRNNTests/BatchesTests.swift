// BatchesTests.swift — char-rnn's CharSplitLMMinibatchLoader layout, split counts and size errors.
//
// Corpora are letters, so (scalar mode, code-point order) 'a' has id 0, 'b' id 1, … and every
// expected x/y below is written out by hand from the loader's definition.

import XCTest
@testable import CharRNN

private func letterCorpus(_ n: Int) throws -> Corpus {
    let text = String((0..<n).map { Character(Unicode.Scalar(UInt8(ascii: "a") + UInt8($0))) })
    return try Corpus(bytes: Array(text.utf8), name: "letters")
}

private func filledMinibatch(_ batches: Batches, _ split: Batches.Split, _ index: Int, _ corpus: Corpus) -> (x: [Int32], y: [Int32]) {
    let size = batches.batch * batches.seq
    var x = [Int32](repeating: -1, count: size)
    var y = [Int32](repeating: -1, count: size)
    x.withUnsafeMutableBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in
            batches.fill(split, index: index, corpus: corpus, x: xp.baseAddress!, y: yp.baseAddress!)
        }
    }
    return (x, y)
}

final class BatchesTests: XCTestCase {
    /// 13 tokens, B = 2, T = 3: N = 12 (the 'm' is cut), rows a…f and g…l, two minibatches.
    func testTwoStreamsThreeStepsTrainAndVal() throws {
        let corpus = try letterCorpus(13)
        let batches = try Batches(tokenCount: corpus.count, batch: 2, seq: 3, trainFrac: 0.5, valFrac: 0.5, file: "letters")
        XCTAssertEqual([batches.ntrain, batches.nval, batches.ntest], [1, 1, 0])
        XCTAssertEqual(batches.usedTokens, 12)
        // Time-major: x[t*B + b]. Stream 0 = a b c | d e f, stream 1 = g h i | j k l.
        let train = filledMinibatch(batches, .train, 0, corpus)
        XCTAssertEqual(train.x, [0, 6, 1, 7, 2, 8])
        XCTAssertEqual(train.y, [1, 7, 2, 8, 3, 9])
        let val = filledMinibatch(batches, .val, 0, corpus)
        XCTAssertEqual(val.x, [3, 9, 4, 10, 5, 11])
        XCTAssertEqual(val.y, [4, 10, 5, 11, 6, 0])       // f → g (next row), l → a (wrap-around)
    }

    /// 26 tokens, B = 2, T = 2: N = 24, rows a…l and m…x, 6 minibatches split 3 / 1 / 2.
    func testThreeSplits() throws {
        let corpus = try letterCorpus(26)
        let batches = try Batches(tokenCount: 26, batch: 2, seq: 2, trainFrac: 0.5, valFrac: 0.25, file: "letters")
        XCTAssertEqual([batches.count(.train), batches.count(.val), batches.count(.test)], [3, 1, 2])
        XCTAssertEqual([batches.offset(.train), batches.offset(.val), batches.offset(.test)], [0, 3, 4])
        let expected: [(Batches.Split, Int, [Int32], [Int32])] = [
            (.train, 0, [0, 12, 1, 13], [1, 13, 2, 14]),
            (.train, 1, [2, 14, 3, 15], [3, 15, 4, 16]),
            (.train, 2, [4, 16, 5, 17], [5, 17, 6, 18]),
            (.val, 0, [6, 18, 7, 19], [7, 19, 8, 20]),
            (.test, 0, [8, 20, 9, 21], [9, 21, 10, 22]),
            (.test, 1, [10, 22, 11, 23], [11, 23, 12, 0]),  // l → m (next row), x → a (wrap-around)
        ]
        for (split, index, x, y) in expected {
            let got = filledMinibatch(batches, split, index, corpus)
            XCTAssertEqual(got.x, x, "\(split) \(index)")
            XCTAssertEqual(got.y, y, "\(split) \(index)")
        }
    }

    /// Every minibatch against a literal transcription of the Lua loader (flat data, shifted ydata,
    /// view(B, −1), split(T, 2)), on ids wider than UInt16 and several shapes.
    func testMatchesFlatReference() throws {
        var scalars = String.UnicodeScalarView()
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<1_237 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            scalars.append(Unicode.Scalar(UInt32(0x4E00 + (state >> 33) % 300))!)
        }
        let corpus = try Corpus(bytes: Array(String(scalars).utf8), name: "random")
        let data = (0..<corpus.count).map { corpus.token(at: $0) }
        for (B, T, train, val) in [(2, 3, 0.95, 0.05), (5, 7, 0.9, 0.05), (3, 50, 0.5, 0.5), (1, 1, 0.8, 0.1), (4, 1, 0.6, 0.3)] {
            let batches = try Batches(tokenCount: corpus.count, batch: B, seq: T, trainFrac: train, valFrac: val, file: "random")
            let N = B * T * (data.count / (B * T))
            let x = Array(data[0..<N])
            var y = x
            for i in 0..<(N - 1) { y[i] = x[i + 1] }
            y[N - 1] = x[0]
            var k = 0
            for split in Batches.Split.allCases {
                for index in 0..<batches.count(split) {
                    let got = filledMinibatch(batches, split, index, corpus)
                    for b in 0..<B {
                        for t in 0..<T {
                            let i = b * (N / B) + k * T + t
                            XCTAssertEqual(got.x[t * B + b], x[i])
                            XCTAssertEqual(got.y[t * B + b], y[i])
                        }
                    }
                    k += 1
                }
            }
            XCTAssertEqual(k, N / (B * T))
        }
    }

    func testSplitCounts() {
        func counts(_ n: Int, _ train: Double, _ val: Double) -> [Int] {
            let c = Batches.splitCounts(nbatches: n, trainFrac: train, valFrac: val)
            return [c.train, c.val, c.test]
        }
        XCTAssertEqual(counts(100, 0.95, 0.05), [95, 5, 0])      // no test split: val takes the rest
        XCTAssertEqual(counts(7, 0.95, 0.05), [6, 1, 0])
        XCTAssertEqual(counts(2, 0.95, 0.05), [1, 1, 0])
        XCTAssertEqual(counts(100, 0.9, 0.05), [90, 5, 5])       // test_frac = 0.05
        XCTAssertEqual(counts(7, 0.9, 0.05), [6, 0, 1])
        XCTAssertEqual(counts(59, 0.9, 0.05), [53, 2, 4])
        XCTAssertEqual(counts(10, 0.8, 0.1), [8, 1, 1])
        XCTAssertEqual(counts(3, 0.5, 0.5), [1, 2, 0])
        XCTAssertEqual(counts(10, 0.7, 0.5), [7, 3, 0])          // fractions over 1: test_frac clamps to 0
        XCTAssertEqual(counts(10, 0.9, 0.1), [9, 1, 0])
    }

    func testTooSmallReportsTheMinimum() {
        XCTAssertThrowsError(try Batches(tokenCount: 812, batch: 50, seq: 50, trainFrac: 0.95, valFrac: 0.05, file: "data/x.txt")) { error in
            XCTAssertEqual(error as? TextError, .tooSmall(file: "data/x.txt", tokens: 812, minimum: 5_000, batch: 50, seq: 50))
            XCTAssertEqual("\(error)", "data/x.txt: corpus too small: 812 tokens, need at least 5000 for --batch 50 --seq 50 (one training and one validation minibatch)")
        }
        XCTAssertThrowsError(try Batches(tokenCount: 4_999, batch: 50, seq: 50, trainFrac: 0.95, valFrac: 0.05, file: "x"))
        XCTAssertNoThrow(try Batches(tokenCount: 5_000, batch: 50, seq: 50, trainFrac: 0.95, valFrac: 0.05, file: "x"))

        // With a test split, val needs floor(n * 0.05) ≥ 1, i.e. 20 minibatches.
        XCTAssertThrowsError(try Batches(tokenCount: 49_999, batch: 50, seq: 50, trainFrac: 0.9, valFrac: 0.05, file: "x")) { error in
            XCTAssertEqual(error as? TextError, .tooSmall(file: "x", tokens: 49_999, minimum: 50_000, batch: 50, seq: 50))
        }
        let ok = try? Batches(tokenCount: 50_000, batch: 50, seq: 50, trainFrac: 0.9, valFrac: 0.05, file: "x")
        XCTAssertEqual(ok.map { [$0.ntrain, $0.nval, $0.ntest] }, [18, 1, 1])
    }

    func testImpossibleFractions() {
        for (train, val) in [(1.0, 0.0), (0.9, 0.0), (0.0, 0.5), (1.5, 0.1), (0.5, -0.1), (Double.nan, 0.1)] {
            XCTAssertThrowsError(try Batches(tokenCount: 1_000_000, batch: 2, seq: 2, trainFrac: train, valFrac: val, file: "x")) { error in
                guard case .invalidSplit? = error as? TextError else { return XCTFail("\(train) \(val): \(error)") }
            }
        }
    }
}
