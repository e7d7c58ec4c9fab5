// FileSafetyCLITests.swift — issue 22 "Data and files" through the binary: a symbolic-link lock is
// refused and its target kept, a `cp -as` copy of a run is not resumed into the original, a run that
// stopped before its first checkpoint does not block the rerun, and `--resume` works from another
// working directory when the run was trained on a relative corpus path.

import Foundation
import XCTest

final class FileSafetyCLITests: CharrnnCLITestCase {
    var quick: [String] { small + ["--max-iters", "20", "--eval-every", "10"] }

    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }

    func testASymbolicLinkLockIsRefusedInOneLineAndItsTargetKeepsItsBytes() throws {
        let d = workDir()
        let corpus = try writeCorpus(d)
        try "precious\n".write(toFile: d + "/precious", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: d + "/runs/x", withIntermediateDirectories: true)
        XCTAssertEqual(symlink(d + "/precious", d + "/runs/x/.lock"), 0)
        let r = try run(["train", corpus, "--name", "x", "--out", "runs"] + quick, cwd: d)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("runs/x/.lock: is a symbolic link"), r.err)
        XCTAssertEqual(r.err.split(separator: "\n").filter { $0.hasPrefix("error:") }.count, 1, r.err)
        XCTAssertEqual(bytes(d + "/precious"), Data("precious\n".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/runs/x/loss.csv"))
    }

    func testResumingACpAsCopyNeverWritesIntoTheOriginalRun() throws {
        let d = workDir()
        let corpus = try writeCorpus(d)
        XCTAssertEqual(try run(["train", corpus, "--name", "base", "--out", "runs"] + quick, cwd: d).status, 0)
        let cp = try run(["/bin/sh", "-c", "cp -as \"$PWD/runs/base\" runs/fork"], cwd: d, shell: true)
        XCTAssertEqual(cp, 0)
        let names = ["loss.csv", "best.safetensors", "latest.safetensors", ".lock"]
        let before = names.map { bytes(d + "/runs/base/" + $0) }
        let r = try run(["train", "--resume", "runs/fork", "--max-iters", "30"], cwd: d)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("are symbolic links") && r.err.contains("cp -a"), r.err)
        XCTAssertEqual(names.map { bytes(d + "/runs/base/" + $0) }, before)
    }

    func testARunStoppedBeforeItsFirstCheckpointDoesNotBlockTheRerun() throws {
        let d = workDir()
        let corpus = try writeCorpus(d)
        // what a kill, a double Ctrl-C or a refused rank leaves: the lock and an empty loss log
        try FileManager.default.createDirectory(atPath: d + "/runs/x", withIntermediateDirectories: true)
        try "4242\n".write(toFile: d + "/runs/x/.lock", atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: d + "/runs/x/loss.csv", contents: Data())
        let resume = try run(["train", "--resume", "runs/x"], cwd: d)
        XCTAssertNotEqual(resume.status, 0)
        XCTAssertTrue(resume.err.contains("stopped before its first checkpoint"), resume.err)
        let r = try run(["train", corpus, "--name", "x", "--out", "runs"] + quick, cwd: d)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/runs/x/latest.safetensors"))
    }

    func testResumeFromAnotherFolderFindsARelativeCorpus() throws {
        let d = workDir()
        try FileManager.default.createDirectory(atPath: d + "/project/data", withIntermediateDirectories: true)
        let corpus = try writeCorpus(d + "/project/data")
        XCTAssertEqual(try run(["train", "data/" + corpus, "--name", "x", "--out", "runs"] + quick, cwd: d + "/project").status, 0)
        let r = try run(["train", "--resume", "project/runs/x", "--max-iters", "30"], cwd: d)
        XCTAssertEqual(r.status, 0, r.err)
        let info = try run(["info", "project/runs/x"], cwd: d)
        XCTAssertTrue(info.out.contains(d + "/project/data/" + corpus), info.out)
    }

    func testACorpusNameWithANewlineGivesAOneLineError() throws {
        let d = workDir()
        let name = "bad\nname.txt"
        FileManager.default.createFile(atPath: d + "/" + name, contents: Data("ab\u{0}cd".utf8))
        let r = try run(["train", name, "--out", "runs"] + quick, cwd: d)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
        XCTAssertTrue(r.err.contains(#""bad\nname.txt":1:3"#), r.err)
    }

    /// Runs `args` through /bin/sh (for cp), returning the exit status.
    func run(_ args: [String], cwd: String, shell: Bool) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: args[0])
        p.arguments = Array(args.dropFirst())
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }
}
