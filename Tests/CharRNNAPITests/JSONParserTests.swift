// JSONParserTests.swift — the JSON reader of serve's request bodies (JSONParser, through
// CompletionRequest): every value type and number class, escapes and surrogate pairs; nesting
// bounded at 64 levels and refused at the opening bracket of the 65th (brackets inside strings do
// not count); lone surrogates, duplicate keys and other malformed JSON each a one-line 400 naming
// the top-level field it lies in and the byte offset; and bodies of a few megabytes in any shape
// read in linear time.

@testable import CharRNNAPI
import Foundation
import XCTest

final class JSONParserTests: XCTestCase {
    func parse(_ s: String) throws -> JSONValue { try JSONParser.parse(Array(s.utf8)) }

    func refusal(_ body: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> APIError? {
        do {
            _ = try CompletionRequest(body: body, limits: RequestLimits())
            XCTFail("accepted \(String(decoding: body, as: UTF8.self).prefix(80))", file: file, line: line)
            return nil
        } catch {
            XCTAssertEqual(error.status, 400, file: file, line: line)
            XCTAssertFalse(error.message.contains("\n"), file: file, line: line)
            XCTAssertFalse(error.message.contains("typeMismatch") || error.message.contains("Dictionary"), error.message, file: file, line: line)
            return error
        }
    }

    func refusal(_ s: String, file: StaticString = #filePath, line: UInt = #line) -> APIError? { refusal(Array(s.utf8), file: file, line: line) }

    func testValues() throws {
        XCTAssertEqual(try parse(#" {"a": [null, true, false, 0, -0, 7, -9223372036854775808, 18446744073709551615, 1.5, -2e-3, 1E2, "x"], "b": {}} "#),
                       .object(["a": .array([.null, .bool(true), .bool(false), .int(0), .int(0), .int(7), .int(.min), .uint(.max),
                                             .double(1.5), .double(-0.002), .double(100), .string("x")]), "b": .object([:])]))
        XCTAssertEqual(try parse("18446744073709551616"), .double(18446744073709551616.0), "beyond UInt64: a double")
        XCTAssertEqual(try parse(#""\"\\\/\b\f\n\r\t\u00e9\u00E9\ud83e\udd8a\u0000é🦊""#), .string("\"\\/\u{8}\u{C}\n\r\té\u{E9}🦊\u{0}é🦊"))
        XCTAssertEqual(try parse("[]"), .array([]))
        XCTAssertEqual(try JSONParser.parse([0xEF, 0xBB, 0xBF] + Array("{}".utf8)), .object([:]), "a leading BOM is skipped")
        // brackets and quotes inside strings are text, not nesting
        let inString = "{\"prompt\": \"" + String(repeating: "[{\\\"", count: 200) + "\"}"
        XCTAssertEqual(try CompletionRequest(body: Array(inString.utf8), limits: RequestLimits()).prompt, String(repeating: "[{\"", count: 200))
    }

    func testLoneSurrogates() {
        // the issue's case: a clear message naming the field and the offset, not a typeMismatch
        let e = refusal(#"{"prompt": "ab\ud800"}"#)
        XCTAssertEqual(e?.message, #"prompt: invalid JSON string: lone surrogate \ud800 at byte 14"#)
        XCTAssertEqual(e?.param, "prompt"); XCTAssertEqual(e?.code, "invalid_json")
        for (body, unit) in [(#"{"prompt": "\udc00x"}"#, "udc00"), (#"{"prompt": "\ud800\ud800"}"#, "ud800"), (#"{"prompt": "\uD83E"}"#, "ud83e"),
                             (#"{"stop": ["a", "\ud800\u0041"]}"#, "ud800"), (#"{"x": {"y": "\udfff"}}"#, "udfff")] {
            let e = refusal(body)
            XCTAssertTrue(e?.message.contains("lone surrogate \\\(unit)") ?? false, "\(body): \(e?.message ?? "")")
        }
        XCTAssertEqual(refusal(#"{"stop": ["a", "\ud800"]}"#)?.param, "stop")
        // a key with control characters is shown escaped, so the message stays one line (fuzz finding)
        let odd = refusal(#"{"a\nb\u000c": "\ud800"}"#)
        XCTAssertEqual(odd?.message, #""a\nb\u{0C}": invalid JSON string: lone surrogate \ud800 at byte 16"#)
        XCTAssertEqual(odd?.param, "a\nb\u{0C}")
        XCTAssertEqual(refusal(#"{"input": "\ud800"}"#)?.param, "input")
    }

    func testNestingBound() throws {
        func nested(_ depth: Int, open: String = "[", close: String = "]") -> String {
            // depth counts the body's own object: {"x": [[…]]} with depth − 1 arrays
            "{\"x\": " + String(repeating: open, count: depth - 1) + String(repeating: close, count: depth - 1) + "}"
        }
        XCTAssertNoThrow(try CompletionRequest(body: Array(nested(64).utf8), limits: RequestLimits()))
        let e = refusal(nested(65))
        XCTAssertEqual(e?.code, "nesting_too_deep"); XCTAssertEqual(e?.param, "x")
        XCTAssertEqual(e?.message, "x: arrays and objects are nested more than 64 levels deep at byte \(6 + 63)")
        // objects too, and the issue's 511 levels and far deeper: refused at the 65th opening bracket
        let objects = "{\"x\": " + String(repeating: "{\"a\":", count: 100) + "1" + String(repeating: "}", count: 101)
        XCTAssertEqual(refusal(objects)?.code, "nesting_too_deep")
        for depth in [511, 100_000] {
            let r = refusal(nested(depth))
            XCTAssertEqual(r?.message.hasSuffix("at byte \(6 + 63)"), true, r?.message ?? "")
        }
        let unclosed = "{\"x\": " + String(repeating: "[", count: 1 << 20)
        XCTAssertEqual(refusal(unclosed)?.code, "nesting_too_deep")
    }

    func testMalformed() {
        let cases: [(String, String?, String)] = [
            (#"{"prompt": "a",}"#, nil, "expected a key"),
            (#"{"prompt": "a"} x"#, nil, "after the JSON value"),
            (#"{"temperature": NaN}"#, "temperature", "expected a value at byte 16"),
            (#"{"temperature": 1e999}"#, "temperature", "number 1e999 is out of range"),
            (#"{"n": 01}"#, "n", "leading zero"),
            (#"{"n": -}"#, "n", "expected a digit"),
            (#"{"n": 1.}"#, "n", "expected a digit"),
            (#"{"n": +1}"#, "n", "expected a value"),
            ("{\"prompt\": \"a\u{1}b\"}", "prompt", "control character U+0001"),
            (#"{"prompt": "a\qb"}"#, "prompt", "unknown escape"),
            (#"{"prompt": "\u12"}"#, "prompt", "four hex digits"),
            (#"{"prompt": "abc"#, "prompt", "no closing quote"),
            (#"{"n": 1, "n": 2}"#, "n", #"the key n appears twice"#),
            (#"{"x": {"a": 1, "a": 1}}"#, "x", #"the key a appears twice"#),
            (#"{"n": tru}"#, "n", "expected a value"),
            (#"{"prompt": "a""#, nil, "expected ',' or '}'"),
            ("{\"n\": " + String(repeating: "1", count: 401) + "}", "n", "longer than 400"),
        ]
        for (body, param, part) in cases {
            let e = refusal(body)
            XCTAssertEqual(e?.param, param, body)
            XCTAssertTrue(e?.message.contains(part) ?? false, "\(body): \(e?.message ?? "")")
            XCTAssertEqual(e?.code, "invalid_json", body)
        }
    }

    /// Bodies of a few megabytes of the shapes that were slow (nesting, many small values, long
    /// strings with escapes) are read in time linear in their size: each well under the bound a
    /// quadratic reader would need (minutes), even in a debug build on a loaded machine.
    func testLinearTime() throws {
        let deep = String(repeating: "[", count: 60) + String(repeating: "]", count: 60)
        let shapes = [
            "{\"x\": [" + Array(repeating: deep, count: 20_000).joined(separator: ",") + "]}",
            "{\"x\": [" + Array(repeating: "{\"a\":[1,\"b\",null]}", count: 100_000).joined(separator: ",") + "]}",
            "{\"prompt\": \"" + String(repeating: "\\u00e9\\n", count: 200_000) + "\"}",
        ]
        for body in shapes {
            let clock = ContinuousClock()
            let took = try clock.measure { _ = try JSONParser.parse(Array(body.utf8)) }
            XCTAssertLessThan(took, .seconds(20), "\(body.utf8.count) bytes")
        }
    }
}
