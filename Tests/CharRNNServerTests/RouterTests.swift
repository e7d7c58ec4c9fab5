// RouterTests.swift — the router of `charrnn serve` in process (HummingbirdTesting, no socket): a
// completion is the engine's text for the request; a streamed completion is the same text in
// server-sent events ending in usage and [DONE]; bad JSON, an unknown model and an unknown route
// are OpenAI error objects with their statuses; /v1/models is the checkpoint summary and limits;
// /v1/score is `Evaluator.evaluate(path:)` of a file holding the text; /health. The end-to-end
// binary (sockets, timeouts, disconnects, signals, clients) is scripts/serve-test.sh's.

import CharRNNAPI
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import CharRNN
@testable import CharRNNServer

final class RouterTests: XCTestCase {
    /// A randomly initialised GRU saved as a checkpoint and loaded back (as `serve` loads one).
    static func checkpoint() throws -> Checkpoint.Loaded {
        let text = "the quick brown fox jumps over a lazy dog\nand then she said hello world\n"
        let corpus = try Corpus(bytes: Array(text.utf8), name: "tiny")
        let cfg = ModelConfig(cell: .gru, layers: 2, hidden: 16, vocabSize: corpus.vocabulary.count)
        let model = CharRNNModel(config: cfg, maxT: 1, maxB: 1)
        var rng = Xoshiro256(seed: 3)
        model.initialize(rng: &rng)
        for v in model.layout.views { for i in 0..<v.count { model.params.ptr[v.offset + i] *= 8 } }   // sharper predictions
        let meta = CheckpointMeta(model: cfg, train: TrainConfig(), vocabulary: corpus.vocabulary,
                                  corpus: CorpusInfo(name: "tiny", path: "tiny.txt", bytes: text.utf8.count, tokens: corpus.count),
                                  progress: RunProgress(), trainBatches: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-router-\(getpid())-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/tiny.safetensors"
        try Checkpoint.save(to: path, model: model, optimizer: nil, state: nil, meta: meta)
        return try Checkpoint.load(path: path)
    }

    /// Runs `body` against the router of a server on `checkpoint`, its engine started (and stopped after).
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

    static func bytes(_ b: ByteBuffer) -> [UInt8] { Array(buffer: b) }

    /// The text a directly driven engine on the same checkpoint generates for `request`.
    static func engineText(_ checkpoint: Checkpoint.Loaded, _ request: GenerationRequest) throws -> [String] {
        let m = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: m)
        let engine = BatchEngine(model: m, vocabulary: checkpoint.meta.vocabulary, maxStreams: 4, queueLimit: 4)
        let ticket = GenerationTicket(request)
        try engine.submit(ticket)
        var text = [[UInt8]](repeating: [], count: request.choices)
        for _ in 0..<10_000 where !ticket.progress.isDone {
            engine.iterate()
            if let u = ticket.take() { for i in text.indices { text[i] += u.text[i] } }
        }
        if let u = ticket.take() { for i in text.indices { text[i] += u.text[i] } }
        return text.map { String(decoding: $0, as: UTF8.self) }
    }

    func testCompletionsStreamedAndNot() async throws {
        let ck = try Self.checkpoint()
        let prompt = ck.meta.vocabulary.encode("the ", normalize: .none).ids
        let options = SamplingOptions(temperature: 0.8, topK: 0, topP: 1)
        let expected = try Self.engineText(ck, GenerationRequest(prompt: prompt, choices: 2, seed: 7, options: options, maxTokens: 40))
        XCTAssertEqual(expected[0].unicodeScalars.count, 40)
        try await withRouter(ck) { client, _ in
            let body = #"{"model":"tiny","prompt":"the ","max_tokens":40,"temperature":0.8,"seed":7,"n":2}"#
            let r = try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body))
            XCTAssertEqual(r.status, .ok)
            XCTAssertEqual(r.headers[.contentType], "application/json")
            let c = try JSONDecoder().decode(Completion.self, from: Data(Self.bytes(r.body)))
            XCTAssertEqual(c.choices.map(\.text), expected)
            XCTAssertEqual(c.choices.map(\.finishReason), ["length", "length"])
            XCTAssertEqual(c.usage, Usage(prompt: 4, completion: 80))
            XCTAssertEqual([c.model, c.object, c.systemFingerprint], ["tiny", "text_completion", "charrnn-9.9.9"])
            XCTAssertEqual(c.seed, 7)
            XCTAssertTrue(c.id.hasPrefix("cmpl-"))

