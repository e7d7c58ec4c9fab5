// BF16TrainingCLITests.swift — `train --precision bf16` and `bench --precision bf16` from the command
// line: the run records bf16 and a resume keeps it (warning that a --precision given then is ignored),
// info names it,
// the portable path says in one line that it is slower, and bench reports the kernel it timed and its 2048³ rate.

import Foundation
import XCTest

final class BF16TrainingCLITests: CharrnnCLITestCase {
    func testTrainResumeAndPortableNote() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let a = try run(["train", corpus, "--name", "b", "--max-iters", "4", "--precision", "bf16", "--no-cache"] + small, cwd: dir)
        XCTAssertEqual(a.status, 0, a.err)
        let header = try String(decoding: Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoints/b/latest.safetensors")).prefix(20000), as: UTF8.self)
        XCTAssertTrue(header.contains(#"precision\":\"bf16"#), "bf16 not recorded")
        XCTAssertFalse(a.err.contains("note:"), a.err)                   // cold starts on (the default), the AVX512_BF16 kernels
        let r = try run(["train", "--resume", "checkpoints/b", "--max-iters", "6", "--precision", "fp32"], cwd: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("warning: --precision ignored: --resume continues the run"), r.err)
        let resumed = try String(decoding: Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoints/b/latest.safetensors")).prefix(20000), as: UTF8.self)
        XCTAssertTrue(resumed.contains(#"precision\":\"bf16"#), "the resume lost bf16")
        // an fp32 run records nothing about precision (its header is what it was before the flag)
        let f = try run(["train", corpus, "--name", "f", "--max-iters", "2", "--no-cache"] + small, cwd: dir)
        XCTAssertEqual(f.status, 0, f.err)
        let fh = try String(decoding: Data(contentsOf: URL(fileURLWithPath: dir + "/checkpoints/f/latest.safetensors")).prefix(20000), as: UTF8.self)
        XCTAssertFalse(fh.contains("precision"))
        XCTAssertFalse(f.err.contains("portable"))
        XCTAssertFalse(f.err.contains("note:"), f.err)
        // info names the precision of either run, in text and JSON
        let ib = try run(["info", "checkpoints/b"], cwd: dir), jf = try run(["info", "--json", "checkpoints/f"], cwd: dir)
        XCTAssertTrue(ib.out.split(separator: "\n").contains { $0.hasPrefix("precision") && $0.contains("bf16 (") }, ib.out)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(jf.out.utf8)) as? [String: Any])?["precision"] as? String, "fp32", jf.out)
        // the portable path: one line saying it is slower
        let p = try run(["train", corpus, "--name", "p", "--max-iters", "2", "--precision", "bf16", "--no-cache"] + small, cwd: dir,
                        env: ["CHARRNN_BF16_KERNEL": "portable"])
        XCTAssertEqual(p.status, 0, p.err)
        let notes = p.err.split(separator: "\n").filter { $0.contains("portable bf16") }
        XCTAssertEqual(notes.count, 1, p.err)
        XCTAssertTrue(notes.first?.contains("slower") ?? false, p.err)
        let bad = try run(["train", corpus, "--precision", "fp16"] + small, cwd: dir)
        XCTAssertNotEqual(bad.status, 0)
    }

    func testBenchReportsTheBF16Kernel() throws {
        let dir = workDir()
        let r = try run(["bench", "--hidden", "32", "--iters", "2", "--warmup", "1", "--sample-length", "2", "--threads", "1",
                         "--precision", "bf16", "--json"], cwd: dir, env: ["CHARRNN_BF16_KERNEL": "portable"])
        XCTAssertEqual(r.status, 0, r.err)
        let j = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any]
        XCTAssertEqual(j?["bf16Kernel"] as? String, "portable bf16→fp32")
        XCTAssertGreaterThan(j?["bf16PeakGFLOPS"] as? Double ?? 0, 0)
        let f = try run(["bench", "--hidden", "32", "--iters", "2", "--warmup", "1", "--sample-length", "2", "--threads", "1", "--json"], cwd: dir)
        let fj = try JSONSerialization.jsonObject(with: Data(f.out.utf8)) as? [String: Any]
        XCTAssertNotNil(fj?["loss"])
        XCTAssertNil(fj?["bf16Kernel"]); XCTAssertNil(fj?["bf16PeakGFLOPS"])
    }

    /// bench times the output layer train would build: --softmax adaptive takes its cutoffs from the
    /// corpus (or --cutoffs), and the timed step does fewer FLOPs than the full softmax's.
    func testBenchTimesTheAdaptiveSoftmax() throws {
        let dir = workDir()
        var rng = SystemRandomNumberGenerator()
        // 400 distinct CJK characters, Zipf-like frequencies
        let text = String((0..<40_000).map { _ in
            Character(UnicodeScalar(0x4E00 + Int(Double(400) * pow(Double.random(in: 0..<1, using: &rng), 3)))!)
        })
        let corpus = dir + "/zh.txt"
        try text.write(toFile: corpus, atomically: true, encoding: .utf8)
        let common = ["bench", "--hidden", "32", "--embed", "16", "--corpus", corpus, "--iters", "2", "--warmup", "1",
                      "--sample-length", "2", "--threads", "1", "--seq", "10", "--batch", "8"]
        let a = try run(common + ["--softmax", "adaptive", "--cutoffs", "50,150"], cwd: dir)
        XCTAssertEqual(a.status, 0, a.err)
        XCTAssertTrue(a.out.contains("output: adaptive softmax, cutoffs 50,150"), a.out)
        let aj = try run(common + ["--softmax", "adaptive", "--cutoffs", "50,150", "--json"], cwd: dir)
        let fj = try run(common + ["--json"], cwd: dir)
        let adaptiveFLOPs = (try JSONSerialization.jsonObject(with: Data(aj.out.utf8)) as? [String: Any])?["trainGFLOPPerIter"] as? Double
        let fullFLOPs = (try JSONSerialization.jsonObject(with: Data(fj.out.utf8)) as? [String: Any])?["trainGFLOPPerIter"] as? Double
        XCTAssertLessThan(adaptiveFLOPs ?? 1, fullFLOPs ?? 0)
        let bad = try run(["bench", "--softmax", "adaptive"], cwd: dir)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("needs --corpus"), bad.err)
    }
}
