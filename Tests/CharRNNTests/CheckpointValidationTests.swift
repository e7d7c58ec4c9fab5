// CheckpointValidationTests.swift — forged checkpoints are refused with the reason: non-finite weights,
// forged metadata, devices given as checkpoint files (refused before any read).

import Foundation
import XCTest
@testable import CharRNN

final class CheckpointValidationTests: RunFolderTestCase {
    override class var folderPrefix: String { "forged" }


    func testNonFiniteWeightsAreRefused() throws {
        for bad in [Float.nan, .infinity, -.infinity] {
            let m = refusal(try forged(tensor: { name, v in if name == "decoder.weight" { v[3] = bad } }))
            XCTAssertTrue(m.contains("tensor decoder.weight holds a non-finite value (\(bad) at index 3)"), m)
        }
        let moments = try forged(tensor: { name, v in if name.hasPrefix("optimizer.") { v[0] = .nan } })
        let m = message { try ResumePoint(try Checkpoint.load(path: moments), maxIters: nil, epochs: nil) }
        XCTAssertTrue(m.contains("non-finite"), m)
    }

    func testForgedMetadataIsRefusedWithTheReason() throws {
        let vocab = try Checkpoint.load(path: try forged()).meta.vocabulary.tokens
        func vocabJSON(_ t: [String]) -> String { String(decoding: try! JSONEncoder().encode(t), as: UTF8.self) }
        var dup = vocab; dup[1] = dup[2]
        var empty = vocab; empty[1] = ""
        var multi = vocab; multi[1] = "ab"
        var unsorted = vocab; unsorted.swapAt(1, 2)
        let cases: [([String: String], String)] = [
            (["vocab": vocabJSON(dup)], "appears twice"),
            (["vocab": vocabJSON(empty)], "entry 1 is empty"),
            (["vocab": vocabJSON(multi)], "is 2 Unicode scalars"),
            (["vocab": vocabJSON(unsorted)], "out of code-point order"),
            (["format_version": "0"], "\"format_version\" is 0; versions start at 1"),
            (["format_version": "-1"], "\"format_version\" is -1"),
            (["cursor": "-1"], "\"cursor\" is -1"),
            (["train_batches": "0"], "\"train_batches\" is 0"),
            (["elapsed_sec": "1e19"], "\"elapsed_sec\" is 1e+19"),
            (["elapsed_sec": "-1e308"], "\"elapsed_sec\" is -1e+308"),
            (["best_val_loss": "lots"], "\"best_val_loss\" is not a number"),
        ]
        for (meta, expected) in cases {
            let m = refusal(try forged(meta))
            XCTAssertTrue(m.contains(expected), "\(meta): \(m)")
        }
        let model = try Checkpoint.load(path: try forged()).file.metadata["model"]!
        let m = refusal(try forged(["model": model.replacingOccurrences(of: "\"hidden\":3", with: "\"hidden\":32.5")]))
        XCTAssertTrue(m.contains("metadata \"model\" is not valid") && m.contains("32.5"), m)
        XCTAssertFalse(m.contains("not valid JSON"), m)
    }

    func testDevicesAreRefusedAsCheckpointsBeforeAnyRead() {
        for dev in ["/dev/zero", "/dev/urandom"] {
            XCTAssertTrue(message { try Checkpoint.load(path: dev) }.contains("is not a regular file"))
        }
    }
}

/// A checkpoint's bytes: forged configs cannot ask for a huge allocation, foreign safetensors and
/// folders are refused in one line.
final class CheckpointBytesValidationTests: XCTestCase {
    func info(_ path: String) -> CorpusInfo { CorpusInfo(name: "x", path: path, bytes: 0, tokens: 0) }


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
}
