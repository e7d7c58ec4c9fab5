// HTTPBehaviourTests.swift — serve's HTTP surface beyond the API bodies, in process: GET routes
// answer HEAD (no body, same headers), another method on a route is 405 with `Allow`, the route
// table behind that is the router's, /favicon.ico is 204, /v1/models/{id} is percent-decoded,
// JSON answers keep their Content-Length through the logging middleware; a stream's first event
// carries the seed; /v1/score runs a slice at a time with generation steps between the slices
// and gives exactly the evaluator's result. (HTTP/1.0, Expect: 100-continue, malformed chunked
// bodies, signals and the port in use need a socket: scripts/serve-test.sh.)

import CharRNNAPI
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import CharRNN
@testable import CharRNNServer

final class HTTPBehaviourTests: XCTestCase {
    func makeServer(_ ck: Checkpoint.Loaded) throws -> CompletionServer {
        var c = ServeConfiguration()
        c.maxStreams = 4
        c.limits = RequestLimits(maxTokens: 200, maxPromptBytes: 1000, maxChoices: 3)
        return try CompletionServer(checkpoint: ck, model: ServedModel(id: "tiny", path: ck.path, summary: CheckpointSummary(checkpoint: ck),
                                                                       version: "9.9.9", created: 1234), configuration: c)
    }

    func withRouter(_ body: @escaping @Sendable (any TestClientProtocol, CompletionServer) async throws -> Void) async throws {
        let server = try makeServer(try RouterTests.checkpoint())
        server.engine.start()
        defer { server.engine.shutdown(grace: 0); server.engine.waitUntilStopped() }
        let app = Application(router: server.makeRouter())
        try await app.test(.router) { client in try await body(client, server) }
    }

    func testMethodsHeadFaviconAndModelID() async throws {
        try await withRouter { client, _ in
            let get = try await client.execute(uri: "/health", method: .get)
            let head = try await client.execute(uri: "/health", method: .head)
            XCTAssertEqual(head.status, .ok)
            XCTAssertEqual(head.body.readableBytes, 0)
            XCTAssertEqual(head.headers[.contentType], "application/json")
            XCTAssertEqual(get.headers[.contentLength], String(get.body.readableBytes), "JSON keeps its Content-Length")
            XCTAssertEqual(head.headers[.contentLength], get.headers[.contentLength])

            for (uri, method, allow) in [("/health", HTTPRequest.Method.post, "GET, HEAD"), ("/v1/completions", .get, "POST"),
                                         ("/v1/score", .head, "POST"), ("/v1/models/tiny", .delete, "GET, HEAD"), ("/", .put, "GET, HEAD")] {
                let r = try await client.execute(uri: uri, method: method)
                XCTAssertEqual(r.status, .methodNotAllowed, "\(method) \(uri)")
                XCTAssertEqual(r.headers[.allow], allow, "\(method) \(uri)")
                let e = try JSONSerialization.jsonObject(with: Data(RouterTests.bytes(r.body))) as? [String: Any]
                XCTAssertEqual((e?["error"] as? [String: Any])?["message"] as? String, "\(method.rawValue) is not allowed on \(uri)")
            }
            let none = try await client.execute(uri: "/v1/nothing", method: .post)
            XCTAssertEqual(none.status, .notFound)

            let icon = try await client.execute(uri: "/favicon.ico", method: .get)
            XCTAssertEqual(icon.status, .noContent)

            for uri in ["/v1/models/ti%6Ey", "/v1/models/%74%69%6E%79"] {
                let r = try await client.execute(uri: uri, method: .get)
                XCTAssertEqual(r.status, .ok, uri)
            }
            let other = try await client.execute(uri: "/v1/models/a%20b", method: .get)
            XCTAssertEqual(other.status, .notFound)
            XCTAssertTrue(String(decoding: RouterTests.bytes(other.body), as: UTF8.self).contains("model 'a b' not found"))
        }
    }

    /// Every route of the table answers its methods (never 404 or 405), and each GET route HEAD.
    func testRouteTableIsTheRouters() async throws {
        try await withRouter { client, _ in
            for (path, methods) in CompletionServer.routes {
                for m in methods {
                    let r = try await client.execute(uri: path.replacingOccurrences(of: ":id", with: "tiny"), method: m,
                                                     body: m == .post ? ByteBuffer(string: "{\"prompt\":\"t\",\"max_tokens\":1,\"input\":\"the\"}") : nil)
                    XCTAssertFalse([.notFound, .methodNotAllowed].contains(r.status), "\(m) \(path): \(r.status)")
                }
            }
            XCTAssertNil(CompletionServer.allowedMethods(path: "/v1/models/a/b"))
            XCTAssertEqual(CompletionServer.allowedMethods(path: "/v1/score/"), [.post])
        }
    }

