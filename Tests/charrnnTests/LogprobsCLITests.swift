// `charrnn sample --logprobs N` and `--best-of K` through the binary: the text is the plain sample of
// the same seed followed by a per-character table (offset, escaped character, log p, p, N
// alternatives, a mean line); --best-of K prints the --num-samples K sample with the best mean log p
// per character; bad values are one-line errors.

import Foundation
import XCTest

final class LogprobsCLITests: CharrnnCLITestCase {
    func testLogprobsTableAndBestOf() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "20", "--eval-every", "20", "--name", "r"] + small, cwd: dir).status, 0)
        let base = ["sample", "--checkpoint", "checkpoints/r", "--length", "60", "--seed", "5", "--prime", "To ", "--temp", "1.2"]
        let one = try run(base, cwd: dir)
        XCTAssertEqual(one.status, 0, one.err)
        let lp = try run(base + ["--logprobs", "3"], cwd: dir)
        XCTAssertEqual(lp.status, 0, lp.err)
        XCTAssertTrue(lp.out.hasPrefix(one.out + "\n\n──── log-probabilities ────\n"), lp.out)
        let generated = Array(String(one.out.dropFirst(3)))
        let lines = lp.out.dropFirst(one.out.count + 2).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertTrue(lines[1].hasPrefix("offset  token"))
        let rows = Array(lines[2..<(2 + generated.count)])
        var means = 0.0
        for (k, row) in rows.enumerated() {
            XCTAssertTrue(row.hasPrefix(String(k) + " "), row)
            let esc = generated[k] == "\n" ? "\"\\n\"" : "\"\(generated[k])\""
            XCTAssertTrue(row.dropFirst(8).hasPrefix(esc), "\(row) shows \(esc)")
            let numbers = row.dropFirst(8 + max(6, esc.count) + 2).split(separator: " ").compactMap { Double($0) }
            XCTAssertEqual(numbers.count, 2 + 3, row)        // log p, p, three alternatives' log p
            XCTAssertLessThanOrEqual(numbers[0], 0)
            XCTAssertEqual(exp(numbers[0]), numbers[1], accuracy: 1e-3)
            XCTAssertLessThanOrEqual(numbers[0], numbers[2] + 1e-4, "the likeliest alternative is at least as likely")
            means += numbers[0]
        }
        XCTAssertTrue(lines[2 + generated.count].hasPrefix("\(generated.count) tokens, \(generated.count) characters, mean log p per character "),
                      lines[2 + generated.count])
        XCTAssertFalse(one.out.contains("\n") && !lp.out.contains("\"\\n\""), "newlines are escaped")

        // --best-of 3 = the best of the --num-samples 3 samples by mean log p
        var texts: [String] = [], scores: [Double] = []
        let three = try run(base + ["--num-samples", "3", "--logprobs", "0"], cwd: dir)
        XCTAssertEqual(three.status, 0, three.err)
        for part in three.out.components(separatedBy: "──── sample ").dropFirst() {
            let body = String(part.drop(while: { $0 != "\n" }).dropFirst())
            texts.append(String(body.components(separatedBy: "\n\n──── log-probabilities")[0]))
            let meanLine = body.split(separator: "\n").first { $0.contains("mean log p per character") }!
            scores.append(Double(meanLine.split(separator: " ").last!)!)
        }
        XCTAssertEqual(texts.count, 3)
        XCTAssertEqual(texts[0], one.out)
        let best = try run(base + ["--best-of", "3"], cwd: dir)
        XCTAssertEqual(best.status, 0, best.err)
        XCTAssertEqual(best.out, texts[scores.indices.max { scores[$0] < scores[$1] }!] + "\n")

        for (args, flag) in [(["--logprobs", "6"], "--logprobs"), (["--best-of", "1", "--num-samples", "2"], "--best-of"),
                             (["--logprobs", "1", "--output-dir", "o"], "--output-dir")] {
            let bad = try run(base + args, cwd: dir)
            XCTAssertNotEqual(bad.status, 0, args.joined(separator: " "))
            XCTAssertTrue(bad.err.contains(flag), bad.err)
        }
    }
}
