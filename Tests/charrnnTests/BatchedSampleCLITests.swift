// `charrnn sample --num-samples K [--output-dir DIR]` through the binary: K samples in one batched
// pass, sample i the same whatever K is, the first one the plain `sample` output of the same seed.

import Foundation
import XCTest

final class BatchedSampleCLITests: CharrnnCLITestCase {
    func testNumSamplesPrintsEachSampleAndMatchesSmallerK() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "20", "--eval-every", "20", "--name", "r"] + small, cwd: dir).status, 0)
        let one = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "120", "--seed", "5", "--prime", "To "], cwd: dir)
        XCTAssertEqual(one.status, 0, one.err)
        let three = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "120", "--seed", "5", "--prime", "To ",
                             "--num-samples", "3"], cwd: dir)
        XCTAssertEqual(three.status, 0, three.err)
        let marks = ["──── sample 1 of 3 ────\n", "\n\n──── sample 2 of 3 ────\n", "\n\n──── sample 3 of 3 ────\n"]
        for m in marks { XCTAssertTrue(three.out.contains(m), "missing \(m.debugDescription) in \(three.out)") }
        // split into the three texts
        var rest = three.out
        rest.removeFirst(marks[0].count)
        let parts = rest.components(separatedBy: "\n\n──── sample ")
        XCTAssertEqual(parts.count, 3)
        let texts = [parts[0]] + parts[1...].map { String($0.drop(while: { $0 != "\n" }).dropFirst()) }
        XCTAssertEqual(texts[0], one.out, "sample 1 of 3 is the single sample")
        let last = texts[2].hasSuffix("\n") ? String(texts[2].dropLast()) : texts[2]
        XCTAssertEqual(last.unicodeScalars.count, 123)
        XCTAssertNotEqual(texts[1], texts[0])

        // files: sample i of K = 5 equals sample i of K = 3
        let five = try run(["sample", "--checkpoint", "checkpoints/r", "--length", "120", "--seed", "5", "--prime", "To ",
                            "--num-samples", "5", "--output-dir", "out"], cwd: dir)
        XCTAssertEqual(five.status, 0, five.err)
        XCTAssertEqual(five.out, "")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/out").sorted()
        XCTAssertEqual(files, (1...5).map { "sample-\($0).txt" })
        XCTAssertEqual(try String(contentsOfFile: dir + "/out/sample-1.txt", encoding: .utf8), one.out)
        XCTAssertEqual(try String(contentsOfFile: dir + "/out/sample-2.txt", encoding: .utf8), texts[1])
        XCTAssertEqual(try String(contentsOfFile: dir + "/out/sample-3.txt", encoding: .utf8), last)

        let bad = try run(["sample", "--checkpoint", "checkpoints/r", "--num-samples", "0"], cwd: dir)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("--num-samples"), bad.err)
    }
}
