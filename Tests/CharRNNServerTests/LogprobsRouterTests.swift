// LogprobsRouterTests.swift — `logprobs`, `echo` and `best_of` of POST /v1/completions in process:
// echo + logprobs + max_tokens 0 scores a text as `charrnn eval --batch 1` does (Σ token_logprobs =
// −loss × scored); streamed chunks carry their own tokens' logprobs and together equal the
// non-streamed object; best_of returns the candidates of best mean log p per character, each equal
// to one of the `n = best_of` choices of the same seed, with usage counting every candidate; and
// the new fields' refusals are OpenAI error objects.

import CharRNNAPI
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import CharRNN
@testable import CharRNNServer

final class LogprobsRouterTests: XCTestCase {
    typealias R = RouterTests

    /// RouterTests' server (limits: 4 streams, n ≤ 3), its engine started and stopped after.
    func withRouter(_ checkpoint: Checkpoint.Loaded, _ body: @escaping @Sendable (any TestClientProtocol, CompletionServer) async throws -> Void) async throws {
        var c = ServeConfiguration()
        c.maxStreams = 4
        c.limits = RequestLimits(maxTokens: 200, maxPromptBytes: 1000, maxChoices: 3)
        let server = try CompletionServer(checkpoint: checkpoint, model: ServedModel(id: "tiny", path: checkpoint.path,
                                                                                     summary: CheckpointSummary(checkpoint: checkpoint),
                                                                                     version: "9.9.9", created: 1234),
                                          configuration: c)
        server.engine.start()
        defer { server.engine.shutdown(grace: 0); server.engine.waitUntilStopped() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in try await body(client, server) }
    }

