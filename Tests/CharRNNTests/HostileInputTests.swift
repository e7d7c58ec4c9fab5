// HostileInputTests.swift — the hostile-input list and fault injection at the library level:
// each bad input gives one specific, one-line error; a NaN/Inf gradient stops the run (or is skipped
// with skipNonFinite) and leaves the last checkpoint intact. The same cases through the binary are in
// Tests/charrnnTests/ReliabilityCLITests.swift.

import Foundation
import XCTest
@testable import CharRNN

final class HostileInputTests: XCTestCase {
    func corpusError(_ bytes: [UInt8], unit: TokenUnit = .scalar, normalize: Normalization = .none,
                     file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            _ = try Corpus(bytes: bytes, name: "data/x.txt", unit: unit, normalize: normalize)
            XCTFail("accepted hostile corpus \(bytes.prefix(16))", file: file, line: line)
            return nil
        } catch {
            let d = "\(error)"
            XCTAssertFalse(d.contains("\n"), "not one line: \(d)", file: file, line: line)
            return d
        }
    }

    // MARK: - Corpus

    func testEmptyFileAndBOMOnly() {
        XCTAssertEqual(corpusError([]), "data/x.txt: corpus is empty")
        XCTAssertEqual(corpusError([0xEF, 0xBB, 0xBF], unit: .grapheme), "data/x.txt: corpus is empty")
    }

    func testInvalidUTF8AtStartMiddleEndInEveryMode() {
        for unit in TokenUnit.allCases {
            for nfc in Normalization.allCases {
                XCTAssertEqual(corpusError([0xFF] + Array("abc".utf8), unit: unit, normalize: nfc),
                               "data/x.txt:1:1 (byte 0): invalid UTF-8 sequence 0xFF")
                XCTAssertEqual(corpusError(Array("ab\ncd".utf8) + [0xC3, 0x28] + Array("ef".utf8), unit: unit, normalize: nfc),
                               "data/x.txt:2:3 (byte 5): invalid UTF-8 sequence 0xC3")
                XCTAssertEqual(corpusError(Array("abc 床".utf8) + [0xE4, 0xB8], unit: unit, normalize: nfc),
                               "data/x.txt:1:6 (byte 7): invalid UTF-8 sequence 0xE4 0xB8")
            }
        }
    }

    func testOverlongEncodingsAndSurrogatesAreRejected() {
        // "/" as C0 AF and E0 80 AF, U+D800 as ED A0 80, U+110000 as F4 90 80 80.
        XCTAssertEqual(corpusError(Array("a".utf8) + [0xC0, 0xAF]), "data/x.txt:1:2 (byte 1): invalid UTF-8 sequence 0xC0 0xAF")
        XCTAssertEqual(corpusError([0xE0, 0x80, 0xAF], unit: .grapheme), "data/x.txt:1:1 (byte 0): invalid UTF-8 sequence 0xE0 0x80 0xAF")
        XCTAssertEqual(corpusError(Array("xy".utf8) + [0xED, 0xA0, 0x80], normalize: .nfc), "data/x.txt:1:3 (byte 2): invalid UTF-8 sequence 0xED 0xA0 0x80")
        XCTAssertEqual(corpusError([0xF4, 0x90, 0x80, 0x80]), "data/x.txt:1:1 (byte 0): invalid UTF-8 sequence 0xF4 0x90 0x80 0x80")
    }

    func info(_ path: String) -> CorpusInfo { CorpusInfo(name: "x", path: path, bytes: 0, tokens: 0) }

    func testOnlyNewlinesAndOneCharacterVocabularyAreRefusedBeforeTraining() throws {
        let dir = NSTemporaryDirectory() + "charrnn-hostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (text, shown) in [(String(repeating: "\n", count: 5000), "\"\\n\""), (String(repeating: "a", count: 5000), "\"a\"")] {
            let c = try Corpus(bytes: Array(text.utf8), name: "x.txt")
            XCTAssertEqual(c.vocabulary.count, 1)
            var t = TrainConfig(); t.seq = 10; t.batch = 4
            XCTAssertThrowsError(try Trainer(corpus: c, corpusInfo: info("x.txt"), model: ModelConfig(hidden: 4, vocabSize: 1),
                                             train: t, runDir: dir)) { e in
                XCTAssertEqual("\(e)", "x.txt: the corpus has only one distinct character (\(shown)); there is nothing to learn")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "no run directory for a refused corpus")
        }
    }

    // MARK: - Checkpoints

    /// A valid tiny checkpoint's bytes, with the metadata entry `key` (a JSON object) edited.
    func forged(_ key: String? = nil, _ edit: (inout [String: Any]) -> Void = { _ in }) throws -> [UInt8] {
        let dir = NSTemporaryDirectory() + "charrnn-forge-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try Corpus(bytes: Array(String(repeating: "abc ab\nba!\n", count: 30).utf8), name: "c.txt")
        var t = TrainConfig(); t.seq = 4; t.batch = 2; t.maxIters = 1
        let tr = try Trainer(corpus: c, corpusInfo: info("c.txt"), model: ModelConfig(hidden: 3, vocabSize: c.vocabulary.count),
                             train: t, runDir: dir)
        _ = try tr.run { _ in }
        let file = try SafeTensorsFile.read(path: tr.latestPath)
        var w = SafeTensorsWriter()
        for name in file.names { try file.rawBytes(name).withUnsafeBytes { w.add(name, dtype: file.tensors[name]!.dtype, shape: file.tensors[name]!.shape, bytes: $0) } }
        w.metadata = file.metadata
        if let key {
            var obj = try JSONSerialization.jsonObject(with: Data(file.metadata[key]!.utf8)) as! [String: Any]
            edit(&obj)
            w.metadata[key] = String(decoding: try JSONSerialization.data(withJSONObject: obj), as: UTF8.self)
        }
        return w.serialize()
    }

    func loadError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try Checkpoint.load(bytes: bytes, path: "run/x.safetensors")
            XCTFail("accepted a hostile checkpoint", file: file, line: line)
            return ""
        } catch {
            let d = "\(error)"
            XCTAssertFalse(d.contains("\n"), d, file: file, line: line)
            return d
        }
    }

    func testForgedModelConfigCannotAskForAHugeAllocation() throws {
        XCTAssertNoThrow(try Checkpoint.load(bytes: try forged(), path: "ok"))
        // absurd sizes are refused by the config's bounds, sizes within them by the tensor check —
        // either way before anything is allocated
        XCTAssertTrue(loadError(try forged("model") { $0["hidden"] = 1 << 40 }).contains("model config invalid: --hidden must be at most 1048576"))
        XCTAssertTrue(loadError(try forged("model") { $0["hidden"] = 1 << 62 }).contains("model config invalid: --hidden must be at most 1048576"))
        XCTAssertTrue(loadError(try forged("model") { $0["hidden"] = 1 << 20 }).contains("tensor \"rnn.weight_ih_l0\" has shape [12, 6], expected [4194304, 6] (WrongShape)"))
        XCTAssertTrue(loadError(try forged("model") { $0["layers"] = 1 << 40 }).contains("model config invalid: --layers must be at most 1024"))
        XCTAssertTrue(loadError(try forged("model") { $0["layers"] = 1000 }).contains("layers but the file holds only"))
        XCTAssertTrue(loadError(try forged("model") { $0["cell"] = "gru" }).contains("tensor \"rnn.weight_ih_l0\" has shape [12, 6], expected [9, 6]"))
        XCTAssertTrue(loadError(try forged("train") { $0["seq"] = 1 << 40; $0["batch"] = 1 << 40 }).contains("--seq must be between 1 and \(Bounds.maxSeq)"))
    }

    func testNonCharRNNSafetensorsIsRefused() {
        var w = SafeTensorsWriter()
        w.add("attn.0", shape: [1, 2, 3], floats: [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(loadError(w.serialize()), "run/x.safetensors: not a charrnn checkpoint (metadata format is missing)")
    }

    func testDirectoryAsCheckpointFileIsAOneLineError() throws {
        let dir = NSTemporaryDirectory() + "charrnn-dirckpt-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/best.safetensors", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try Checkpoint.load(path: try RunFolder.resolve(dir))) { e in
            XCTAssertEqual("\(e)", "\(dir)/best.safetensors: cannot read: Is a directory")
        }
    }

    // MARK: - NaN/Inf in a gradient

    func smallTrainer(_ dir: String, iters: Int, evalEvery: Int) throws -> Trainer {
        let c = try Corpus(bytes: Array(String(repeating: "To be, or not to be: that is the question.\n", count: 40).utf8), name: "c.txt")
        var t = TrainConfig(); t.seq = 10; t.batch = 4; t.maxIters = iters; t.evalEvery = evalEvery; t.threads = 1
        return try Trainer(corpus: c, corpusInfo: info("c.txt"), model: ModelConfig(hidden: 8, vocabSize: c.vocabulary.count),
                           train: t, runDir: dir)
    }

    func testNaNGradientStopsWithTheIterationAndKeepsTheCheckpoint() throws {
        let dir = NSTemporaryDirectory() + "charrnn-nan-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tr = try smallTrainer(dir, iters: 20, evalEvery: 4)
        tr.gradientFault = { it, g in if it == 7 { g[5] = .infinity } }
        XCTAssertThrowsError(try tr.run { _ in }) { e in
            XCTAssertTrue("\(e)".hasPrefix("training diverged at iteration 7: "), "\(e)")
            XCTAssertTrue("\(e)".contains("the last good checkpoint is \(tr.latestPath)"), "\(e)")
        }
        let back = try Checkpoint.load(path: tr.latestPath)
        XCTAssertEqual(back.meta.progress.iteration, 4)
        let m = CharRNNModel(config: back.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(back, model: m)
        XCTAssertTrue(m.params.toArray().allSatisfy(\.isFinite))
    }

    func testSkipNonFiniteSkipsCountsAndStopsAfterTenInARow() throws {
        let dir = NSTemporaryDirectory() + "charrnn-skip-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tr = try smallTrainer(dir, iters: 12, evalEvery: 6)
        tr.skipNonFinite = true
        var skippedEvents: [Int] = []
        tr.gradientFault = { it, g in if it == 3 || it == 4 || it == 12 { g[0] = .nan } }
        let s = try tr.run { if case let .skipped(it, _, _, _) = $0 { skippedEvents.append(it) } }
        XCTAssertEqual(s.skippedSteps, 2 + 1)
        XCTAssertEqual(skippedEvents, [3, 4, 12])
        XCTAssertEqual(s.iterations, 12)
        XCTAssertTrue(tr.model.params.toArray().allSatisfy(\.isFinite))
        XCTAssertEqual(try Checkpoint.load(path: tr.latestPath).meta.progress.iteration, 12, "final checkpoint written after a skipped last step")
        XCTAssertEqual(try Checkpoint.load(path: tr.latestPath).meta.progress.optimizerSteps, 9)

        let dir2 = dir + "-b"
        defer { try? FileManager.default.removeItem(atPath: dir2) }
        let tr2 = try smallTrainer(dir2, iters: 40, evalEvery: 5)
        tr2.skipNonFinite = true
        tr2.gradientFault = { it, g in if it >= 8 { g[1] = -.infinity } }
        XCTAssertThrowsError(try tr2.run { _ in }) { e in
            XCTAssertTrue("\(e)".contains("10 steps in a row had a non-finite loss or gradient (iterations 8–17"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"))
        }
        XCTAssertEqual(try Checkpoint.load(path: tr2.latestPath).meta.progress.iteration, 5)
    }
}
