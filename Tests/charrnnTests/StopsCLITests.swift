// StopsCLITests.swift — `charrnn train --patience/--min-delta/--max-time/--lr-schedule` end to end:
// what a planned stop prints and logs, the resume of a run that stopped early (refused to train on
// until --patience allows it, with the flag to pass), a time budget spent at once that resumes to the
// same weights as the run that never stopped, the schedule in `info`, and bad values refused in one
// error line that names the option.

import Foundation
import XCTest

final class StopsCLITests: CharrnnCLITestCase {
    func csv(_ dir: String, _ run: String) throws -> [[String]] {
        try String(contentsOfFile: dir + "/checkpoints/\(run)/loss.csv", encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    func testPatienceStopsLogsAndResumesOnlyWhenAsked() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let flags = small + ["--eval-every", "5", "--max-iters", "60", "--no-cache"]
        let r = try run(["train", corpus, "--name", "p", "--patience", "2", "--min-delta", "10"] + flags, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("stopped early at iteration 15"), r.err)
        XCTAssertTrue(r.err.contains("charrnn train --resume checkpoints/p --patience 4"), r.err)
        let rows = try csv(dir, "p")
        XCTAssertEqual(rows[0].last, "event")
        XCTAssertEqual(rows.last?.first, "15")
        XCTAssertEqual(rows.last?.last, "early_stop")

        // resumed as it is: says so, trains nothing, exits 0
        let again = try run(["train", "--resume", "checkpoints/p"], cwd: dir)
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssertTrue(again.err.contains("the run stopped early at iteration 15"), again.err)
        XCTAssertTrue(again.err.contains("nothing to train"), again.err)
        XCTAssertEqual(try csv(dir, "p").count, rows.count)

        // info says so too
        let info = try run(["info", "checkpoints/p/latest.safetensors"], cwd: dir)
        XCTAssertTrue(info.out.contains("stopped early"), info.out)

        // --patience 0: to the finish line
        let off = try run(["train", "--resume", "checkpoints/p", "--patience", "0"], cwd: dir)
        XCTAssertEqual(off.status, 0, off.err)
        XCTAssertTrue(off.err.contains("done: 60 iterations"), off.err)
    }

    func testMaxTimeStopsAndResumesToTheSameWeights() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let flags = small + ["--eval-every", "10", "--max-iters", "30", "--no-cache"]
        // a budget that the first step spends, whatever the machine's speed
        let r = try run(["train", corpus, "--name", "t", "--max-time", "0.001s"] + flags, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        // (a machine fast enough may run a step or two within the millisecond: no exact iteration)
        let at = r.err.components(separatedBy: "time budget 0.001s spent at iteration ").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) }
        XCTAssertNotNil(at, r.err)
        XCTAssertLessThan(at ?? 30, 30, r.err)
        XCTAssertTrue(r.err.contains("resume with: charrnn train --resume checkpoints/t"), r.err)
        XCTAssertEqual(try csv(dir, "t").last?.last, "max_time")
        let resumed = try run(["train", "--resume", "checkpoints/t", "--max-time", "8h"], cwd: dir)
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("done: 30 iterations"), resumed.err)
        let whole = try run(["train", corpus, "--name", "w"] + flags, cwd: dir)
        XCTAssertEqual(whole.status, 0, whole.err)
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoints/t/latest.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoints/w/latest.safetensors"))
        // same weights and moments: compare the train losses, then the tensors' bytes (the metadata holds timings)
        XCTAssertEqual(try csv(dir, "t").map { $0[2] }, try csv(dir, "w").map { $0[2] })
        let headerA = Int(a.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }), headerB = Int(b.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        XCTAssertEqual(a.suffix(from: 8 + headerA), b.suffix(from: 8 + headerB))
    }

    func testScheduleIsRecordedShownAndKeptOnResume() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let r = try run(["train", corpus, "--name", "c", "--lr-schedule", "cosine", "--warmup-iters", "4", "--min-lr", "0.001",
                         "--cold-start-every", "5", "--eval-every", "10", "--max-iters", "20", "--no-cache"] + small, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let rows = try csv(dir, "c")
        let lr = rows[0].firstIndex(of: "learning_rate")!
        XCTAssertEqual(Float(rows[1][lr]), Float(0.03 / 5))
        XCTAssertEqual(Float(rows[5][lr]), 0.03)
        let info = try run(["info", "--json", "checkpoints/c"], cwd: dir)
        let json = try JSONSerialization.jsonObject(with: Data(info.out.utf8)) as? [String: Any]
        XCTAssertEqual(json?["lrSchedule"] as? String, "cosine")
        XCTAssertEqual(json?["warmupIters"] as? Int, 4)
        let text = try run(["info", "checkpoints/c"], cwd: dir)
        XCTAssertTrue(text.out.contains("cosine, warmup 4 iterations, down to 0.001"), text.out)
        XCTAssertTrue(text.out.contains("cold starts    each stream restarts from a zero state every 5 minibatches"), text.out)
        XCTAssertEqual(json?["coldStartEvery"] as? Int, 5)
        // a resume keeps the run's schedule (the flag is ignored with a warning)
        let resumed = try run(["train", "--resume", "checkpoints/c", "--max-iters", "25", "--lr-schedule", "constant"], cwd: dir)
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("warning: --lr-schedule ignored"), resumed.err)
        let info2 = try run(["info", "--json", "checkpoints/c/latest.safetensors"], cwd: dir)
        let json2 = try JSONSerialization.jsonObject(with: Data(info2.out.utf8)) as? [String: Any]
        XCTAssertEqual(json2?["lrSchedule"] as? String, "cosine")
        XCTAssertEqual(json2?["coldStartEvery"] as? Int, 5)
    }

    /// Cold starts are on by default (info says so); `--cold-start-every 0` turns them off, and train
    /// says in one line what that risks.
    func testColdStartsDefaultAndOff() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let on = try run(["train", corpus, "--name", "on", "--max-iters", "3", "--no-cache"] + small, cwd: dir)
        XCTAssertEqual(on.status, 0, on.err)
        XCTAssertFalse(on.err.contains("cold starts"), on.err)
        XCTAssertTrue(try run(["info", "checkpoints/on"], cwd: dir).out.contains("cold starts    each stream restarts from a zero state every 10 minibatches"))
        let off = try run(["train", corpus, "--name", "off", "--max-iters", "3", "--cold-start-every", "0", "--no-cache"] + small, cwd: dir)
        XCTAssertEqual(off.status, 0, off.err)
        XCTAssertEqual(off.err.split(separator: "\n").filter { $0.hasPrefix("note: no cold starts") }.count, 1, off.err)
        let info = try run(["info", "--json", "checkpoints/off"], cwd: dir)
        XCTAssertNil((try JSONSerialization.jsonObject(with: Data(info.out.utf8)) as? [String: Any])?["coldStartEvery"], info.out)
        XCTAssertTrue(try run(["info", "checkpoints/off"], cwd: dir).out.contains("cold starts    none"))
    }

    func testBadValuesAreRefusedNamingTheOption() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        for (args, text) in [(["--max-time", "10"], "--max-time \"10\": no unit"),
                             (["--max-time", "5x"], "--max-time \"5x\": unknown unit"),
                             (["--max-time", "0s"], "--max-time \"0s\": must be more than 0"),
                             (["--max-time", "30m1h"], "--max-time \"30m1h\": units go from the largest"),
                             (["--patience=-1"], "--patience must be between 1"),
                             (["--min-delta=-0.5"], "--min-delta must be between 0"),
                             (["--min-lr", "1"], "--min-lr must be between 0 and --lr"),
                             (["--warmup-iters=-3"], "--warmup-iters must be between 0"),
                             (["--lr-schedule", "constant", "--min-lr", "0.0001"], "--min-lr applies to --lr-schedule cosine and step"),
                             (["--lr-schedule", "linear"], "--lr-schedule"),
                             (["--cold-start-every=-2"], "--cold-start-every must be between 1")] {
            let r = try run(["train", corpus] + args, cwd: dir)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            let first = r.err.split(separator: "\n").first.map(String.init) ?? ""
            XCTAssertTrue(first.contains(text), "\(args): \(r.err)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoints"))
    }

    func testDurations() throws {
        // through the binary: a budget the run cannot spend changes nothing
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        for d in ["90s", "20m", "8h", "1h30m", "1.5h", "2d"] {
            let r = try run(["train", corpus, "--name", "d", "--overwrite", "--max-iters", "2", "--no-cache", "--max-time", d] + small, cwd: dir)
            XCTAssertEqual(r.status, 0, "\(d): \(r.err)")
            XCTAssertFalse(r.err.contains("time budget"), r.err)
        }
    }
}
