// ServeCLITests.swift — issue 11 through the binary: `sample --stop/--prime-file`, `--version`, and
// `charrnn serve` giving exactly `charrnn sample`'s text for the same prompt/seed/options with
// requests in flight together, then stopping cleanly on SIGTERM. (Builds with
// CHARRNN_NO_SERVER=1 have no `serve`; the server test is skipped there.)

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

final class ServeCLITests: CharrnnCLITestCase {
    func testVersion() throws {
        let r = try run(["--version"], cwd: workDir())
        XCTAssertEqual(r.status, 0)
        XCTAssertNotNil(r.out.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+\n$"#, options: .regularExpression), r.out)
    }

    /// --stop cuts before the first occurrence (in every sample of --num-samples); --prime-file is --prime.
    func testStopAndPrimeFile() throws {
        let dir = workDir()
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "30", "--eval-every", "30", "--name", "r"] + small, cwd: dir).status, 0)
        let base = ["sample", "--checkpoint", "checkpoints/r", "--length", "300", "--seed", "8", "--temp", "1"]
        let full = try run(base + ["--prime", "To "], cwd: dir)
        XCTAssertEqual(full.status, 0, full.err)
        let gen = Array(full.out.dropFirst(3))
        let stop = String(gen[40..<42])
        let first = full.out.dropFirst(3).range(of: stop)!.lowerBound
        let cut = try run(base + ["--prime", "To ", "--stop", stop, "--stop", "never-generated"], cwd: dir)
        XCTAssertEqual(cut.status, 0, cut.err)
        XCTAssertEqual(cut.out, "To " + String(full.out.dropFirst(3)[..<first]))
        try "To ".write(toFile: dir + "/p.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try run(base + ["--prime-file", "p.txt", "--stop", stop, "--stop", "never-generated"], cwd: dir).out, cut.out)
        let two = try run(base + ["--prime", "To ", "--stop", stop, "--num-samples", "2", "--output-dir", "o"], cwd: dir)
        XCTAssertEqual(two.status, 0, two.err)
        XCTAssertEqual(try String(contentsOfFile: dir + "/o/sample-1.txt", encoding: .utf8), cut.out)
        XCTAssertNotEqual(try run(base + ["--prime", "a", "--prime-file", "p.txt"], cwd: dir).status, 0)
        XCTAssertNotEqual(try run(base + ["--stop", ""], cwd: dir).status, 0)
        XCTAssertNotEqual(try run(base + ["--prime-file", "missing.txt"], cwd: dir).status, 0)
    }

    func testServeGivesSampleTextAndStopsOnSIGTERM() throws {
        let dir = workDir()
        let help = try run(["--help"], cwd: dir).out
        guard help.range(of: #"\n  serve +"#, options: .regularExpression) != nil else { throw XCTSkip("built without the server (CHARRNN_NO_SERVER)") }
        let corpus = try writeCorpus(dir)
        XCTAssertEqual(try run(["train", corpus, "--max-iters", "30", "--eval-every", "30", "--name", "r"] + small, cwd: dir).status, 0)
        let server = try start(["serve", "--checkpoint", "checkpoints/r", "--port", "0", "--threads", "1", "--max-streams", "8"], cwd: dir)
        defer { if server.0.isRunning { server.0.terminate() } }
        // the first line on stderr names the port
        var banner = Data()
        let deadline = Date().addingTimeInterval(30)
        while !banner.contains(UInt8(ascii: "\n")) && Date() < deadline { banner += server.2.fileHandleForReading.availableData }
        let line = String(decoding: banner, as: UTF8.self)
        guard let m = line.range(of: #"127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else { return XCTFail("no port in \(line)") }
        let port = line[m].split(separator: ":")[1]

        struct Case { var prompt: String; var seed: Int; var temp: Double; var topK: Int; var topP: Double; var n: Int; var length: Int
                      var extra: [String: Any] = [:]; var flags: [String] = [] }   // penalties and logit_bias: the body's fields, sample's flags
        let cases = [Case(prompt: "To ", seed: 1, temp: 0.8, topK: 0, topP: 1, n: 1, length: 200),
                     Case(prompt: "", seed: 2, temp: 1.1, topK: 5, topP: 1, n: 3, length: 150),
                     Case(prompt: "床前", seed: 3, temp: 0.6, topK: 0, topP: 0.9, n: 1, length: 250),
                     Case(prompt: "Whether", seed: 4, temp: 0, topK: 0, topP: 1, n: 2, length: 100),
                     Case(prompt: "To ", seed: 5, temp: 0.9, topK: 0, topP: 1, n: 2, length: 150,
                          extra: ["frequency_penalty": 0.5, "presence_penalty": -0.25, "repetition_penalty": 1.5, "repeat_window": 12,
                                  "logit_bias": ["\n": -100, "e": 1.5]],
                          flags: ["--frequency-penalty", "0.5", "--presence-penalty", "-0.25", "--repetition-penalty", "1.5", "--repeat-window", "12",
                                  "--logit-bias", "\n=-100", "--logit-bias", "e=1.5"])]
        final class Box: @unchecked Sendable { var texts: [[String]]; let lock = NSLock(); init(_ n: Int) { texts = Array(repeating: [], count: n) } }
        let box = Box(cases.count)
        let group = DispatchGroup()
        for (i, c) in cases.enumerated() {
            var req = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/v1/completions")!)
            req.httpMethod = "POST"
            req.httpBody = try JSONSerialization.data(withJSONObject: [
                "prompt": c.prompt, "seed": c.seed, "temperature": c.temp, "top_k": c.topK, "top_p": c.topP, "n": c.n, "max_tokens": c.length,
            ].merging(c.extra) { $1 })
            group.enter()
            URLSession.shared.dataTask(with: req) { data, _, _ in
                let o = data.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
                let choices = (o?["choices"] as? [[String: Any]]) ?? []
                box.lock.withLock { box.texts[i] = choices.map { $0["text"] as? String ?? "" } }
                group.leave()
            }.resume()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        let texts = box.lock.withLock { box.texts }
        for (i, c) in cases.enumerated() {
            var args = ["sample", "--checkpoint", "checkpoints/r", "--length", "\(c.length)", "--seed", "\(c.seed)", "--temp", "\(c.temp)",
                        "--top-k", "\(c.topK)", "--top-p", "\(c.topP)", "--num-samples", "\(c.n)", "--output-dir", "s\(i)"]
            if !c.prompt.isEmpty { args += ["--prime", c.prompt] }
            args += c.flags
            XCTAssertEqual(try run(args, cwd: dir).status, 0)
            let expected = try (1...c.n).map { k in
                String(try String(contentsOfFile: dir + "/s\(i)/sample-\(k).txt", encoding: .utf8).dropFirst(c.prompt.count))
            }
            XCTAssertEqual(texts[i], expected, "request \(i)")
        }
        server.0.terminate()   // SIGTERM
        let r = finish(server)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.err.contains("POST /v1/completions 200"), r.err)
        XCTAssertTrue(r.err.contains("charrnn serve: stopped"), r.err)
    }
}
