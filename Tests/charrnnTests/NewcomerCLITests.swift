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
}
