// CLIOddsTests.swift — the command line's odd corners (issue 22, "CLI odds"): text options that are
// not UTF-8, run folders named after corpus files with control characters, a prime of thousands of
// unknown characters, sample and eval under mpirun, one "error: " for every failure, and the
// suggestion for a mistyped option.

import Foundation
import XCTest

extension HostileCLITestCase {
    /// ASAN_OPTIONS for processes that initialise Open MPI (the CI's AddressSanitizer run): Open MPI's
    /// components allocate at MPI_Init and are unloaded (dlclose) before exit, so LeakSanitizer
    /// reports their memory from "<unknown module>", which no suppression can name. Leak detection
    /// is off for those processes only; address errors are still reported.
    static let mpiASanOptions = "detect_leaks=0"

    /// mpirun (Open MPI) with `np` ranks of the binary, stdout to the file at `path`; nil when mpirun is not installed.
    func mpirun(np: Int, _ args: [String], cwd: String, stdout path: String) throws -> Result? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = ["-k", "5", "120", "/usr/bin/mpirun", "--oversubscribe", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo",
                       "--mca", "oob_tcp_if_include", "lo", "-np", "\(np)", binary.path] + args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        p.environment = ProcessInfo.processInfo.environment.merging(["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                                                                      "ASAN_OPTIONS": Self.mpiASanOptions]) { $1 }
        FileManager.default.createFile(atPath: path, contents: nil)
        guard let out = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileNoSuchFile) }
        let e = Pipe()
        p.standardOutput = out; p.standardError = e
        try p.run()
        let ed = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try out.close()
        return Result(status: p.terminationStatus, out: (try? String(contentsOfFile: path, encoding: .utf8)) ?? "", err: String(decoding: ed, as: UTF8.self))
    }

    /// `script` under /bin/sh with $BIN the binary (for arguments a Swift String cannot hold).
    func shell(_ script: String, cwd: String) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        p.environment = ProcessInfo.processInfo.environment.merging(["BIN": binary.path]) { $1 }
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        let o = Pipe(), e = Pipe()
        p.standardOutput = o; p.standardError = e
        try p.run()
        return finish((p, o, e))
    }
}

