// HostileCLITestCase.swift — what the CLI tests of hostile input and faults share on top of
// CharrnnCLITestCase: tmpfs mounts (root only) and long runs started in the background, both undone in
// tearDown; shell helpers; a tiny model's flags; runs with stdout redirected or under timeout(1); small
// finished runs; forged checkpoint metadata; and the assertions that a failure is one line on stderr
// (or the last line, after progress) with a non-zero exit.

import Foundation
import XCTest

class HostileCLITestCase: CharrnnCLITestCase {
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

    func trainSmall(_ dir: String, name: String, extra: [String] = []) throws -> String {
        let corpus = writeShortCorpus(dir)
        let r = try run(["train", corpus, "--max-iters", "20", "--eval-every", "10", "--name", name] + tiny + extra, cwd: dir)
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
}
