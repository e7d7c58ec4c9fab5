// OutputCLITests.swift — standard output that cannot be written (/dev/full, a full tmpfs, a closed pipe)
// and SIGHUP: one line on stderr, a non-zero exit, and the run's work kept.

import Foundation
import XCTest

final class OutputCLITests: HostileCLITestCase {
    func testAFailedWriteToStdoutIsOneLineAndANonZeroExit() throws {
        let dir = workDir()
        let run = try trained(dir)
        for args in [["info", run], ["info", "--json", run], ["eval", "corpus.txt", "--checkpoint", run, "--json"],
                     ["eval", "corpus.txt", "--checkpoint", run], ["sample", "--checkpoint", run, "--length", "100", "--seed", "1"],
                     ["--help"], ["train", "--help"], ["help", "sample"], ["--version"]] {
            var r = try self.run(args, cwd: dir, stdout: "/dev/full")
            // sample names its checkpoint and seed on stderr before it writes anything
            if args[0] == "sample" { r.err = r.err.split(separator: "\n").filter { !$0.hasPrefix("checkpoint ") }.joined(separator: "\n") }
            assertOneLineError(r, contains: "cannot write to standard output: No space left on device")
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
        assertLastLineError(r, contains: "cannot write to standard output: No space left on device")
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
}
