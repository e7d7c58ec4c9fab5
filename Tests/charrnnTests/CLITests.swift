// End-to-end tests through the built `charrnn` binary: train → checkpoint → sample, the CSV,
// resume, and one-line errors with a non-zero exit for bad input and bad flags.

import Foundation
import XCTest
import CharRNN

final class CLITests: CharrnnCLITestCase {
    func testTrainSampleAndCSV() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let r = try run(["train", corpus, "--max-iters", "60", "--eval-every", "20", "--name", "run1"] + small, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("vocabulary"), r.err)
        let csv = try String(contentsOfFile: dir + "/checkpoints/run1/loss.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "iteration,epoch,train_loss,val_loss,learning_rate,grad_norm,tokens_per_sec,elapsed_sec,event")
        XCTAssertEqual(csv.count, 61)
        let first = Double(csv[1].split(separator: ",")[2])!, last = Double(csv[60].split(separator: ",", omittingEmptySubsequences: false)[2])!
        XCTAssertLessThan(last, first * 0.5, "loss should fall: \(first) → \(last)")
        XCTAssertFalse(csv[20].split(separator: ",", omittingEmptySubsequences: false)[3].isEmpty, "val_loss at the eval iteration")
        XCTAssertTrue(csv[5].split(separator: ",", omittingEmptySubsequences: false)[3].isEmpty, "val_loss empty elsewhere")

        // Default checkpoint = newest run; same seed → same text; valid UTF-8 out.
        let a = try run(["sample", "--length", "200", "--seed", "9"], cwd: dir)
        let b = try run(["sample", "--checkpoint", "checkpoints/run1", "--length", "200", "--seed", "9"], cwd: dir)
        XCTAssertEqual(a.status, 0, a.err)
        XCTAssertEqual(a.out, b.out)
        XCTAssertEqual(a.out.unicodeScalars.count, 200)
        let p = try run(["sample", "--length", "50", "--prime", "To be🦊", "--temp", "0"], cwd: dir)
        XCTAssertEqual(p.status, 0, p.err)
        XCTAssertTrue(p.out.hasPrefix("To be🦊"), p.out)
        XCTAssertTrue(p.err.contains("🦊"), p.err)
    }

