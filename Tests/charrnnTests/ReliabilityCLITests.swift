// ReliabilityCLITests.swift — reliability through the built binary: the hostile-input list, absurd
// options, and fault injection (disk full and a read-only folder on small tmpfs mounts when the tests
// run as root, NaN/Inf gradients via CHARRNN_FAULT_NONFINITE, a corpus replaced during training).
// Every failure must be one line on stderr with a non-zero exit, and no checkpoint may be lost.

import Foundation
import XCTest

final class ReliabilityCLITests: CharrnnCLITestCase {
    var mounts: [String] = []

    override func tearDown() {
        for m in mounts.reversed() { _ = shell("umount", m) }
        mounts = []
        super.tearDown()
    }

    @discardableResult
    func shell(_ args: String...) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// Mounts a tmpfs at `path` (root only); skips the test when that is not possible.
    func mountTmpfs(_ path: String, options: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try XCTSkipUnless(getuid() == 0 && shell("mount", "-t", "tmpfs", "-o", options, "tmpfs", path) == 0,
                          "needs root and mount(8) for a tmpfs")
        mounts.append(path)
    }

    func write(_ dir: String, _ name: String, _ bytes: [UInt8]) -> String {
        FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(bytes))
        return name
    }

    /// A shorter corpus than the shared one (200 lines of three), for runs that only need to start.
    func writeShortCorpus(_ dir: String, _ name: String = "corpus.txt") -> String {
        let lines = ["To be, or not to be, that is the question:", "床前明月光，疑是地上霜。", "The slings and arrows of outrageous fortune,"]
        return write(dir, name, Array((0..<200).map { lines[$0 % lines.count] + "\n" }.joined().utf8))
    }

    let tiny = ["--hidden", "16", "--seq", "20", "--batch", "4", "--threads", "1"]

    /// The failure is exactly one line on stderr and the exit status is non-zero.
    func assertOneLineError(_ r: Result, contains: String..., file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, r.err, file: file, line: line)
        let lines = r.err.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stderr is not one line: \(r.err)", file: file, line: line)
        for c in contains { XCTAssertTrue(r.err.contains(c), "\(c) not in: \(r.err)", file: file, line: line) }
    }

    /// A failure after training started: the progress lines come first, the error is the last line.
    func assertLastLineError(_ r: Result, contains: String..., file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, r.err, file: file, line: line)
        let last = r.err.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(last.hasPrefix("error: "), "last stderr line is not the error: \(r.err)", file: file, line: line)
        for c in contains { XCTAssertTrue(last.contains(c), "\(c) not in: \(r.err)", file: file, line: line) }
        XCTAssertFalse(r.err.contains("Fatal error") || r.err.contains("Crash"), r.err, file: file, line: line)
    }

    // MARK: - Hostile corpora

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

    // MARK: - Absurd options

    func testAbsurdOptionsAreArgumentErrorsBeforeAnyWork() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        for (args, flag) in [(["--hidden", "0"], "--hidden"), (["--seq", "0"], "--seq"), (["--batch", "0"], "--batch"),
                             (["--seq", "4611686018427387904", "--batch", "4"], "--seq"), (["--layers", "0"], "--layers"),
                             (["--lr=-1"], "--lr"), (["--dropout", "1"], "--dropout"),
                             (["--hidden", "99999999999"], "--hidden"), (["--layers", "100000"], "--layers")] {
            let r = try run(["train", corpus] + args, cwd: dir)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.err.hasPrefix("Error: ") && r.err.split(separator: "\n")[0].contains(flag), "\(args): \(r.err)")
        }
        let big = try run(["train", corpus, "--batch", "100000"], cwd: dir)
        assertOneLineError(big, contains: "corpus.txt: corpus too small", "--batch 100000")
        for args in [["--temp=-1"], ["--top-p", "2"], ["--top-p", "0"], ["--top-k=-3"], ["--length=-1"]] {
            let r = try run(["sample", "--checkpoint", "nowhere"] + args, cwd: dir)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.err.hasPrefix("Error: "), "\(args): \(r.err)")
            XCTAssertFalse(r.err.contains("nowhere"), "flags are checked before the checkpoint is touched: \(r.err)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoints"), "argument errors must come before any work")
    }

    // MARK: - Hostile checkpoints

    func trainSmall(_ dir: String, name: String, extra: [String] = []) throws -> String {
        let corpus = writeShortCorpus(dir)
        let r = try run(["train", corpus, "--max-iters", "20", "--eval-every", "10", "--name", name] + tiny + extra, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        return dir + "/checkpoints/" + name
    }

    func testDirectoryAsCheckpointAndForeignOrMismatchedCheckpoints() throws {
        let dir = workDir()
        try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
        assertOneLineError(try run(["sample", "--checkpoint", "empty"], cwd: dir), contains: "empty: run directory has no best.safetensors or latest.safetensors")
        try FileManager.default.createDirectory(atPath: dir + "/odd/best.safetensors", withIntermediateDirectories: true)
        assertOneLineError(try run(["sample", "--checkpoint", "odd"], cwd: dir), contains: "odd/best.safetensors: cannot read: Is a directory")
        assertOneLineError(try run(["train", "--resume", "odd/best.safetensors"], cwd: dir), contains: "odd/best.safetensors: run directory has no best.safetensors or latest.safetensors")

        // Another program's safetensors file (a PyTorch-style state dict without charrnn metadata).
        let header = Array(#"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#.utf8)
        var foreign = withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header
        foreign += [Float](repeating: 1, count: 6).withUnsafeBytes(Array.init)
        _ = write(dir, "foreign.safetensors", foreign)
        assertOneLineError(try run(["train", "--resume", "foreign.safetensors"], cwd: dir), contains: "not a charrnn checkpoint")

        // A charrnn GRU checkpoint whose metadata claims another cell type (same header length).
        let runDir = try trainSmall(dir, name: "gru", extra: ["--model", "gru"])
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: runDir + "/latest.safetensors")))
        let from = Array(#"\"cell\":\"gru\""#.utf8), to = Array(#"\"cell\":\"rnn\""#.utf8)
        guard let at = (0...(bytes.count - from.count)).first(where: { bytes[$0..<($0 + from.count)].elementsEqual(from) }) else {
            return XCTFail("cell not found in the checkpoint header")
        }
        bytes.replaceSubrange(at..<(at + from.count), with: to)
        try Data(bytes).write(to: URL(fileURLWithPath: runDir + "/latest.safetensors"))
        assertOneLineError(try run(["train", "--resume", runDir], cwd: dir), contains: "tensor \"rnn.weight_ih_l0\" has shape [48, ", "expected [16, ")
        assertOneLineError(try run(["sample", "--checkpoint", runDir + "/latest.safetensors"], cwd: dir), contains: "(WrongShape)")
    }

    func testPrimeWithOnlyUnknownCharactersIsAnError() throws {
        let dir = workDir()
        let runDir = try trainSmall(dir, name: "p")
        assertOneLineError(try run(["sample", "--checkpoint", runDir, "--prime", "ЖЖ☃", "--length", "5"], cwd: dir),
                           contains: "--prime has no character in the model's vocabulary: \"Ж\" \"☃\"")
        let mixed = try run(["sample", "--checkpoint", runDir, "--prime", "To☃", "--length", "5", "--seed", "1"], cwd: dir)
        XCTAssertEqual(mixed.status, 0, mixed.err)
        XCTAssertTrue(mixed.out.hasPrefix("To☃"))
    }

    // MARK: - Fault injection

    func testNaNGradientStopsTheRunAndSkipNonFiniteSkipsIt() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let r = try run(["train", corpus, "--max-iters", "30", "--eval-every", "10", "--name", "nan"] + tiny, cwd: dir,
                        env: ["CHARRNN_FAULT_NONFINITE": "15"])
        assertLastLineError(r, contains: "training diverged at iteration 15", "the last good checkpoint is checkpoints/nan/latest.safetensors")
        let s = try run(["sample", "--checkpoint", "checkpoints/nan/latest.safetensors", "--length", "20", "--seed", "2"], cwd: dir)
        XCTAssertEqual(s.status, 0, s.err)

        let k = try run(["train", corpus, "--max-iters", "30", "--eval-every", "10", "--name", "skip", "--skip-nonfinite"] + tiny,
                        cwd: dir, env: ["CHARRNN_FAULT_NONFINITE": "15,16"])
        XCTAssertEqual(k.status, 0, k.err)
        XCTAssertTrue(k.err.contains("warning: iteration 15: non-finite"), k.err)
        XCTAssertTrue(k.err.contains("skipped 2 non-finite steps"), k.err)

        let many = try run(["train", corpus, "--max-iters", "40", "--eval-every", "5", "--name", "many", "--skip-nonfinite"] + tiny,
                           cwd: dir, env: ["CHARRNN_FAULT_NONFINITE": (12...40).map(String.init).joined(separator: ",")])
        XCTAssertNotEqual(many.status, 0)
        XCTAssertTrue(many.err.split(separator: "\n").last!.hasPrefix("error: training diverged: 10 steps in a row"), many.err)
    }

    func testDiskFullWhileSavingKeepsThePreviousCheckpoint() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let args = ["train", corpus, "--eval-every", "10", "--name", "r"] + tiny
        // Measure one checkpoint, then give the run room for two (best + latest) but not a third (the temp file).
        let probe = try run(args + ["--max-iters", "10"], cwd: dir)
        XCTAssertEqual(probe.status, 0, probe.err)
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/checkpoints/r/latest.safetensors")[.size] as! Int
        let full = dir + "/full"
        try mountTmpfs(full, options: "size=\((size * 5 / 2 + 8191) / 4096 * 4096)")
        let r = try run(args + ["--max-iters", "40", "--out", full], cwd: dir)
        assertLastLineError(r, contains: "full/r/", "No space left on device")
        let left = try FileManager.default.contentsOfDirectory(atPath: full + "/r").sorted()
        XCTAssertEqual(left, [".lock", "best.safetensors", "latest.safetensors", "loss.csv"], "no temp file may be left behind")
        let s = try run(["sample", "--checkpoint", full + "/r/latest.safetensors", "--length", "10", "--seed", "1"], cwd: dir)
        XCTAssertEqual(s.status, 0, "the previous checkpoint must still load: \(s.err)")
    }

    func testReadOnlyOutputFolderIsAOneLineError() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let ro = dir + "/ro"
        try mountTmpfs(ro, options: "ro,size=64k")
        let r = try run(["train", corpus, "--out", ro, "--max-iters", "5"] + tiny, cwd: dir)
        assertOneLineError(r, contains: "ro/corpus-", "cannot create run directory")
    }

    func testCorpusReplacedDuringTraining() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        let s = try start(["train", corpus, "--max-iters", "1000000", "--eval-every", "20", "--name", "live"] + tiny, cwd: dir)
        let p = s.0
        let latest = dir + "/checkpoints/live/latest.safetensors"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: latest) && Date() < deadline && p.isRunning { usleep(20_000) }
        // Overwrite the corpus in place (same inode, new bytes) while the run is going.
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/" + corpus))
        try fh.truncate(atOffset: 0)
        try fh.write(contentsOf: Data(String(repeating: "A different corpus entirely.\n", count: 100).utf8))
        try fh.close()
        usleep(300_000)
        XCTAssertTrue(p.isRunning, "training must not crash when its corpus file changes (it holds the tokens in memory)")
        p.interrupt()
        let stopped = finish(s)
        XCTAssertEqual(stopped.status, 130, stopped.err)
        let r = try run(["train", "--resume", "checkpoints/live"], cwd: dir)
        assertOneLineError(r, contains: "the corpus changed")
    }
}
