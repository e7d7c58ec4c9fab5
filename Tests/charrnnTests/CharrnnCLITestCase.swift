// Shared harness for tests that run the built `charrnn` binary.

import Foundation
import XCTest

class CharrnnCLITestCase: XCTestCase {
    /// .build/<config>/charrnn, next to the test bundle.
    var binary: URL {
        var dir = Bundle.main.bundleURL
        if dir.pathExtension == "xctest" { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("charrnn")
    }

    /// Exit status, stdout, stderr and wall time of one run of the binary.
    struct Result { var status: Int32; var out: String; var err: String; var seconds: Double = 0 }

    /// Starts the binary in `cwd`; `env` entries are added to this process's environment.
    func start(_ args: [String], cwd: String, env: [String: String] = [:]) throws -> (Process, Pipe, Pipe) {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        if !env.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
        let o = Pipe(), e = Pipe()
        p.standardOutput = o; p.standardError = e
        try p.run()
        return (p, o, e)
    }

    func finish(_ s: (Process, Pipe, Pipe), since t0: Date = Date()) -> Result {
        let od = s.1.fileHandleForReading.readDataToEndOfFile(), ed = s.2.fileHandleForReading.readDataToEndOfFile()
        s.0.waitUntilExit()
        return Result(status: s.0.terminationStatus, out: String(decoding: od, as: UTF8.self), err: String(decoding: ed, as: UTF8.self),
                      seconds: Date().timeIntervalSince(t0))
    }

    @discardableResult
    func run(_ args: [String], cwd: String, env: [String: String] = [:]) throws -> Result {
        let t0 = Date()
        return finish(try start(args, cwd: cwd, env: env), since: t0)
    }

    /// Folders made by `workDir`, removed after each test.
    var workDirs: [String] = []

    override func tearDown() {
        for d in workDirs { try? FileManager.default.removeItem(atPath: d) }
        workDirs = []
        super.tearDown()
    }

    /// A fresh temporary folder (removed after the test).
    func workDir() -> String {
        let d = NSTemporaryDirectory() + "charrnn-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        workDirs.append(d)
        return d
    }

    /// A small generated corpus (English and a few Chinese characters) in `dir`; returns its name.
    func writeCorpus(_ dir: String, name: String = "corpus.txt", lines n: Int = 300) throws -> String {
        let lines = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
                     "床前明月光，疑是地上霜。", "The slings and arrows of outrageous fortune,", "舉頭望明月，低頭思故鄉。"]
        let s = (0..<n).map { lines[$0 % lines.count] + "\n" }.joined()
        try s.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        return name
    }

    let small = ["--hidden", "32", "--seq", "20", "--batch", "8", "--threads", "1", "--lr", "0.03"]
}
