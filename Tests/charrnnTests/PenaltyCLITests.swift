// `charrnn sample` with --frequency-penalty, --presence-penalty, --repetition-penalty,
// --repeat-window, --logit-bias and --beam through the binary: a banned newline never appears (by
// character and by token id), penalties change the text, bad values are one-line errors naming the
// flag, --beam 1 is --temp 0 and --beam is deterministic.

import Foundation
import XCTest

final class PenaltyCLITests: CharrnnCLITestCase {
    func testPenaltiesBiasAndBeam() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "30", "--eval-every", "30", "--name", "r"] + small, cwd: dir).status, 0)
        func sample(_ extra: [String]) throws -> Result {
            try run(["sample", "--checkpoint", "checkpoints/r", "--length", "1500", "--seed", "3", "--temp", "1.3", "--prime", "To "] + extra, cwd: dir)
        }
        let plain = try sample([])
        XCTAssertEqual(plain.status, 0, plain.err)
        XCTAssertTrue(plain.out.dropFirst(3).contains("\n"), "the model writes newlines: \(plain.out)")

        // ban the newline: by the character, and by its token id (0: the vocabulary is in code-point order)
        let banned = try sample(["--logit-bias", "\n=-100"])
        XCTAssertEqual(banned.status, 0, banned.err)
        XCTAssertFalse(banned.out.contains("\n"), banned.out)
        XCTAssertEqual(banned.out.unicodeScalars.count, 1503)
        XCTAssertEqual(try sample(["--logit-bias", "0=-100"]).out, banned.out, "key 0 is token id 0, the newline")
        XCTAssertFalse(try sample(["--logit-bias", "\n=-100", "--temp", "0"]).out.contains("\n"), "banned at temperature 0")

        // penalties change the text; negative values are values, not flags
        let pen = try sample(["--frequency-penalty", "-0.5", "--presence-penalty", "1", "--repetition-penalty", "1.5", "--repeat-window", "20"])
        XCTAssertEqual(pen.status, 0, pen.err)
        XCTAssertNotEqual(pen.out, plain.out)
        XCTAssertEqual(try sample(["--frequency-penalty", "0", "--repetition-penalty", "1"]).out, plain.out, "0 and 1 are off")

        // one-line errors naming the flag
        for (args, flag) in [(["--frequency-penalty", "3"], "--frequency-penalty"), (["--presence-penalty", "-2.5"], "--presence-penalty"),
                             (["--repetition-penalty", "0"], "--repetition-penalty"), (["--repeat-window", "-1"], "--repeat-window"),
                             (["--logit-bias", "e"], "--logit-bias"), (["--logit-bias", "e=200"], "--logit-bias"),
                             (["--logit-bias", "e=x"], "--logit-bias"), (["--logit-bias", "==1"], "--logit-bias"),
                             (["--logit-bias", "zz=1"], "--logit-bias"), (["--logit-bias", "999=1"], "--logit-bias"),
                             (["--logit-bias", "e=1", "--logit-bias", "e=2"], "--logit-bias"),
                             (["--beam", "2", "--num-samples", "2"], "--beam"), (["--beam", "2", "--top-k", "3"], "--beam"),
                             (["--beam", "-1"], "--beam")] {
            let r = try sample(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.err.contains(flag), "\(args): \(r.err)")
            XCTAssertEqual(r.err.trimmingCharacters(in: .newlines).split(separator: "\n").filter { $0.hasPrefix("Error") || $0.hasPrefix("error") }.count, 1, r.err)
            XCTAssertEqual(r.out, "", "\(args): nothing generated")
        }
        let eq = try sample(["--logit-bias", "==1"])
        XCTAssertTrue(eq.err.contains("key \"=\""), "split at the last '=': \(eq.err)")

        // beam search: W = 1 is --temp 0; deterministic whatever the seed
        let greedy = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "80", "--prime", "To ", "--temp", "0"], cwd: dir)
        let b1 = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "80", "--prime", "To ", "--beam", "1"], cwd: dir)
        XCTAssertEqual(b1.status, 0, b1.err)
        XCTAssertEqual(b1.out, greedy.out)
        let b4 = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "80", "--prime", "To ", "--beam", "4", "--seed", "1"], cwd: dir)
        let b4b = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "80", "--prime", "To ", "--beam", "4", "--seed", "2"], cwd: dir)
        XCTAssertEqual(b4.status, 0, b4.err)
        XCTAssertEqual(b4.out, b4b.out)
        XCTAssertTrue(b4.out.hasPrefix("To "))
        XCTAssertTrue(b4.err.contains("mean log p per character"), b4.err)
        let stopped = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "80", "--prime", "To ", "--beam", "4", "--stop", "e"], cwd: dir)
        XCTAssertEqual(stopped.status, 0, stopped.err)
        XCTAssertFalse(stopped.out.dropFirst(3).contains("e"), stopped.out)
    }
}