    static func post(_ client: any TestClientProtocol, _ body: String) async throws -> (HTTPResponse.Status, [UInt8]) {
        let r = try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body))
        return (r.status, R.bytes(r.body))
    }

    func testEchoScoringEqualsEval() async throws {
        let ck = try R.checkpoint()
        let text = "the quick brown fox said hello"
        try await withRouter(ck) { client, _ in
            let (st, b) = try await Self.post(client, #"{"prompt":"\#(text)","max_tokens":0,"echo":true,"logprobs":3}"#)
            XCTAssertEqual(st, .ok)
            let c = try JSONDecoder().decode(Completion.self, from: Data(b))
            let choice = c.choices[0]
            XCTAssertEqual(choice.text, text)
            XCTAssertEqual(c.usage, Usage(prompt: text.count, completion: 0))
            let lp = try XCTUnwrap(choice.logprobs)
            XCTAssertEqual(lp.tokens.joined(), text)
            XCTAssertEqual(lp.textOffset, Array(0..<text.count))
            XCTAssertNil(lp.tokenLogprobs[0]); XCTAssertNil(lp.topLogprobs[0])
            XCTAssertTrue(lp.topLogprobs.dropFirst().allSatisfy { $0?.count == 3 })
            for (k, top) in lp.topLogprobs.enumerated().dropFirst() {
                // the chosen token's log p is at most the best alternative's
                XCTAssertLessThanOrEqual(lp.tokenLogprobs[k]!, top!.values.max()!)
            }
            let sum = lp.tokenLogprobs.dropFirst().reduce(0.0) { $0 + Double($1!) }
            // `charrnn eval --batch 1` of the text (one sequential pass, as echo scores)
            let ev = try Evaluator(checkpoint: ck, batch: 1).evaluate(text: text, name: "t")
            XCTAssertEqual(ev.scored, text.count - 1)
            XCTAssertEqual(sum, -ev.loss * Double(ev.scored), accuracy: 1e-4 * Double(ev.scored))
        }
    }

    func testLogprobsStreamedAndNot() async throws {
        let ck = try R.checkpoint()
        try await withRouter(ck) { client, _ in
            let body = #"{"prompt":"the ","max_tokens":30,"seed":5,"logprobs":2,"echo":true,"stop":["o"],"n":2}"#
            let (_, b) = try await Self.post(client, body)
            let c = try JSONDecoder().decode(Completion.self, from: Data(b))
            for ch in c.choices {
                XCTAssertTrue(ch.text.hasPrefix("the "))
                let lp = try XCTUnwrap(ch.logprobs)
                XCTAssertEqual(lp.tokens.joined(), ch.text)
                XCTAssertEqual(lp.tokens.count, lp.tokenLogprobs.count); XCTAssertEqual(lp.tokens.count, lp.textOffset.count)
                var off = 0
                for (t, o) in zip(lp.tokens, lp.textOffset) { XCTAssertEqual(o, off); off += t.unicodeScalars.count }
            }
            // without echo: the same completion, offsets from 0, the prompt not in the object
            let (_, nb) = try await Self.post(client, body.replacingOccurrences(of: #""echo":true,"#, with: ""))
            let plain = try JSONDecoder().decode(Completion.self, from: Data(nb))
            for (p, e) in zip(plain.choices, c.choices) {
                XCTAssertEqual("the " + p.text, e.text)
                XCTAssertEqual(p.logprobs?.tokenLogprobs, Array(e.logprobs!.tokenLogprobs.dropFirst(4)))
                XCTAssertEqual(p.logprobs?.textOffset.first ?? 0, 0)
            }
            // streamed: each chunk's logprobs are its own tokens; together the non-streamed object
            let (_, sb) = try await Self.post(client, body.replacingOccurrences(of: "}", with: #","stream":true}"#))
            let events = String(decoding: sb, as: UTF8.self).components(separatedBy: "\n\n")
            var text = ["", ""], all = [CompletionLogprobs(), CompletionLogprobs()]
            for e in events.dropLast(3) {
                let chunk = try JSONDecoder().decode(CompletionChunk.self, from: Data(e.dropFirst(6).utf8))
                let ch = chunk.choices[0]
                let lp = try XCTUnwrap(ch.logprobs)
                XCTAssertEqual(lp.tokens.joined(), ch.text, "a chunk carries its own tokens")
                text[ch.index] += ch.text
                all[ch.index].tokens += lp.tokens; all[ch.index].tokenLogprobs += lp.tokenLogprobs
                all[ch.index].topLogprobs += lp.topLogprobs; all[ch.index].textOffset += lp.textOffset
            }
            XCTAssertEqual(text, c.choices.map(\.text))
            XCTAssertEqual(all, c.choices.map { $0.logprobs! })
        }
    }

    func testBestOf() async throws {
        let ck = try R.checkpoint()
        let vocab = ck.meta.vocabulary
        try await withRouter(ck) { client, _ in
            let (_, allB) = try await Self.post(client, #"{"prompt":"the ","max_tokens":25,"seed":11,"n":3,"logprobs":0,"temperature":1.5}"#)
            let all = try JSONDecoder().decode(Completion.self, from: Data(allB))
            let means = all.choices.map { ch -> Double in
                let lp = ch.logprobs!
                return lp.tokenLogprobs.reduce(0.0) { $0 + Double($1!) } / Double(ch.text.unicodeScalars.count)
            }
            XCTAssertEqual(Set(all.choices.map(\.text)).count, 3, "distinct candidates")
            let order = means.indices.sorted { means[$0] > means[$1] }
            for n in [1, 2] {
                let (st, b) = try await Self.post(client, #"{"prompt":"the ","max_tokens":25,"seed":11,"n":\#(n),"best_of":3,"temperature":1.5}"#)
                XCTAssertEqual(st, .ok)
                let c = try JSONDecoder().decode(Completion.self, from: Data(b))
                XCTAssertEqual(c.choices.map(\.text), order.prefix(n).map { all.choices[$0].text }, "the best mean log p, best first")
                XCTAssertEqual(c.choices.map(\.index), Array(0..<n))
                XCTAssertTrue(c.choices.allSatisfy { $0.logprobs == nil }, "not asked for")
                XCTAssertEqual(c.usage.completionTokens, 75, "usage counts every candidate")
            }
            _ = vocab
        }
    }

    func testRefusals() async throws {
        let ck = try R.checkpoint()
        try await withRouter(ck) { client, _ in
            for (body, param) in [(#"{"logprobs":6}"#, "logprobs"), (#"{"logprobs":-1}"#, "logprobs"), (#"{"logprobs":true}"#, "logprobs"),
                                  (#"{"echo":1}"#, "echo"), (#"{"best_of":1,"n":2}"#, "best_of"), (#"{"best_of":2,"stream":true}"#, "best_of"),
                                  (#"{"best_of":"2"}"#, "best_of")] {
                let (st, b) = try await Self.post(client, body)
                XCTAssertEqual(st, .badRequest, body)
                let o = try JSONSerialization.jsonObject(with: Data(b)) as? [String: Any]
                XCTAssertEqual((o?["error"] as? [String: Any])?["param"] as? String, param, body)
            }
        }
    }
}
