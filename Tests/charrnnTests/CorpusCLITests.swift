// CorpusCLITests.swift — hostile corpora through `train`: one-line errors with file and offset, nothing
// written; a 100 MB line without a newline trains within seconds.

import Foundation
import XCTest

final class CorpusCLITests: HostileCLITestCase {
    func testHostileCorporaGiveOneLineErrorsAndWriteNothing() throws {
        let dir = workDir()
        let cases: [(String, [UInt8], String)] = [
            ("empty.txt", [], "empty.txt: corpus is empty"),
            ("newlines.txt", Array(repeating: 0x0A, count: 5000), "newlines.txt: the corpus has only one distinct character (\"\\n\")"),
            ("one.txt", Array(repeating: 0x61, count: 5000), "one.txt: the corpus has only one distinct character (\"a\")"),
            ("start.txt", [0xFF] + Array("hello".utf8), "start.txt:1:1 (byte 0): invalid UTF-8 sequence 0xFF"),
            ("middle.txt", Array("hello\nwor".utf8) + [0xC3, 0x28] + Array("ld\n".utf8), "middle.txt:2:4 (byte 9): invalid UTF-8 sequence 0xC3"),
            ("end.txt", Array("hello".utf8) + [0xE4, 0xB8], "end.txt:1:6 (byte 5): invalid UTF-8 sequence 0xE4 0xB8"),
            ("overlong.txt", Array("a".utf8) + [0xC0, 0xAF], "overlong.txt:1:2 (byte 1): invalid UTF-8 sequence 0xC0 0xAF"),
            ("surrogate.txt", Array("ab".utf8) + [0xED, 0xA0, 0x80], "surrogate.txt:1:3 (byte 2): invalid UTF-8 sequence 0xED 0xA0 0x80"),
        ]
        for (name, bytes, message) in cases {
            _ = write(dir, name, bytes)
            for unit in ["scalar", "grapheme"] {
                let r = try run(["train", name, "--unit", unit] + tiny, cwd: dir)
                assertOneLineError(r, contains: message)
            }
        }
        let missing = try run(["train", "nope.txt"], cwd: dir)
        assertOneLineError(missing, contains: "cannot read nope.txt: No such file or directory")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoints"), "nothing may be written for bad input")
    }

    func testNULBytesAreReportedWithFileAndOffset() throws {
        let dir = workDir()
        let name = write(dir, "nul.txt", Array(String(repeating: "To be, or not to be.\n", count: 300).utf8) + [0x00] + Array("tail\n".utf8))
        let r = try run(["train", name, "--max-iters", "1"] + tiny, cwd: dir)
        assertOneLineError(r, contains: "nul.txt", "6300")
    }

    func testHundredMegabyteLineWithoutNewlineTrainsWithinSeconds() throws {
        let dir = workDir()
        let path = dir + "/long.txt"
        let block = [UInt8](repeating: 0, count: 1 << 20).indices.map { UInt8(ascii: "a") + UInt8($0 % 26) }
        FileManager.default.createFile(atPath: path, contents: nil)
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        let chunk = Data(block)
        for _ in 0..<100 { try fh.write(contentsOf: chunk) }
        try fh.close()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try run(["train", "long.txt", "--max-iters", "1", "--hidden", "8", "--layers", "1", "--seq", "100", "--batch", "1000",
                         "--train-frac", "0.9", "--val-frac", "0.005", "--threads", "1", "--name", "long"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("104857600 tokens"), r.err)
        XCTAssertLessThan(r.seconds, 30, "a 100 MB line must load and train one iteration within seconds")
    }
}
