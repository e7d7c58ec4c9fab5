// Around a run, through the built binary: eval, info, plot, interruption and resume, corpus checks,
// fine-tuning, and the one-line refusals of checkpoints whose tensors or version do not fit.

import Foundation
import XCTest

final class RunToolsCLITests: CharrnnCLITestCase {
    func trainLosses(_ dir: String, _ run: String) throws -> [Substring] {
        try String(contentsOfFile: dir + "/checkpoints/\(run)/loss.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: ",", omittingEmptySubsequences: false)[2] }
    }

    // MARK: - eval, info, plot

    func testEvalInfoAndPlot() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "30", "--eval-every", "10", "--name", "r"] + small, cwd: dir).status, 0)
        try "To be, or not 🦊 to be\nxyz".write(toFile: dir + "/held.txt", atomically: true, encoding: .utf8)

        let j = try run(["eval", "--json", "held.txt", corpus], cwd: dir)
        XCTAssertEqual(j.status, 0, j.err)
        let objs = j.out.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(objs.count, 2)
        XCTAssertEqual(objs[0]["unknown"] as? Int, 4, "🦊 x y z are not in the vocabulary")
        XCTAssertEqual(objs[0]["tokens"] as? Int, 25 - 4)
        XCTAssertEqual(objs[0]["scored"] as? Int, 20)
        let loss = objs[1]["loss"] as! Double, bpc = objs[1]["bpc"] as! Double, ppl = objs[1]["perplexity"] as! Double
        XCTAssertEqual(bpc, loss / log(2), accuracy: 1e-9)
        XCTAssertEqual(ppl, exp(loss), accuracy: 1e-9)
        XCTAssertLessThan(loss, log(Double(20)), "a trained model beats uniform on its own corpus")
        // --batch 1 is one sequential pass; batching only resets the state at stream starts.
        let seq1 = try run(["eval", "--json", "--batch", "1", corpus], cwd: dir)
        let l1 = (try JSONSerialization.jsonObject(with: Data(seq1.out.utf8)) as! [String: Any])["loss"] as! Double
        XCTAssertEqual(l1, loss, accuracy: 0.05)
        XCTAssertNotEqual(l1, loss)
        let text = try run(["eval", "--checkpoint", "checkpoints/r/best.safetensors", corpus], cwd: dir)
        XCTAssertTrue(text.out.contains("bits/char") && text.out.contains("perplexity"), text.out)
        XCTAssertNotEqual(try run(["eval", "missing.txt"], cwd: dir).status, 0)

        let info = try run(["info", "checkpoints/r"], cwd: dir)
        XCTAssertEqual(info.status, 0, info.err)
        for s in ["format         charrnn version 1", "lstm, 2 layers × 32 hidden", "rarest", "best val loss", "corpus         corpus (", "rmsprop, lr 0.03"] {
            XCTAssertTrue(info.out.contains(s), "\(s) in\n\(info.out)")
        }
        let ij = try run(["info", "--json", "checkpoints/r/latest.safetensors"], cwd: dir)
        let o = try JSONSerialization.jsonObject(with: Data(ij.out.utf8)) as! [String: Any]
        XCTAssertEqual(o["iteration"] as? Int, 30)
        XCTAssertEqual(o["parameters"] as? Int, o["parameters"] as? Int)
        let rarest = o["rarestTokens"] as! [[String: Any]]
        XCTAssertEqual(rarest.count, 10)
        XCTAssertLessThanOrEqual(rarest[0]["count"] as! Int, rarest[9]["count"] as! Int)
        XCTAssertEqual(rarest[0]["count"] as? Int, 60, "each Chinese line occurs 60 times; its rarest character once per line")

        let plot = try run(["plot", "checkpoints/r", "checkpoints/r/loss.csv", "-o", "p.svg", "--log", "--x", "epoch"], cwd: dir)
        XCTAssertEqual(plot.status, 0, plot.err)
        let svg = try String(contentsOfFile: dir + "/p.svg", encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"))
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 2 * 3, "raw, EMA and val line per run")
        XCTAssertTrue(svg.contains("r val") && svg.contains("epoch") && svg.contains("log scale"))
        let term = try run(["plot", "checkpoints/r", "--terminal", "--size", "70x20", "--charset", "ascii"], cwd: dir)
        XCTAssertEqual(term.status, 0, term.err)
        let lines = term.out.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        XCTAssertLessThanOrEqual(lines.count, 20)
        XCTAssertTrue(lines.allSatisfy { $0.count <= 70 }, term.out)
        XCTAssertTrue(term.out.contains("*") && term.out.contains("O"), term.out)
        XCTAssertTrue(term.out.unicodeScalars.allSatisfy { $0.isASCII }, term.out)
        let braille = try run(["plot", "checkpoints/r", "--terminal", "--size", "70x20", "--charset", "braille"], cwd: dir)
        XCTAssertTrue(braille.out.unicodeScalars.contains { (0x2801...0x28FF).contains($0.value) }, braille.out)
    }

    // MARK: - Interruption and resume

    /// SIGINT mid-run: the iteration finishes, latest is written, the resume command is printed,
    /// exit 130; the resumed run then equals an uninterrupted one, loss for loss.
    func testSIGINTThenResumeIsBitIdentical() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let args = ["--eval-every", "7", "--dropout", "0.1", "--hidden", "64"] + small.filter { $0 != "32" && $0 != "--hidden" }
        let s = try start(["train", corpus, "--max-iters", "1000000", "--name", "int"] + args, cwd: dir)
        let csv = dir + "/checkpoints/int/loss.csv"
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, ((try? String(contentsOfFile: csv, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 12 {
            usleep(5_000)
        }
        s.0.interrupt()
        let r = finish(s)
        XCTAssertEqual(r.status, 130, r.err)
        XCTAssertTrue(r.err.contains("resume with: charrnn train --resume checkpoints/int"), r.err)
        let rows = try trainLosses(dir, "int")
        let k = rows.count
        XCTAssertGreaterThanOrEqual(k, 11)
        let info = try JSONSerialization.jsonObject(with: Data(try run(["info", "--json", "checkpoints/int/latest.safetensors"], cwd: dir).out.utf8)) as! [String: Any]
        XCTAssertEqual(info["iteration"] as? Int, k, "latest holds the last finished iteration")

        let resumed = try run(["train", "--resume", "checkpoints/int", "--max-iters", "\(k + 15)"], cwd: dir)
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "\(k + 15)", "--name", "ref"] + args, cwd: dir).status, 0)
        XCTAssertEqual(try trainLosses(dir, "int"), try trainLosses(dir, "ref"))
        XCTAssertEqual(try trainLosses(dir, "int").count, k + 15)
    }

    func testSIGTERMExits143() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        let s = try start(["train", corpus, "--max-iters", "1000000", "--name", "t"] + small, cwd: dir)
        let csv = dir + "/checkpoints/t/loss.csv"
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, ((try? String(contentsOfFile: csv, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 3 { usleep(5_000) }
        s.0.terminate()
        let r = finish(s)
        XCTAssertEqual(r.status, 143, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/checkpoints/t/latest.safetensors"))
    }

    func testChangedCorpusIsRefusedUnlessAllowedAndInitFromFineTunes() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "20", "--eval-every", "10", "--name", "a"] + small, cwd: dir).status, 0)
        // Same size, different content: only the hash can tell.
        var text = try String(contentsOfFile: dir + "/" + corpus, encoding: .utf8)
        text = text.replacingOccurrences(of: "question", with: "questino")
        try text.write(toFile: dir + "/" + corpus, atomically: true, encoding: .utf8)
        let refused = try run(["train", "--resume", "checkpoints/a", "--max-iters", "30"], cwd: dir)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.err.contains("corpus changed") && refused.err.contains("hash") && refused.err.contains("--allow-new-corpus"), refused.err)
        XCTAssertEqual(refused.err.split(separator: "\n").count, 1, refused.err)
        let allowed = try run(["train", "--resume", "checkpoints/a", "--max-iters", "30", "--allow-new-corpus"], cwd: dir)
        XCTAssertEqual(allowed.status, 0, allowed.err)
        XCTAssertEqual(try trainLosses(dir, "a").count, 30)
        // A character outside the vocabulary cannot be mapped yet (no unknown id): refused by name.
        try (text + "🦊\n").write(toFile: dir + "/other.txt", atomically: true, encoding: .utf8)
        let fox = try run(["train", "--resume", "checkpoints/a", "other.txt", "--max-iters", "40", "--allow-new-corpus"], cwd: dir)
        XCTAssertNotEqual(fox.status, 0)
        XCTAssertTrue(fox.err.contains("🦊") && fox.err.contains("not in the checkpoint's vocabulary"), fox.err)

        // Fine-tuning: new run dir, iteration restarts, weights start where "a" ended.
        let ft = try run(["train", corpus, "--init-from", "checkpoints/a", "--max-iters", "5", "--eval-every", "5", "--name", "ft",
                          "--hidden", "99", "--lr", "0.001", "--threads", "1", "--seq", "20", "--batch", "8"], cwd: dir)
        XCTAssertEqual(ft.status, 0, ft.err)
        XCTAssertTrue(ft.err.contains("--hidden ignored"), ft.err)
        let o = try JSONSerialization.jsonObject(with: Data(try run(["info", "--json", "checkpoints/ft"], cwd: dir).out.utf8)) as! [String: Any]
        XCTAssertEqual(o["hidden"] as? Int, 32)
        XCTAssertEqual(o["iteration"] as? Int, 5)
        XCTAssertEqual((o["initFrom"] as? String).map { $0.hasPrefix("checkpoints/a/") }, true)
        let first = Double(try trainLosses(dir, "ft")[0])!, fresh = Double(try trainLosses(dir, "a")[0])!
        XCTAssertLessThan(first, fresh - 0.5, "fine-tuning starts from trained weights: \(first) vs \(fresh)")
    }

    // MARK: - Refusing files that do not fit

    /// Rewrites a safetensors file: `edit` may change the metadata and tensor entries; data is re-laid out.
    func rewrite(_ path: String, to out: String, edit: (inout [String: String], inout [String: [String: Any]]) -> Void) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
        var meta = header["__metadata__"] as! [String: String]
        var tensors = header.filter { $0.key != "__metadata__" }.mapValues { $0 as! [String: Any] }
        let data = Array(bytes[(8 + n)...])
        let original = tensors
        edit(&meta, &tensors)
        var newData: [UInt8] = []
        var entries: [String: Any] = ["__metadata__": meta]
        for name in tensors.keys.sorted() {
            var t = tensors[name]!
            let src = (original[name] ?? t)["data_offsets"] as! [Int]
            let chunk = Array(data[src[0]..<src[1]])
            t["data_offsets"] = [newData.count, newData.count + chunk.count]
            newData += chunk
            entries[name] = t
        }
        var json = [UInt8](try JSONSerialization.data(withJSONObject: entries))
        while json.count % 8 != 0 { json.append(0x20) }
        var file = (0..<8).map { UInt8(truncatingIfNeeded: json.count >> (8 * $0)) }
        file += json + newData
        try Data(file).write(to: URL(fileURLWithPath: out))
    }

    func testMismatchedMissingAndNewerCheckpointsAreRefusedInOneLine() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "10", "--eval-every", "10", "--name", "ok"] + small, cwd: dir).status, 0)
        let good = dir + "/checkpoints/ok/latest.safetensors"
        try rewrite(good, to: dir + "/same.safetensors") { _, _ in }
        XCTAssertEqual(try run(["eval", "--checkpoint", "same.safetensors", corpus], cwd: dir).status, 0, "the rewriter itself keeps files valid")

        try rewrite(good, to: dir + "/hidden.safetensors") { meta, _ in
            meta["model"] = meta["model"]!.replacingOccurrences(of: "\"hidden\":32", with: "\"hidden\":33")
        }
        try rewrite(good, to: dir + "/missing.safetensors") { _, t in t["rnn.weight_hh_l1"] = nil }
        try rewrite(good, to: dir + "/newer.safetensors") { meta, _ in meta["format_version"] = "99" }
        try rewrite(good, to: dir + "/vocab.safetensors") { meta, _ in meta["vocab"] = "[\"a\",\"b\"]" }
        let expected = ["hidden.safetensors": "tensor \"rnn.weight_ih_l0\" has shape [128, 44], expected [132, 44]",
                        "missing.safetensors": "no tensor named \"rnn.weight_hh_l1\"",
                        "newer.safetensors": "format version 99 is newer than this charrnn reads",
                        "vocab.safetensors": "vocabulary has 2 entries but the model expects"]
        for (file, message) in expected.sorted(by: { $0.key < $1.key }) {
            for cmd in [["eval", "--checkpoint", file, corpus], ["info", file], ["sample", "--checkpoint", file, "--length", "5"],
                        ["train", "--resume", file]] {
                let r = try run(cmd, cwd: dir)
                XCTAssertNotEqual(r.status, 0, "\(cmd)")
                XCTAssertEqual(r.err.split(separator: "\n").count, 1, "\(cmd): \(r.err)")
                XCTAssertTrue(r.err.contains(file) && r.err.contains(message), "\(cmd): \(r.err)")
            }
        }
    }
}