    func testResumeThroughTheBinaryContinuesTheSameLossSequence() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "30", "--eval-every", "10", "--dropout", "0.2", "--name", "full"] + small, cwd: dir).status, 0)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "20", "--eval-every", "10", "--dropout", "0.2", "--name", "part"] + small, cwd: dir).status, 0)
        let r = try run(["train", "--resume", "checkpoints/part", "--max-iters", "30"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        func losses(_ run: String) throws -> [Substring] {
            try String(contentsOfFile: dir + "/checkpoints/\(run)/loss.csv", encoding: .utf8).split(separator: "\n").dropFirst()
                .map { $0.split(separator: ",", omittingEmptySubsequences: false)[2] }
        }
        XCTAssertEqual(try losses("full"), try losses("part"))
        XCTAssertEqual(try losses("part").count, 30)
    }

    func testBadInputGivesOneLineErrors() throws {
        let dir = workDir()
        var bytes = Array("hello\nwor".utf8)
        bytes += [0xC3, 0x28]
        bytes += Array("ld\n".utf8)
        FileManager.default.createFile(atPath: dir + "/bad.txt", contents: Data(bytes))
        let r = try run(["train", "bad.txt"], cwd: dir)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("bad.txt:2:4 (byte 9): invalid UTF-8"), r.err)
        XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoints"), "nothing written on bad input")

        let missing = try run(["train", "nope.txt"], cwd: dir)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("nope.txt"), missing.err)

        FileManager.default.createFile(atPath: dir + "/tiny.txt", contents: Data("abc".utf8))
        let tiny = try run(["train", "tiny.txt"], cwd: dir)
        XCTAssertNotEqual(tiny.status, 0)
        XCTAssertTrue(tiny.err.contains("too small"), tiny.err)

        for args in [["train", "x.txt", "--hidden", "0"], ["train", "x.txt", "--seq", "0"], ["sample", "--temp", "-1"],
                     ["sample", "--top-p", "2"], ["train", "x.txt", "--model", "transformer"]] {
            let e = try run(args, cwd: dir)
            XCTAssertNotEqual(e.status, 0, "\(args)")
            XCTAssertTrue(e.err.contains("Error") || e.err.contains("error"), "\(args): \(e.err)")
        }
        let noRun = try run(["sample"], cwd: dir)
        XCTAssertNotEqual(noRun.status, 0)
        XCTAssertTrue(noRun.err.contains("train a model first"), noRun.err)
    }

    /// Every setting the library's messages name is spelled as a flag this tool has (the spelling the
    /// CLI installs at start is the option's name in kebab case, as swift-argument-parser derives it).
    func testEverySettingTheLibraryNamesIsAFlag() throws {
        var help = ""
        for cmd in ["train", "sample", "eval", "export", "bench", "info", "plot"] {
            let r = try run([cmd, "--help"], cwd: NSTemporaryDirectory())
            XCTAssertEqual(r.status, 0, r.err)
            help += r.out
        }
        for s in Setting.allCases {
            XCTAssertTrue(help.contains("--\(s.kebab) ") || help.contains("--\(s.kebab)\n") || help.contains("--\(s.kebab),"),
                          "--\(s.kebab) (Setting.\(s.rawValue)) is not an option of any subcommand")
        }
        // and the messages use it
        let r = try run(["train", "x.txt", "--lr-decay", "2"], cwd: NSTemporaryDirectory())
        XCTAssertTrue(r.err.contains("--lr-decay must be in (0, 1]"), r.err)
    }

    /// `--temperature` is `--temp`, and a negative one is refused as a temperature, not read as a flag.
    func testTemperatureFlagAndNegativeValues() throws {
        let dir = workDir()
        for flag in ["--temp", "--temperature"] {
            let r = try run(["sample", flag, "-1", "--checkpoint", "none"], cwd: dir)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.err.contains("--temp must be ≥ 0"), "\(flag): \(r.err)")
            XCTAssertFalse(r.err.contains("Missing value"), r.err)
            let ok = try run(["sample", flag, "0.5", "--checkpoint", dir + "/none"], cwd: dir)
            XCTAssertTrue(ok.err.contains("none"), "\(flag) 0.5 parsed; the error is the checkpoint's: \(ok.err)")
            XCTAssertFalse(ok.err.contains("temp"), ok.err)
        }
    }

    /// --prime-file reads pipes (/dev/stdin) to the end, and names the system's reason when it cannot.
    func testPrimeFileFromStdinAndItsErrors() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--hidden", "16", "--seq", "20", "--batch", "4", "--max-iters", "4", "--name", "r"], cwd: dir).status, 0)
        let p = Process()
        p.executableURL = binary
        p.arguments = ["sample", "--checkpoint", "checkpoints/r", "--prime-file", "/dev/stdin", "--length", "5", "--seed", "1"]
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let i = Pipe(), o = Pipe(), e = Pipe()
        p.standardInput = i; p.standardOutput = o; p.standardError = e
        try p.run()
        i.fileHandleForWriting.write(Data("the ".utf8)); try i.fileHandleForWriting.close()
        let out = String(decoding: o.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        XCTAssertTrue(out.hasPrefix("the "), out)
        let missing = try run(["sample", "--checkpoint", "checkpoints/r", "--prime-file", "nope.txt"], cwd: dir)
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("nope.txt") && missing.err.contains("No such file or directory"), missing.err)
    }

    /// Samples kept in memory must fit (refused before any work, one line), and --output-dir is made or
    /// refused before generating.
    func testKeptSamplesAreBoundedAndTheOutputFolderCheckedFirst() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--hidden", "16", "--seq", "20", "--batch", "4", "--max-iters", "4", "--name", "r"], cwd: dir).status, 0)
        let huge = try run(["sample", "--checkpoint", "checkpoints/r", "--num-samples", "2", "--length", "1000000000000"], cwd: dir)
        XCTAssertNotEqual(huge.status, 0)
        XCTAssertEqual(huge.err.split(separator: "\n").count, 1, huge.err)
        XCTAssertTrue(huge.err.contains("keeping 1 sample of 1000000000000 tokens") && huge.err.contains("--length"), huge.err)
        FileManager.default.createFile(atPath: dir + "/file", contents: Data("x".utf8))
        let t0 = Date()
        let blocked = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "100000000", "--output-dir", "file/out"], cwd: dir)
        XCTAssertNotEqual(blocked.status, 0)
        XCTAssertTrue(blocked.err.contains("file/out"), blocked.err)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 20, "the folder was checked after generating")
    }
}
