// RequestTests.swift — the request decoders of `charrnn serve` (CompletionRequest, ScoreRequest):
// every field with its exact JSON type and range, defaults, limits, and every refusal a one-line 400
// APIError naming the field, whose body is OpenAI's error object.

import CharRNNAPI
import Foundation
import XCTest

final class RequestTests: XCTestCase {
    func testCompletionRequestDecoding() throws {
        let limits = RequestLimits(maxTokens: 100, maxPromptBytes: 50, maxChoices: 4)
        func decode(_ s: String) throws -> CompletionRequest { try CompletionRequest(body: Array(s.utf8), limits: limits) }
        let r = try decode(#"{"model":"m","prompt":"hi","max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":3,"n":2,"seed":18446744073709551615,"stop":["\n",".."],"stream":true,"user":"u","logit_bias":{}}"#)
        XCTAssertEqual(r.prompt, "hi"); XCTAssertEqual(r.maxTokens, 7); XCTAssertEqual(r.temperature, 0.5); XCTAssertEqual(r.topP, 0.9)
        XCTAssertEqual(r.topK, 3); XCTAssertEqual(r.n, 2); XCTAssertEqual(r.seed, .max); XCTAssertEqual(r.stop, ["\n", ".."]); XCTAssertTrue(r.stream)
        let d = try decode(#"{"prompt":["x"],"stop":null,"seed":null,"max_tokens":4.0}"#)
        XCTAssertEqual(d.prompt, "x"); XCTAssertEqual(d.maxTokens, 4); XCTAssertNil(d.seed); XCTAssertEqual(d.temperature, 0.8); XCTAssertEqual(d.n, 1)
        let bad: [(String, String?)] = [
            ("", nil), ("{", nil), ("[1]", nil), ("null", nil), (#"{"prompt":5}"#, "prompt"), (#"{"prompt":["a","b"]}"#, "prompt"),
            (#"{"max_tokens":101}"#, "max_tokens"), (#"{"max_tokens":-1}"#, "max_tokens"), (#"{"max_tokens":1.5}"#, "max_tokens"),
            (#"{"max_tokens":"5"}"#, "max_tokens"), (#"{"max_tokens":true}"#, "max_tokens"), (#"{"max_tokens":1e300}"#, "max_tokens"),
            (#"{"temperature":-0.1}"#, "temperature"), (#"{"temperature":1e999}"#, nil), (#"{"temperature":NaN}"#, nil),
            (#"{"top_p":0}"#, "top_p"), (#"{"top_p":1.01}"#, "top_p"), (#"{"n":0}"#, "n"), (#"{"n":5}"#, "n"),
            (#"{"seed":-1}"#, "seed"), (#"{"seed":1.5}"#, "seed"), (#"{"seed":"1"}"#, "seed"), (#"{"stop":""}"#, "stop"),
            (#"{"stop":["a","b","c","d","e"]}"#, "stop"), (#"{"stop":[1]}"#, "stop"), (#"{"stream":"yes"}"#, "stream"),
            (#"{"prompt":"\#(String(repeating: "x", count: 51))"}"#, "prompt"), (#"{"model":3}"#, "model"),
        ]
        for (body, param) in bad {
            XCTAssertThrowsError(try decode(body), body) { e in
                guard let e = e as? APIError else { return XCTFail("not an APIError: \(e)") }
                XCTAssertEqual(e.status, 400, body)
                if let param { XCTAssertEqual(e.param, param, body) }
                XCTAssertFalse(e.message.contains("\n"), body)
                let json = try? JSONSerialization.jsonObject(with: Data(e.json)) as? [String: Any]
                XCTAssertNotNil((json?["error"] as? [String: Any])?["message"] as? String, body)
            }
        }
        XCTAssertThrowsError(try CompletionRequest(body: [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], limits: limits)) {
            XCTAssertTrue(($0 as? APIError)?.message.contains("UTF-8 (byte 2)") ?? false, "\($0)")
        }
        let s = try ScoreRequest(body: Array(#"{"input":["ab","c"]}"#.utf8), limits: limits)
        XCTAssertEqual(s.input, ["ab", "c"])
        XCTAssertThrowsError(try ScoreRequest(body: Array(#"{"input":[1]}"#.utf8), limits: limits))
        XCTAssertThrowsError(try ScoreRequest(body: Array(#"{}"#.utf8), limits: limits))
    }

    /// The error object's bytes (keys sorted, null param/code): what clients have always received.
    func testErrorObjectBytes() {
        XCTAssertEqual(String(decoding: APIError.invalid("bad \"x\"\n", param: "n").json, as: UTF8.self),
                       #"{"error":{"code":"invalid_value","message":"bad \"x\"\n","param":"n","type":"invalid_request_error"}}"#)
        struct Boom: Error, CustomStringConvertible { var description: String { "boom/1" } }
        XCTAssertEqual(String(decoding: APIError.internalError(Boom()).json, as: UTF8.self),
                       #"{"error":{"code":null,"message":"internal error: boom/1","param":null,"type":"server_error"}}"#)
        XCTAssertEqual(APIError.bodyTooLarge(length: 9, limit: 8).status, 413)
        XCTAssertEqual(APIError.http(status: 404, reason: "Not Found", method: "GET", path: "/x"),
                       APIError(status: 404, message: "no route GET /x", code: "not_found"))
        XCTAssertEqual(APIError.http(status: 405, reason: "", method: "GET", path: "/v1/score").type, "invalid_request_error")
        XCTAssertEqual(APIError.http(status: 502, reason: "Bad Gateway", method: "GET", path: "/").type, "server_error")
    }
}