final class CLIOddsTests: HostileCLITestCase {
    func testTextOptionsThatAreNotUTF8AreNamedAsSuch() throws {
        let dir = workDir()
        _ = try trainSmall(dir, name: "r")
        for (flags, expected) in [(#"--prime "$(printf 'ab\377cd')""#, "--prime is not valid UTF-8: byte 3 of its value is 0xFF"),
                                  (#"--prime="$(printf '\303(')""#, "--prime is not valid UTF-8: byte 1 of its value is 0xC3"),
                                  (#"--stop "$(printf 'x\355\240\200')""#, "--stop is not valid UTF-8: byte 2 of its value is 0xED")] {
            let r = try shell("\"$BIN\" sample --checkpoint checkpoints/r --length 5 \(flags)", cwd: dir)
            XCTAssertEqual(r.status, 64, r.err)
            XCTAssertTrue(r.err.hasPrefix("error: " + expected), "\(flags): \(r.err)")
            XCTAssertFalse(r.err.contains("\u{FFFD}"), r.err)
        }
        // valid UTF-8 that merely contains U+FFFD is text like any other
        let ok = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "5", "--prime", "To\u{FFFD}", "--seed", "1"], cwd: dir)
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertTrue(ok.err.contains(#"were skipped: "�""#), ok.err)
    }

    func testARunFolderNamedAfterAControlCharacterFileNameIsSanitized() throws {
        let dir = workDir()
        let src = writeShortCorpus(dir)
        let odd = "evil\n\u{1B}[31mred\u{202E}txt.txt"
        try FileManager.default.moveItem(atPath: dir + "/" + src, toPath: dir + "/" + odd)
        let r = try run(["train", odd, "--max-iters", "2", "--eval-every", "2"] + tiny, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let runs = try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").filter { !$0.hasPrefix(".") }
        XCTAssertEqual(runs.count, 1)
        XCTAssertTrue(runs[0].hasPrefix("evil__[31mred_txt-"), runs[0])
        XCTAssertTrue(r.err.contains("sample with: charrnn sample --checkpoint 'checkpoints/evil__[31mred_txt-"), r.err)
        // a long name keeps the folder name within NAME_MAX
        let long = String(repeating: "é", count: 120) + ".txt"   // 244 bytes
        try FileManager.default.moveItem(atPath: dir + "/" + odd, toPath: dir + "/" + long)
        let l = try run(["train", long, "--max-iters", "2", "--eval-every", "2"] + tiny, cwd: dir)
        XCTAssertEqual(l.status, 0, l.err)
        let longRun = try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints").first { $0.hasPrefix("é") }
        XCTAssertEqual(longRun?.utf8.count, 200 + 16, longRun ?? "no run")
    }

    /// One-character folder names (Foundation's deletingLastPathComponent trapped on "o" and "x/"):
    /// a run under `--out o`, named `r`, plotted through `o/r/loss.csv` and sampled through `o/r/`.
    func testOneCharacterFolderNames() throws {
        let dir = workDir()
        let src = writeShortCorpus(dir)
        let r = try run(["train", src, "--out", "o", "--name", "r", "--max-iters", "2", "--eval-every", "2"] + tiny, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/o/r/best.safetensors"), r.err)
        let p = try run(["plot", "o/r/loss.csv", "-o", "o/r/loss.svg"], cwd: dir)
        XCTAssertEqual(p.status, 0, p.err)
        let s = try run(["sample", "--checkpoint", "o/r/", "--length", "5", "--seed", "1"], cwd: dir)
        XCTAssertEqual(s.status, 0, s.err)
        let resumed = try run(["train", "--resume", "o/r", "--max-iters", "3", "--eval-every", "3"] + tiny, cwd: dir)
        XCTAssertEqual(resumed.status, 0, resumed.err)
    }

    /// A negative number is a value, refused for what it is (not "Missing value", as for --temp -1).
    func testNegativeNumbersAreValuesNotFlags() throws {
        let dir = workDir()
        let src = writeShortCorpus(dir)
        for (flag, value) in [("--lr", "-1"), ("--patience", "-1"), ("--max-time", "-5m"), ("--dropout", "-0.5"), ("--min-lr", "-1e-4")] {
            let r = try run(["train", src, flag, value, "--max-iters", "1"] + tiny, cwd: dir)
            XCTAssertNotEqual(r.status, 0, flag)
            XCTAssertFalse(r.err.contains("Missing value"), r.err)
            XCTAssertTrue(r.err.hasPrefix("error: ") && r.err.contains(flag), r.err)
        }
    }

    func testAPrimeOfManyUnknownCharactersIsListedInOneShortLine() throws {
        let dir = workDir()
        _ = try trainSmall(dir, name: "r")
        let unknown = String((0..<20_000).map { Character(Unicode.Scalar(0x20000 + $0)!) })   // CJK extension B
        let mixed = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "5", "--seed", "1", "--prime", "To" + unknown], cwd: dir)
        XCTAssertEqual(mixed.status, 0, mixed.err)
        let warning = try XCTUnwrap(mixed.err.split(separator: "\n").first { $0.hasPrefix("warning: ") })
        XCTAssertLessThan(warning.utf8.count, 400, String(warning))
        XCTAssertTrue(warning.hasSuffix(" and 19980 more"), String(warning))
        let none = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "5", "--prime", unknown], cwd: dir)
        assertOneLineError(none, contains: "--prime has no character in the model's vocabulary: \"\u{20000}\"", " and 19980 more")
        XCTAssertLessThan(none.err.utf8.count, 400)
    }

    func testSampleAndEvalRunOnceUnderMpirun() throws {
        let dir = workDir()
        _ = try trainSmall(dir, name: "r")
        guard let s = try mpirun(np: 2, ["sample", "--checkpoint", "checkpoints/r", "--length", "50", "--seed", "4", "--output-dir", "out"],
                                 cwd: dir, stdout: dir + "/log") else { throw XCTSkip("mpirun is not installed") }
        XCTAssertEqual(s.status, 0, s.err)
        XCTAssertEqual(s.err.components(separatedBy: "note: sample runs in one process: under mpirun, rank 0 alone runs it (the other 1 rank exit)").count, 2, s.err)
        XCTAssertEqual(s.err.components(separatedBy: "--seed 4 repeats this text").count, 2, "one rank sampled: \(s.err)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/out"), ["sample-1.txt"])
        let e = try XCTUnwrap(try mpirun(np: 2, ["eval", "corpus.txt", "--checkpoint", "checkpoints/r"], cwd: dir, stdout: dir + "/elog"))
        XCTAssertEqual(e.status, 0, e.err)
        XCTAssertEqual(e.out.split(separator: "\n").filter { $0.hasPrefix("corpus.txt: ") }.count, 1, e.out)
    }

    func testEveryFailureStartsWithErrorAndMistypedOptionsGetCharrnnsSuggestion() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        for (args, expected) in [(["train", corpus, "--iters", "5"], "error: Unknown option '--iters'. Did you mean '--max-iters'?"),
                                 (["train", corpus, "--epoch", "2"], "error: Unknown option '--epoch'. Did you mean '--epochs'?"),
                                 (["sample", "--tmp", "1"], "error: Unknown option '--tmp'. Did you mean '--temp'?"),
                                 (["train", corpus, "--hidden", "0"], "error: --hidden must be at least 1"),
                                 (["train"], "error: Missing expected argument"),
                                 (["sample", "--checkpoint", "nowhere"], "error: nowhere: no such checkpoint")] {
            let r = try run(args, cwd: dir)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.err.hasPrefix(expected), "\(args): \(r.err)")
            XCTAssertFalse(r.err.contains("Error:"), r.err)
        }
        XCTAssertEqual(try run(["train", corpus, "--iters", "5"], cwd: dir).status, 64, "a usage error keeps its status")
    }

    func testARanksOwnOutGetsNoFolder() throws {
        let dir = workDir()
        let corpus = writeShortCorpus(dir)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun is not installed") }
        let r = try shell("ASAN_OPTIONS=\(Self.mpiASanOptions) OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout -k 5 120 mpirun --oversubscribe --mca btl self,tcp "
                          + "--mca btl_tcp_if_include lo --mca oob_tcp_if_include lo -np 2 sh -c '\"$BIN\" train \(corpus) --max-iters 4 --eval-every 2 "
                          + "\(tiny.joined(separator: " ")) --name x --out out-$OMPI_COMM_WORLD_RANK'", cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/out-0/x/latest.safetensors"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out-1"), "rank 1 made its own --out")
    }
}
