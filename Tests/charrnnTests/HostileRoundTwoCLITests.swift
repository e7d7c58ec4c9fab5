// HostileRoundTwoCLITests.swift — the second hostile round (issue 12) through the built binary: a
// second process on a run folder, stdout that cannot be written (/dev/full, a full tmpfs, a closed
// pipe), SIGHUP, inputs that used to trap (absurd iteration counts, eval sizes, bench vocabularies,
// devices and pipes as corpus or checkpoint, forged metadata), and messages that named the wrong
// reason. Every failure is one line on stderr with a non-zero exit; nothing may crash.

import Foundation
import XCTest

final class HostileRoundTwoCLITests: CharrnnCLITestCase {
    var mounts: [String] = []
    var started: [Process] = []

    override func tearDown() {
        for p in started where p.isRunning { p.terminate(); p.waitUntilExit() }
        started = []
        for m in mounts.reversed() { _ = sh("umount '\(m)'") }
        mounts = []
        super.tearDown()
    }

    @discardableResult
    func sh(_ script: String, cwd: String? = nil) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    let tiny = ["--hidden", "16", "--seq", "20", "--batch", "4", "--threads", "1"]

    /// Runs the binary with stdout going to the file (or device) at `stdout`.
    func run(_ args: [String], cwd: String, stdout path: String) throws -> Result {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        guard let out = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileNoSuchFile) }
        let e = Pipe()
        p.standardOutput = out; p.standardError = e
        try p.run()
        let ed = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try out.close()
        return Result(status: p.terminationStatus, out: "", err: String(decoding: ed, as: UTF8.self))
    }

    func assertOneLineError(_ r: Result, contains: String..., file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, r.err, file: file, line: line)
        XCTAssertEqual(r.err.split(separator: "\n").count, 1, "stderr is not one line: \(r.err)", file: file, line: line)
        for c in contains { XCTAssertTrue(r.err.contains(c), "\(c) not in: \(r.err)", file: file, line: line) }
    }

    /// `run` under timeout(1): a hang is exit status 124 after 60 s, not a test that never ends. (The
    /// FIFO cases: the writer has written and gone by the time a second open would wait for it.)
    func bounded(_ args: [String], cwd: String) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = ["-k", "5", "60", binary.path] + args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        let o = Pipe(), e = Pipe()
        p.standardOutput = o; p.standardError = e
        try p.run()
        return finish((p, o, e))
    }

    /// A finished small run under dir/checkpoints/<name>.
    func trained(_ dir: String, name: String = "r") throws -> String {
        let corpus = try writeCorpus(dir)
        let r = try run(["train", corpus, "--max-iters", "5", "--eval-every", "5", "--name", name] + tiny, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        return dir + "/checkpoints/" + name
    }

    /// Starts a long run and waits until its first checkpoint is written.
    func startLongRun(_ dir: String, name: String, stdout: Pipe? = nil) throws -> (Process, Pipe, Pipe) {
        let corpus = try writeCorpus(dir)
        let s = try start(["train", corpus, "--max-iters", "200000", "--eval-every", "5", "--name", name] + tiny, cwd: dir)
        started.append(s.0)
        let latest = dir + "/checkpoints/\(name)/latest.safetensors"
        let t0 = Date()
        while !FileManager.default.fileExists(atPath: latest) && s.0.isRunning && Date().timeIntervalSince(t0) < 60 { usleep(20_000) }
        XCTAssertTrue(s.0.isRunning, "the long run ended early")
        return s
    }

    // MARK: - Run folders

    func testASecondProcessOnARunIsRefusedWithTheHoldersPidAndTheLockDiesWithIt() throws {
        let dir = workDir()
        let first = try startLongRun(dir, name: "keep")
        let corpus = try writeCorpus(dir)
        for args in [["train", corpus, "--name", "keep", "--overwrite", "--max-iters", "2"] + tiny,
                     ["train", "--resume", "checkpoints/keep", "--max-iters", "2"]] {
            let r = try run(args, cwd: dir)
            assertOneLineError(r, contains: "checkpoints/keep: another charrnn process (pid \(first.0.processIdentifier)) is writing this run")
        }
        kill(first.0.processIdentifier, SIGKILL)
        first.0.waitUntilExit()
        // no stale lock after a kill -9: the run resumes (to two iterations past the last logged one,
        // which is at or after the latest checkpoint)
        let log = try String(contentsOfFile: dir + "/checkpoints/keep/loss.csv", encoding: .utf8)
        let last = log.split(separator: "\n").last.flatMap { Int($0.split(separator: ",")[0]) } ?? 0
        let r = try run(["train", "--resume", "checkpoints/keep", "--max-iters", String(last + 2)], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
    }

    func testAnExistingRunNeedsOverwriteAndNamesAreOneComponent() throws {
        let dir = workDir()
        _ = try trained(dir, name: "keep")
        let corpus = "corpus.txt"
        assertOneLineError(try run(["train", corpus, "--name", "keep", "--max-iters", "2"] + tiny, cwd: dir),
                           contains: "checkpoints/keep: already holds a run", "--overwrite")
        assertOneLineError(try run(["train", corpus, "--name", "keep", "--init-from", "checkpoints/keep", "--overwrite", "--max-iters", "2"], cwd: dir),
                           contains: "cannot replace its own source")
        XCTAssertEqual(try run(["train", corpus, "--name", "keep", "--overwrite", "--max-iters", "2"] + tiny, cwd: dir).status, 0)
        for bad in ["", ".", "..", "../x"] {
            let r = try run(["train", corpus, "--name", bad] + tiny, cwd: dir)
            XCTAssertEqual(r.status, 64, "--name \(bad.debugDescription): \(r.err)")
            XCTAssertTrue(r.err.contains("a run name must be one folder name"), r.err)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["checkpoints", "corpus.txt"])
        // a run name with a space is quoted in the commands printed for it
        let spaced = try run(["train", corpus, "--name", "my run", "--max-iters", "2"] + tiny, cwd: dir)
        XCTAssertTrue(spaced.err.contains("sample with: charrnn sample --checkpoint 'checkpoints/my run'"), spaced.err)
    }

    func testResumeWarnsForEveryFlagItIgnores() throws {
        let dir = workDir()
        let run = try trained(dir)
        let r = try self.run(["train", "--resume", run, "--max-iters", "6", "--hidden", "64", "--model", "gru", "--lr", "0.5", "--batch", "3"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        for flag in ["--hidden", "--model", "--lr", "--batch"] {
            XCTAssertTrue(r.err.contains("warning: \(flag) ignored: --resume continues the run"), "\(flag): \(r.err)")
        }
        let ft = try self.run(["train", "corpus.txt", "--init-from", run, "--name", "ft", "--max-iters", "2", "--softmax", "adaptive", "--max-vocab", "5"], cwd: dir)
        XCTAssertEqual(ft.status, 0, ft.err)
        for flag in ["--softmax", "--max-vocab"] {
            XCTAssertTrue(ft.err.contains("warning: \(flag) ignored: --init-from takes"), "\(flag): \(ft.err)")
        }
    }

    // MARK: - Standard output

    func testAFailedWriteToStdoutIsOneLineAndANonZeroExit() throws {
        let dir = workDir()
        let run = try trained(dir)
        for args in [["info", run], ["info", "--json", run], ["eval", "corpus.txt", "--checkpoint", run, "--json"],
                     ["eval", "corpus.txt", "--checkpoint", run], ["sample", "--checkpoint", run, "--length", "100", "--seed", "1"],
                     ["--help"], ["train", "--help"], ["help", "sample"], ["--version"]] {
            assertOneLineError(try self.run(args, cwd: dir, stdout: "/dev/full"), contains: "cannot write to standard output: No space left on device")
        }
    }

    func testSampleOntoAFullFilesystemFails() throws {
        try XCTSkipUnless(getuid() == 0, "needs root to mount a tmpfs")
        let dir = workDir()
        let run = try trained(dir)
        let full = dir + "/full"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        XCTAssertEqual(sh("mount -t tmpfs -o size=16k tmpfs '\(full)'"), 0, "mount(8) of a tmpfs")
        mounts.append(full)
        _ = FileManager.default.createFile(atPath: full + "/s.txt", contents: nil)
        let r = try self.run(["sample", "--checkpoint", run, "--length", "100000", "--seed", "1"], cwd: dir, stdout: full + "/s.txt")
        assertOneLineError(r, contains: "cannot write to standard output: No space left on device")
    }

    func testAClosedPipeEndsTrainingLikeSIGTERMAndKeepsTheWork() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let p = Process()
        p.executableURL = binary
        p.arguments = ["train", corpus, "--max-iters", "100000", "--eval-every", "5", "--name", "piped"] + tiny
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let o = Pipe(), e = Pipe()
        p.standardOutput = o; p.standardError = e
        try p.run()
        started.append(p)
        // `| head -0`: the reader goes away before the first progress line
        try o.fileHandleForReading.close()
        let err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, "killed by a signal: \(err)")
        XCTAssertEqual(p.terminationStatus, 141, err)
        XCTAssertTrue(err.contains("cannot write to standard output: Broken pipe") && err.contains("saved checkpoints/piped/latest.safetensors"), err)
        XCTAssertTrue(err.contains("resume with: charrnn train --resume checkpoints/piped"), err)
        XCTAssertEqual(try run(["train", "--resume", "checkpoints/piped", "--max-iters", "12"], cwd: dir).status, 0)
    }

    func testSIGHUPSavesLatestAndExits129() throws {
        let dir = workDir()
        let s = try startLongRun(dir, name: "hup")
        kill(s.0.processIdentifier, SIGHUP)
        let r = finish(s)
        XCTAssertEqual(s.0.terminationReason, .exit, r.err)
        XCTAssertEqual(r.status, 129, r.err)
        XCTAssertTrue(r.err.contains("interrupted at iteration") && r.err.contains("saved checkpoints/hup/latest.safetensors"), r.err)
    }

    // MARK: - Inputs that used to trap

    func testAbsurdCountsAreRefusedOrHandledNeverATrap() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        for (args, expected) in [(["--epochs", "1e16"], "--epochs must be positive and at most 1000000000 (got 1e+16)"),
                                 (["--epochs", "inf", "--max-iters", "3"], "--epochs must be positive"),
                                 (["--max-iters", "9223372036854775807", "--eval-every", "1"], "--max-iters must be between 1 and"),
                                 (["--lr", "1e39"], "--lr must be between 1e-10 and 100 (got 1e+39)"),
                                 (["--lr", "1e-50"], "--lr must be between 1e-10 and 100 (got 1e-50)"),
                                 (["--clip", "1e39"], "--clip must be between 0 and 1000000000 (got 1e+39)"),
                                 (["--dropout", "0.9999999999"], "--dropout must be between 0 and 0.99 (got 0.9999999999)"),
                                 (["--threads", "100000"], "--threads must be 0 (all cores) or between 1 and")] {
            let r = try run(["train", corpus] + tiny.filter { $0 != "--threads" && $0 != "1" } + args, cwd: dir)
            XCTAssertEqual(r.status, 64, "\(args): \(r.err)")
            XCTAssertTrue(r.err.hasPrefix("Error: ") && r.err.contains(expected), "\(args): \(r.err)")
        }
        // the 64-bit total in the progress line, and an epoch count far beyond the minibatches
        let big = try run(["train", corpus, "--max-iters", "\(1 << 40)", "--eval-every", "1", "--name", "big"] + tiny, cwd: dir,
                          env: ["CHARRNN_FAULT_NONFINITE": "3"])
        XCTAssertTrue(big.out.contains("iter 1/1099511627776 "), big.out)
    }

    func testEvalClampsItsSizesToTheText() throws {
        let dir = workDir()
        let run = try trained(dir)
        let exact = try self.run(["eval", "corpus.txt", "--checkpoint", run, "--batch", "1", "--json"], cwd: dir)
        XCTAssertEqual(exact.status, 0, exact.err)
        for args in [["--batch", "1000000"], ["--seq", "100000000", "--batch", "1"], ["--seq", "4611686018427387904", "--batch", "4"]] {
            let r = try self.run(["eval", "corpus.txt", "--checkpoint", run, "--json"] + args, cwd: dir)
            XCTAssertEqual(r.status, 0, "\(args): \(r.err)")
            XCTAssertLessThan(r.seconds, 60)
        }
        let one = try self.run(["eval", "corpus.txt", "--checkpoint", run, "--json", "--seq", "100000000", "--batch", "1"], cwd: dir)
        func loss(_ s: String) throws -> Double {
            try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])?["loss"] as? Double)
        }
        // the same predictions from the same states; only the GEMM blocking of the steps differs
        XCTAssertEqual(try loss(one.out), try loss(exact.out), accuracy: 1e-5, "clamping changed the score")
    }

    func testBenchVocabulariesPastTheSurrogates() throws {
        let dir = workDir()
        let r = try run(["bench", "--vocab", "35329", "--hidden", "4", "--layers", "1", "--seq", "2", "--batch", "2", "--iters", "1",
                         "--warmup", "0", "--sample-length", "2", "--threads", "1"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("vocab 35329"), r.out)
    }

    func testDevicesPipesAndFIFOsAsCorpusOrCheckpoint() throws {
        let dir = workDir()
        for dev in ["/dev/zero", "/dev/urandom"] {
            let t = try run(["train", dev] + tiny, cwd: dir)
            assertOneLineError(t, contains: "\(dev) (byte ", "): not a text file")
            XCTAssertLessThan(t.seconds, 30)
            for cmd in [["info", dev], ["sample", "--checkpoint", dev], ["eval", "x", "--checkpoint", dev]] {
                assertOneLineError(try run(cmd, cwd: dir), contains: "\(dev): is not a regular file")
            }
        }
        _ = try writeCorpus(dir)
        // a pipe on stdin, read once
        let p = Process()
        p.executableURL = binary
        p.arguments = ["train", "/dev/stdin", "--max-iters", "2", "--name", "stdin"] + tiny
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        p.standardInput = FileHandle(forReadingAtPath: dir + "/corpus.txt")
        let e = Pipe(); p.standardError = e; p.standardOutput = FileHandle.nullDevice
        try p.run()
        let err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        // a regular file as stdin is fine either way; a real pipe:
        XCTAssertEqual(p.terminationStatus, 0, err)
        XCTAssertEqual(sh("cat corpus.txt | '\(binary.path)' train /dev/stdin --max-iters 2 --name piped " + tiny.joined(separator: " "), cwd: dir), 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/checkpoints/piped/best.safetensors"))
        // a FIFO, opened once; also as the corpus of a resume (no size to compare, read once)
        XCTAssertEqual(mkfifo(dir + "/fifo", 0o600), 0)
        /// Writes the corpus into the FIFO once (from a shell), for one charrnn run to read.
        func feedFIFO() throws -> Process {
            let w = Process()
            w.executableURL = URL(fileURLWithPath: "/bin/sh")
            w.arguments = ["-c", "cat corpus.txt > fifo"]
            w.currentDirectoryURL = URL(fileURLWithPath: dir)
            try w.run()
            started.append(w)
            return w
        }
        for args in [["train", "--resume", "checkpoints/piped", "fifo", "--max-iters", "4"],
                     ["train", "fifo", "--max-iters", "2", "--name", "fifo"] + tiny] {
            let writer = try feedFIFO()
            let r = try bounded(args, cwd: dir)
            XCTAssertEqual(r.status, 0, "124 = hung on a second open of the FIFO: \(r.err)")
            writer.waitUntilExit()
        }
    }

    /// The checkpoint at `path` with the metadata value of `key` replaced by `value` (the header
    /// rebuilt and re-padded; data offsets are relative to the data section, so they still hold).
    func forged(_ path: String, _ key: String, _ value: String) throws -> [UInt8] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        var header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self).trimmingCharacters(in: .whitespaces)
        guard let r = header.range(of: "\"\(key)\":\"") else { XCTFail("\(key) not in the header"); return bytes }
        let end = header[r.upperBound...].firstIndex(of: "\"")!
        header.replaceSubrange(r.upperBound..<end, with: value)
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        return withUnsafeBytes(of: UInt64(h.count).littleEndian, Array.init) + h + bytes[(8 + n)...]
    }

    func testForgedCheckpointValuesThatUsedToTrap() throws {
        let dir = workDir()
        let run = try trained(dir)
        let path = dir + "/forged.safetensors"
        for value in ["1e19", "-1e308"] {
            try Data(try forged(run + "/latest.safetensors", "elapsed_sec", value)).write(to: URL(fileURLWithPath: path))
            for cmd in [["info", path], ["train", "--resume", path, "--max-iters", "7"]] {
                assertOneLineError(try self.run(cmd, cwd: dir), contains: "\"elapsed_sec\" is")
            }
        }
        // a NaN best loss is a valid record of a run whose validation overflowed: shown, not a raw EncodingError
        try Data(try forged(run + "/best.safetensors", "best_val_loss", "nan")).write(to: URL(fileURLWithPath: path))
        let r = try self.run(["info", "--json", path], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("\"bestValLoss\":\"nan\""), r.out)
    }
}