            // the same request streamed: the same text, chunk by chunk, then usage and [DONE]
            let streamed = body.replacingOccurrences(of: "}", with: #","stream":true}"#)
            let s = try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: streamed))
            XCTAssertEqual(s.status, .ok)
            XCTAssertEqual(s.headers[.contentType], "text/event-stream")
            let events = String(decoding: Self.bytes(s.body), as: UTF8.self).components(separatedBy: "\n\n")
            XCTAssertEqual(events.suffix(2), ["data: [DONE]", ""])
            var text = ["", ""], finish: [String?] = [nil, nil]
            for e in events.dropLast(3) {
                XCTAssertTrue(e.hasPrefix("data: "), e)
                let chunk = try JSONDecoder().decode(CompletionChunk.self, from: Data(e.dropFirst(6).utf8))
                XCTAssertEqual(chunk.choices.count, 1)
                let choice = chunk.choices[0]
                XCTAssertNil(finish[choice.index], "text after the finish reason")
                text[choice.index] += choice.text
                finish[choice.index] = choice.finishReason
            }
            XCTAssertGreaterThanOrEqual(events.count - 3, 2, "an event per choice at least (one per token when the reader keeps up)")
            XCTAssertEqual(text, expected)
            XCTAssertEqual(finish, ["length", "length"])
            let usage = try JSONDecoder().decode(CompletionUsageChunk.self, from: Data(events[events.count - 3].dropFirst(6).utf8))
            XCTAssertEqual(usage.usage, Usage(prompt: 4, completion: 80))
            XCTAssertEqual(usage.choices, [])
        }
    }

    func testErrorObjects() async throws {
        let ck = try Self.checkpoint()
        try await withRouter(ck) { client, _ in
            func error(_ uri: String, _ method: HTTPRequest.Method = .post, _ body: String? = nil) async throws -> (HTTPResponse.Status, APIError?) {
                let r = try await client.execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) })
                XCTAssertEqual(r.headers[.contentType], "application/json", uri)
                let o = try JSONSerialization.jsonObject(with: Data(Self.bytes(r.body))) as? [String: Any]
                guard let e = o?["error"] as? [String: Any], let message = e["message"] as? String, let type = e["type"] as? String else {
                    XCTFail("not an error object: \(String(decoding: Self.bytes(r.body), as: UTF8.self))")
                    return (r.status, nil)
                }
                XCTAssertEqual(Set(e.keys), ["message", "type", "param", "code"])
                return (r.status, APIError(status: Int(r.status.code), message: message, type: type, param: e["param"] as? String, code: e["code"] as? String))
            }
            let (status, bad) = try await error("/v1/completions", .post, #"{"prompt": "a","#)
            XCTAssertEqual(status, .badRequest)
            XCTAssertEqual(bad?.code, "invalid_json"); XCTAssertNil(bad?.param); XCTAssertEqual(bad?.type, "invalid_request_error")
            let (s2, wrongType) = try await error("/v1/completions", .post, #"{"max_tokens": "5"}"#)
            XCTAssertEqual(s2, .badRequest); XCTAssertEqual(wrongType?.param, "max_tokens")
            let (s3, model) = try await error("/v1/completions", .post, #"{"model": "gpt-4", "prompt": "a"}"#)
            XCTAssertEqual(s3, .notFound); XCTAssertEqual(model?.code, "model_not_found")
            let (s4, unknown) = try await error("/v1/completions", .post, #"{"prompt": "ZZZ"}"#)
            XCTAssertEqual(s4, .badRequest); XCTAssertEqual(unknown?.code, "unknown_characters")
            let (s5, route) = try await error("/v2/nothing", .get)
            XCTAssertEqual(s5, .notFound); XCTAssertEqual(route?.code, "not_found"); XCTAssertEqual(route?.message, "no route GET /v2/nothing")
            let (s6, noInput) = try await error("/v1/score", .post, "{}")
            XCTAssertEqual(s6, .badRequest); XCTAssertEqual(noInput?.param, "input")
            let (s7, otherModel) = try await error("/v1/models/other", .get)
            XCTAssertEqual(s7, .notFound); XCTAssertEqual(otherModel?.param, "model")
        }
    }

    func testModelsScoreAndHealth() async throws {
        let ck = try Self.checkpoint()
        let texts = ["the lazy dog", "hello world 🦊 and the fox", "t"]
        let dir = (ck.path as NSString).deletingLastPathComponent
        let evaluator = try Evaluator(checkpoint: ck)
        let expected = try texts.enumerated().map { (i, t) in
            try t.write(toFile: dir + "/\(i).txt", atomically: true, encoding: .utf8)
            return try evaluator.evaluate(path: dir + "/\(i).txt")
        }
        try await withRouter(ck) { client, server in
            let m = try await client.execute(uri: "/v1/models", method: .get)
            XCTAssertEqual(m.status, .ok)
            let list = try JSONDecoder().decode(ModelList.self, from: Data(Self.bytes(m.body)))
            XCTAssertEqual(list.data.map(\.id), ["tiny"])
            XCTAssertEqual(list.data[0].charrnn, CheckpointSummary(checkpoint: ck))
            XCTAssertEqual(list.data[0].charrnnVersion, "9.9.9"); XCTAssertEqual(list.data[0].created, 1234)
            XCTAssertEqual(list.data[0].limits, ServerLimits(maxStreams: 4, limits: server.configuration.limits, maxBodyBytes: 1 << 20))
            let one = try await client.execute(uri: "/v1/models/tiny", method: .get)
            XCTAssertEqual(try JSONDecoder().decode(ModelObject.self, from: Data(Self.bytes(one.body))), list.data[0])

            let body = String(decoding: try JSONEncoder().encode(["input": texts]), as: UTF8.self)
            let s = try await client.execute(uri: "/v1/score", method: .post, body: ByteBuffer(string: body))
            XCTAssertEqual(s.status, .ok)
            let scores = try JSONDecoder().decode(ScoreList.self, from: Data(Self.bytes(s.body)))
            XCTAssertEqual(scores.model, "tiny")
            XCTAssertEqual(scores.data, expected.enumerated().map { ScoreResult(index: $0, result: $1) }, "= charrnn eval on files")
            XCTAssertNil(scores.data[2].natsPerToken, "one token: nothing scored, null")
            XCTAssertEqual(scores.data[1].unknown, 1)

            let h = try await client.execute(uri: "/health", method: .get)
            XCTAssertEqual(h.status, .ok)
            let health = try JSONDecoder().decode(HealthStatus.self, from: Data(Self.bytes(h.body)))
            XCTAssertEqual([health.status, health.model], ["ok", "tiny"])
            XCTAssertEqual([health.activeStreams, health.queued, health.maxStreams], [0, 0, 4])
        }
    }
}
