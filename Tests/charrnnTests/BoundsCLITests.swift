// BoundsCLITests.swift — inputs that used to trap are refused or handled, never a crash: absurd options
// and counts, eval sizes clamped to the text, bench vocabularies past the surrogates, devices, pipes and
// FIFOs as corpus or checkpoint, forged checkpoint values.

import Foundation
import XCTest

final class BoundsCLITests: HostileCLITestCase {
    func testAbsurdOptionsAreArgumentErrorsBeforeAnyWork() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        for (args, flag) in [(["--hidden", "0"], "--hidden"), (["--seq", "0"], "--seq"), (["--batch", "0"], "--batch"),
                             (["--seq", "4611686018427387904", "--batch", "4"], "--seq"), (["--layers", "0"], "--layers"),
                             (["--lr=-1"], "--lr"), (["--dropout", "1"], "--dropout"),
                             (["--hidden", "99999999999"], "--hidden"), (["--layers", "100000"], "--layers")] {
            let r = try run(["train", corpus] + args, cwd: dir)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.err.hasPrefix("error: ") && r.err.split(separator: "\n")[0].contains(flag), "\(args): \(r.err)")
        }
        let big = try run(["train", corpus, "--batch", "100000"], cwd: dir)
        assertOneLineError(big, contains: "corpus.txt: corpus too small", "--batch 100000")
        for args in [["--temp=-1"], ["--top-p", "2"], ["--top-p", "0"], ["--top-k=-3"], ["--length=-1"]] {
            let r = try run(["sample", "--checkpoint", "nowhere"] + args, cwd: dir)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.err.hasPrefix("error: "), "\(args): \(r.err)")
            XCTAssertFalse(r.err.contains("nowhere"), "flags are checked before the checkpoint is touched: \(r.err)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoints"), "argument errors must come before any work")
    }

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
            XCTAssertTrue(r.err.hasPrefix("error: ") && r.err.contains(expected), "\(args): \(r.err)")
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
