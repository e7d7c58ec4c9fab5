// NewcomerCLITests.swift — what a new user is told (issue 22, "A newcomer's first hour"): which
// checkpoint `sample` read and the seed that repeats it; what `info` says about the output layer,
// the text settings and the unknown token; the time estimate and the progress modes of `train`.

import Foundation
import XCTest

final class NewcomerCLITests: HostileCLITestCase {
    /// The `--seed N` of sample's stderr line.
    func announcedSeed(_ err: String) -> String? {
        guard let r = err.range(of: #"--seed [0-9]+ repeats this text"#, options: .regularExpression) else { return nil }
        return err[r].split(separator: " ")[1].description
    }

    func testSampleNamesItsCheckpointAndTheSeedThatRepeatsIt() throws {
        let dir = workDir()
        let run = try trainSmall(dir, name: "r")
        // a drawn seed: the line names it, and giving it back gives the same text
        let drawn = try self.run(["sample", "--length", "80", "--temp", "1"], cwd: dir)
        XCTAssertEqual(drawn.status, 0, drawn.err)
        XCTAssertTrue(drawn.err.contains("checkpoint checkpoints/r/best.safetensors (iteration 20)"), drawn.err)
        let seed = try XCTUnwrap(announcedSeed(drawn.err), drawn.err)
        let again = try self.run(["sample", "--length", "80", "--temp", "1", "--seed", seed], cwd: dir)
        XCTAssertEqual(again.out, drawn.out)
        XCTAssertEqual(announcedSeed(again.err), seed)
        XCTAssertEqual(again.err.split(separator: "\n").count, 1, again.err)

        // a run folder without best: its latest is read, and the line says why
        try FileManager.default.removeItem(atPath: run + "/best.safetensors")
        let fell = try self.run(["sample", "--checkpoint", "checkpoints/r", "--length", "5", "--seed", "3"], cwd: dir)
        XCTAssertEqual(fell.status, 0, fell.err)
        XCTAssertTrue(fell.err.contains("checkpoint checkpoints/r/latest.safetensors (iteration 20; checkpoints/r has no best.safetensors, so its latest)"), fell.err)
        XCTAssertTrue(fell.err.contains("--seed 3 repeats this text"), fell.err)
        // eval says the same on its first line
        let eval = try self.run(["eval", "corpus.txt", "--checkpoint", "checkpoints/r"], cwd: dir)
        XCTAssertTrue(eval.out.hasPrefix("checkpoint checkpoints/r/latest.safetensors (iteration 20; checkpoints/r has no best.safetensors"), eval.out)
        // a file named directly is no fallback
        let file = try self.run(["sample", "--checkpoint", "checkpoints/r/latest.safetensors", "--length", "5", "--seed", "3"], cwd: dir)
        XCTAssertTrue(file.err.contains("(iteration 20);"), file.err)
        XCTAssertEqual(file.out, fell.out)
    }

    func testInfoShowsTheOutputLayerTheTextSettingsAndTheUnknownToken() throws {
        let dir = workDir()
        _ = try trainSmall(dir, name: "a", extra: ["--softmax", "adaptive", "--cutoffs", "10,20", "--max-vocab", "30", "--normalize", "nfc"])
        let text = try run(["info", "checkpoints/a"], cwd: dir)
        XCTAssertEqual(text.status, 0, text.err)
        for s in ["output layer   adaptive softmax, cutoffs 10,20 (head of 10 tokens + 2 tails, div 4)",
                  "text           unit scalar, normalization nfc", "unknown token  <unk> (id 0)", "first          <unk> \\n ␣"] {
            XCTAssertTrue(text.out.contains(s), "\(s) in\n\(text.out)")
        }
        let json = try JSONSerialization.jsonObject(with: Data(try run(["info", "--json", "checkpoints/a"], cwd: dir).out.utf8)) as! [String: Any]
        XCTAssertEqual(json["softmax"] as? String, "adaptive")
        XCTAssertEqual(json["softmaxCutoffs"] as? [Int], [10, 20])
        XCTAssertEqual(json["softmaxDivValue"] as? Double, 4)
        XCTAssertEqual(json["normalize"] as? String, "nfc")
        XCTAssertEqual(json["unknownID"] as? Int, 0)
        XCTAssertEqual(json["unit"] as? String, "scalar")

        // the defaults: a full softmax, no normalization, no unknown token (and no unknownID key)
        _ = try trainSmall(dir, name: "f")
        let full = try run(["info", "checkpoints/f"], cwd: dir)
        for s in ["output layer   full softmax", "text           unit scalar, normalization none", "unknown token  none ("] {
            XCTAssertTrue(full.out.contains(s), "\(s) in\n\(full.out)")
        }
        XCTAssertFalse(full.out.contains("<unk>"), full.out)
        let fj = try JSONSerialization.jsonObject(with: Data(try run(["info", "--json", "checkpoints/f"], cwd: dir).out.utf8)) as! [String: Any]
        XCTAssertEqual(fj["softmax"] as? String, "full")
        XCTAssertNil(fj["softmaxCutoffs"]); XCTAssertNil(fj["unknownID"])
        XCTAssertEqual(fj["normalize"] as? String, "none")
    }

    func testResumingAFinishedRunSaysHowToTrainFurther() throws {
        let dir = workDir()
        _ = try trainSmall(dir, name: "r")
        let again = try run(["train", "--resume", "checkpoints/r"], cwd: dir)
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssertTrue(again.err.contains("done: 20 iterations"), again.err)
        XCTAssertTrue(again.err.contains("the run had already reached its stopping point (--max-iters 20) at iteration 20: nothing was trained; "
                                         + "to train further, raise --max-iters or --epochs, e.g. charrnn train --resume checkpoints/r --max-iters 40"), again.err)
        // the hint's command does train further, and a resume that trains says nothing of the kind
        let more = try run(["train", "--resume", "checkpoints/r", "--max-iters", "40"], cwd: dir)
        XCTAssertEqual(more.status, 0, more.err)
        XCTAssertTrue(more.err.contains("done: 40 iterations"), more.err)
        XCTAssertFalse(more.err.contains("already reached"), more.err)
    }

    func testTrainPrintsItsEstimatedTimeOnce() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let r = try run(["train", corpus, "--max-iters", "60", "--eval-every", "20", "--name", "e"] + tiny, cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n").filter { $0.contains("estimated time") }
        XCTAssertEqual(lines.count, 1, r.out)
        // measured over iterations 2…21, after the validation at 20; 60, 40 and the last: 3 validations
        let re = #"^estimated time for the run: [0-9dhms]+ \(60 iterations at [0-9.]+m?s, 3 validations at [0-9.]+m?s\)$"#
        XCTAssertNotNil(lines.first.flatMap { String($0).range(of: re, options: .regularExpression) }, r.out)
        // a resume measures its own session
        let more = try run(["train", "--resume", "checkpoints/e", "--max-iters", "90"], cwd: dir)
        XCTAssertTrue(more.out.contains("estimated time to finish the run: "), more.out)
        XCTAssertTrue(more.out.contains("(30 more of 90 iterations at "), more.out)
    }

    func testTheBarIsCutToTheTerminalWidthAndPlainLinesComeByTime() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        // the bar, asked for into a pipe: $COLUMNS is the width, and no redraw reaches the last column
        let bar = try run(["train", corpus, "--max-iters", "30", "--eval-every", "10", "--name", "b", "--progress", "bar"] + tiny, cwd: dir,
                          env: ["COLUMNS": "40"])
        XCTAssertEqual(bar.status, 0, bar.err)
        let draws = bar.out.components(separatedBy: "\r\u{1B}[K").dropFirst().map { $0.split(separator: "\n", omittingEmptySubsequences: false)[0] }
        XCTAssertFalse(draws.isEmpty, bar.out)
        for d in draws {
            XCTAssertLessThanOrEqual(d.count, 39, String(d))
            XCTAssertTrue(d.hasPrefix("iter ") && d.contains("loss ") && d.contains("ETA "), String(d))
        }
        let wide = try run(["train", corpus, "--max-iters", "12", "--eval-every", "10", "--name", "w", "--progress", "bar"] + tiny, cwd: dir,
                           env: ["COLUMNS": "200"])
        XCTAssertTrue(wide.out.contains(" tok/s  ETA "), "a wide terminal gets every field: \(wide.out)")
        let narrow = try run(["train", corpus, "--max-iters", "12", "--eval-every", "10", "--name", "n", "--progress", "bar"] + tiny, cwd: dir,
                             env: ["COLUMNS": "12"])
        XCTAssertTrue(narrow.out.components(separatedBy: "\r\u{1B}[K").dropFirst().allSatisfy { $0.split(separator: "\n")[0].count <= 11 }, narrow.out)

        // plain: a line per interval (shortened here) besides the validations, and no terminal codes
        let plain = try run(["train", corpus, "--max-iters", "30", "--eval-every", "1000", "--name", "p", "--progress", "plain"] + tiny, cwd: dir,
                            env: ["CHARRNN_FAULT_PROGRESS_INTERVAL": "0"])
        XCTAssertEqual(plain.status, 0, plain.err)
        XCTAssertFalse(plain.out.contains("\u{1B}") || plain.out.contains("\r"), plain.out)
        let its = plain.out.split(separator: "\n").filter { $0.hasPrefix("iter ") && $0.contains("/30  epoch ") }
        XCTAssertEqual(its.count, 30, plain.out)
        // the default interval: no iteration line before the validation at the end of so short a run
        let auto = try run(["train", corpus, "--max-iters", "30", "--eval-every", "1000", "--name", "a"] + tiny, cwd: dir)
        XCTAssertFalse(auto.out.contains("\u{1B}"), auto.out)
        XCTAssertEqual(auto.out.split(separator: "\n").filter { $0.hasPrefix("iter ") && $0.contains("/30 ") }.count, 0, auto.out)
        XCTAssertTrue(auto.out.contains("iter 30  epoch "), auto.out)
        // none: validation lines only
        let none = try run(["train", corpus, "--max-iters", "20", "--eval-every", "10", "--name", "z", "--progress", "none"] + tiny, cwd: dir)
        XCTAssertEqual(none.out.split(separator: "\n").filter { $0.hasPrefix("iter ") }.map { $0.contains("val loss") }, [true, true], none.out)
        XCTAssertNotEqual(try run(["train", corpus, "--progress", "fancy"], cwd: dir).status, 0)
    }

    func testMpirunIntoAFileGetsPlainLinesNotTerminalCodes() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        // Open MPI gives its ranks a pseudo-terminal even when its own output goes to a file
        guard let r = try mpirun(np: 1, ["train", corpus, "--max-iters", "20", "--eval-every", "10", "--name", "m"] + tiny, cwd: dir, stdout: dir + "/log") else {
            throw XCTSkip("mpirun is not installed")
        }
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("iter 10/20  epoch "), r.out)
        XCTAssertFalse(r.out.contains("\u{1B}") || r.out.contains("\r"), r.out)
    }
}
