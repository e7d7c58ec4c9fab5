// PenaltyRequestTests.swift — the request fields frequency_penalty, presence_penalty (OpenAI's
// −2…2), repetition_penalty, repeat_window (extensions) and logit_bias: exact JSON types, ranges,
// the options they make (equal to `sample`'s flags), and logit_bias keys resolved against a
// vocabulary (the character itself, else a decimal token id), every refusal a 400 naming the field.

import CharRNN
import CharRNNAPI
import Foundation
import XCTest

final class PenaltyRequestTests: XCTestCase {
    let limits = RequestLimits(maxTokens: 100, maxPromptBytes: 50, maxChoices: 4)
    let vocab = Vocabulary(unit: .scalar, tokens: ["\n", " ", "1", "=", "a", "b", "é"])

    func decode(_ s: String) throws -> CompletionRequest { try CompletionRequest(body: Array(s.utf8), limits: limits) }

    func testPenaltyFieldsDecode() throws {
        let r = try decode(#"{"frequency_penalty":-1.5,"presence_penalty":2,"repetition_penalty":1.3,"repeat_window":64,"logit_bias":{"\n":-100,"a":2.5,"5":-1}}"#)
        let o = try r.samplingOptions(vocabulary: vocab, normalize: .none)
        XCTAssertEqual(o.frequencyPenalty, -1.5); XCTAssertEqual(o.presencePenalty, 2); XCTAssertEqual(o.repetitionPenalty, 1.3)
        XCTAssertEqual(o.repeatWindow, 64)
        XCTAssertEqual(o.logitBias, [LogitBias(id: 0, bias: -100), LogitBias(id: 4, bias: 2.5), LogitBias(id: 5, bias: -1)], "\"5\" is token id 5 (b)")
        XCTAssertNil(o.problem(vocabulary: vocab))
        XCTAssertEqual(r.options.frequencyPenalty, -1.5, "options carry the penalties (the bias needs the vocabulary)")
        // defaults: off; null is "not given"; an empty bias is no bias
        let d = try decode(#"{"frequency_penalty":null,"logit_bias":{}}"#)
        let od = try d.samplingOptions(vocabulary: vocab, normalize: .none)
        XCTAssertFalse(od.shapesLogits)
        XCTAssertEqual(od.repetitionPenalty, 1); XCTAssertEqual(od.repeatWindow, 0)
        // a digit that is a token is the character; "1" is not id 1
        let c = try decode(#"{"logit_bias":{"1":3,"=":-2}}"#).samplingOptions(vocabulary: vocab, normalize: .none)
        XCTAssertEqual(c.logitBias, [LogitBias(id: 2, bias: 3), LogitBias(id: 3, bias: -2)])
        // normalized as the prompt is
        let n = try decode(#"{"logit_bias":{"e\u0301":1}}"#)
        XCTAssertEqual(try n.samplingOptions(vocabulary: vocab, normalize: .nfc).logitBias, [LogitBias(id: 6, bias: 1)])
    }

    func testPenaltyFieldsRefused() {
        let bad: [String] = [
            #"{"frequency_penalty":2.5}"#, #"{"frequency_penalty":-2.01}"#, #"{"frequency_penalty":"1"}"#, #"{"frequency_penalty":true}"#,
            #"{"presence_penalty":3}"#, #"{"presence_penalty":[1]}"#, #"{"repetition_penalty":0}"#, #"{"repetition_penalty":-1}"#,
            #"{"repetition_penalty":101}"#, #"{"repeat_window":-1}"#, #"{"repeat_window":1.5}"#, #"{"repeat_window":"8"}"#,
            #"{"logit_bias":[1]}"#, #"{"logit_bias":"a"}"#, #"{"logit_bias":{"a":"1"}}"#, #"{"logit_bias":{"a":-100.5}}"#,
            #"{"logit_bias":{"a":101}}"#, #"{"logit_bias":{"a":null}}"#, #"{"logit_bias":{"a":1e999}}"#,
        ]
        let param = ["frequency_penalty", "presence_penalty", "repetition_penalty", "repeat_window", "logit_bias"]
        for body in bad {
            XCTAssertThrowsError(try decode(body), body) { e in
                guard let e = e as? APIError else { return XCTFail("not an APIError: \(e)") }
                XCTAssertEqual(e.status, 400, body)
                if !body.contains("1e999") { XCTAssertTrue(param.contains(e.param ?? ""), "\(body): param \(e.param ?? "nil")") }
                XCTAssertFalse(e.message.contains("\n"), body)
            }
        }
        // keys the vocabulary cannot take: 400 naming logit_bias, in OpenAI's error object
        let keys = [#"{"z":1}"#, #"{"ab":1}"#, #"{"7":1}"#, #"{"01":1}"#, #"{"-1":1}"#, #"{"":1}"#, #"{"a":1,"4":2}"#,
                    #"{"\n":-100," ":-100,"1":-100,"=":-100,"a":-100,"b":-100,"é":-100}"#]
        for k in keys {
            let body = #"{"logit_bias":"# + k + "}"
            XCTAssertThrowsError(try decode(body).samplingOptions(vocabulary: vocab, normalize: .none), body) { e in
                guard let e = e as? APIError else { return XCTFail("not an APIError: \(e)") }
                XCTAssertEqual(e.status, 400, body); XCTAssertEqual(e.param, "logit_bias", body)
                XCTAssertTrue(e.message.hasPrefix("logit_bias: "), e.message)
                XCTAssertFalse(e.message.contains("\n"), e.message)
                let json = try? JSONSerialization.jsonObject(with: Data(e.json)) as? [String: Any]
                XCTAssertEqual((json?["error"] as? [String: Any])?["param"] as? String, "logit_bias")
            }
        }
        XCTAssertNoThrow(try decode(#"{"logit_bias":{"\n":-100," ":-100,"1":-100,"=":-100,"a":-100,"b":-100}}"#).samplingOptions(vocabulary: vocab, normalize: .none),
                         "one token left")
    }
}
