// LogprobsRequestTests.swift — `logprobs`, `echo` and `best_of` of the completions body: types,
// ranges, OpenAI's rules (best_of ≥ n, not with stream), each refusal a one-line 400 naming the
// field; and the `logprobs` object's wire form (keys, nulls for the first prompt token).

import CharRNN
import CharRNNAPI
import Foundation
import XCTest

final class LogprobsRequestTests: XCTestCase {
    let limits = RequestLimits(maxTokens: 100, maxPromptBytes: 50, maxChoices: 4)
    func decode(_ s: String) throws -> CompletionRequest { try CompletionRequest(body: Array(s.utf8), limits: limits) }

    func testFields() throws {
        let d = try decode(#"{"prompt":"hi"}"#)
        XCTAssertNil(d.logprobs); XCTAssertFalse(d.echo); XCTAssertNil(d.bestOf); XCTAssertEqual(d.candidates, 1); XCTAssertNil(d.engineLogprobs)
        let r = try decode(#"{"prompt":"hi","logprobs":5,"echo":true,"best_of":4,"n":2,"max_tokens":0}"#)
        XCTAssertEqual(r.logprobs, 5); XCTAssertTrue(r.echo); XCTAssertEqual(r.bestOf, 4); XCTAssertEqual(r.candidates, 4); XCTAssertEqual(r.maxTokens, 0)
        XCTAssertEqual(try decode(#"{"logprobs":0}"#).logprobs, 0)
        XCTAssertEqual(try decode(#"{"logprobs":null,"echo":null,"best_of":null}"#).logprobs, nil)
        XCTAssertEqual(try decode(#"{"best_of":3}"#).engineLogprobs, 0, "best_of needs log p even when not asked")
        XCTAssertEqual(try decode(#"{"best_of":1,"stream":true}"#).bestOf, 1, "best_of 1 streams (nothing to pick)")
        let bad: [(String, String)] = [
            (#"{"logprobs":6}"#, "logprobs"), (#"{"logprobs":-1}"#, "logprobs"), (#"{"logprobs":true}"#, "logprobs"),
            (#"{"logprobs":"5"}"#, "logprobs"), (#"{"logprobs":1.5}"#, "logprobs"), (#"{"echo":1}"#, "echo"), (#"{"echo":"true"}"#, "echo"),
            (#"{"best_of":0}"#, "best_of"), (#"{"best_of":5}"#, "best_of"), (#"{"best_of":2,"n":3}"#, "best_of"),
            (#"{"best_of":2,"stream":true}"#, "best_of"), (#"{"best_of":[2]}"#, "best_of"),
        ]
        for (body, param) in bad {
            XCTAssertThrowsError(try decode(body), body) { e in
                guard let e = e as? APIError else { return XCTFail("not an APIError: \(e)") }
                XCTAssertEqual(e.status, 400, body); XCTAssertEqual(e.param, param, body)
                XCTAssertFalse(e.message.contains("\n"), body)
            }
        }
    }

    func testLogprobsObjectEncoding() throws {
        let vocab = Vocabulary(unit: .scalar, tokens: ["\n", "a", "b"])
        var first = TokenLogprob(token: 1, bytes: 1, z: nil, V: 3, top: 2, isPrompt: true)
        first.offset = 0
        let z: [Float] = [-2, -0.5, -1]
        var second = z.withUnsafeBufferPointer { TokenLogprob(token: 0, bytes: 1, z: $0.baseAddress!, V: 3, top: 2, isPrompt: false) }
        second.offset = 1
        let lp = CompletionLogprobs([first, second], vocabulary: vocab)
        let choice = CompletionChoice(index: 0, text: "a\n", finishReason: "length", logprobs: lp)
        XCTAssertEqual(String(decoding: APIJSON.encode(choice), as: UTF8.self),
                       #"{"finish_reason":"length","index":0,"logprobs":{"text_offset":[0,1],"token_logprobs":[null,-2],"tokens":["a","\n"],"top_logprobs":[null,{"a":-0.5,"b":-1}]},"text":"a\n"}"#)
        XCTAssertEqual(try JSONDecoder().decode(CompletionChoice.self, from: Data(APIJSON.encode(choice))), choice)
        XCTAssertTrue(String(decoding: APIJSON.encode(CompletionChoice(index: 0, text: "", finishReason: nil)), as: UTF8.self).contains(#""logprobs":null"#))
    }
}