    func testStreamFirstEventCarriesTheSeed() async throws {
        try await withRouter { client, _ in
            for (body, seed) in [(#"{"prompt":"the ","max_tokens":5,"seed":18446744073709551615,"stream":true}"#, "18446744073709551615"),
                                 (#"{"prompt":"the ","max_tokens":0,"seed":7,"stream":true}"#, "7")] {
                let s = try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body))
                let events = String(decoding: RouterTests.bytes(s.body), as: UTF8.self).components(separatedBy: "\n\n")
                XCTAssertTrue(events[0].hasSuffix(#","seed":\#(seed)}"#), events[0])
                XCTAssertFalse(events.dropFirst().contains { $0.contains(#""seed""#) }, "only the first event")
                let first = try JSONSerialization.jsonObject(with: Data(events[0].dropFirst(6).utf8)) as? [String: Any]
                XCTAssertNotNil(first?["choices"])
            }
            // without a seed: the one drawn, which gives the same text again
            let s = try await client.execute(uri: "/v1/completions", method: .post,
                                             body: ByteBuffer(string: #"{"prompt":"the ","max_tokens":30,"temperature":1,"stream":true}"#))
            let raw = String(decoding: RouterTests.bytes(s.body), as: UTF8.self)
            let events = raw.components(separatedBy: "\n\n").filter { $0.hasPrefix("data: {") }
            let seed = try XCTUnwrap(events[0].components(separatedBy: #","seed":"#).last.map { String($0.dropLast()) })
            XCTAssertFalse(seed.isEmpty || seed.contains { !$0.isNumber }, events[0])
            var text = ""
            for e in events {
                let o = try JSONSerialization.jsonObject(with: Data(e.dropFirst(6).utf8)) as? [String: Any]
                for c in (o?["choices"] as? [[String: Any]]) ?? [] { text += c["text"] as? String ?? "" }
            }
            let again = try await client.execute(uri: "/v1/completions", method: .post,
                                                 body: ByteBuffer(string: #"{"prompt":"the ","max_tokens":30,"temperature":1,"seed":\#(seed)}"#))
            let c = try JSONDecoder().decode(Completion.self, from: Data(RouterTests.bytes(again.body)))
            XCTAssertEqual(c.choices[0].text, text)
            XCTAssertEqual(String(c.seed), seed)
        }
    }

    /// A long score runs a slice per engine job: a generation step runs between every two slices,
    /// and the result is the evaluator's, bit for bit.
    func testScoreInterleavesWithGeneration() async throws {
        let ck = try RouterTests.checkpoint()
        let server = try makeServer(ck)
        let engine = server.engine
        engine.start()
        defer { engine.shutdown(grace: 0); engine.waitUntilStopped() }
        let vocab = ck.meta.vocabulary
        let ticket = GenerationTicket(GenerationRequest(prompt: vocab.encode("the ", normalize: .none).ids, choices: 1, seed: 1,
                                                        options: SamplingOptions(temperature: 1, topK: 0, topP: 1), maxTokens: 10_000_000),
                                      bufferLimit: 1 << 24)
        try engine.submit(ticket)
        for _ in 0..<5000 where engine.active == 0 { try await Task.sleep(for: .milliseconds(1)) }
        XCTAssertEqual(engine.active, 1)

        var text = String(repeating: "the quick brown fox jumps over a lazy dog\nand then she said hello world\n", count: 300)
        let enc = try text.withUTF8 { (u) throws(TextError) in try vocab.encode(bytes: u, name: "t", normalize: .none) }
        let evaluator = server.evaluator
        let begun = await engine.run { try? evaluator.value.begin(enc, name: "t") }
        let job = try XCTUnwrap(begun ?? nil)
        let steps = StepLog()
        let result = await CompletionServer.scoreInSlices(job, evaluator: evaluator, slice: 500) { body in
            await engine.run { steps.append(engine.steps); return body() }
        }
        XCTAssertEqual(engine.active, 1, "the stream ran throughout")
        ticket.cancel()
        let expected = try Evaluator(checkpoint: ck).evaluate(text: text, name: "t")
        XCTAssertEqual(result, expected)
        let s = steps.values
        XCTAssertGreaterThanOrEqual(s.count, expected.scored / 2500, "one slice per minibatch of 50 × 50 at least")
        XCTAssertGreaterThan(s.count, 5)
        for (a, b) in zip(s, s.dropFirst()) { XCTAssertGreaterThan(b, a, "a generation step between two slices") }
    }
}

final class StepLog: @unchecked Sendable {
    private let lock = NSLock()
    private var v: [Int] = []
    func append(_ x: Int) { lock.withLock { v.append(x) } }
    var values: [Int] { lock.withLock { v } }
}
