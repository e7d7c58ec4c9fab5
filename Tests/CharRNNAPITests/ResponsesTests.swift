// ResponsesTests.swift — every body `charrnn serve` sends: the Codable response types carry the
// keys and value types the server's dictionaries had (each compared with the dictionary it
// replaced, parsed); keys are sorted; explicit nulls stay; the hand-written streamed event is the
// encoded `CompletionChunk` byte for byte, for text needing every escape; the end of a stream.

import CharRNN
import CharRNNAPI
import Foundation
import XCTest

final class ResponsesTests: XCTestCase {
    /// Parses JSON bytes into Foundation objects, for comparing with the dictionaries the server built.
    func parse(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> NSDictionary {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes)) as? NSDictionary, String(decoding: bytes, as: UTF8.self), file: file, line: line)
    }

    /// The same JSON value: same keys, same values, and a number where there was a number (NSNumber
    /// equality would let `true` equal `1`, so the JSON type is compared too).
    func assertSameJSON(_ a: Any, _ b: Any, _ path: String = "$", file: StaticString = #filePath, line: UInt = #line) {
        switch (a, b) {
        case let (x as NSDictionary, y as NSDictionary):
            XCTAssertEqual(Set(x.allKeys.map { "\($0)" }), Set(y.allKeys.map { "\($0)" }), path, file: file, line: line)
            for case let k as String in x.allKeys { if let v = y[k] { assertSameJSON(x[k]!, v, path + "." + k, file: file, line: line) } }
        case let (x as NSArray, y as NSArray):
            XCTAssertEqual(x.count, y.count, path, file: file, line: line)
            for (i, (u, v)) in zip(x, y).enumerated() { assertSameJSON(u, v, "\(path)[\(i)]", file: file, line: line) }
        case let (x as NSNumber, y as NSNumber):
            func kind(_ n: NSNumber) -> String { String(cString: n.objCType) }   // "d" for a number written with a fraction
            XCTAssertEqual(kind(x), kind(y), "\(path): \(x) vs \(y)", file: file, line: line)
            XCTAssertEqual(x, y, path, file: file, line: line)
        case let (x as String, y as String): XCTAssertEqual(x, y, path, file: file, line: line)
        case (is NSNull, is NSNull): break
        default: XCTFail("\(path): \(a) vs \(b)", file: file, line: line)
        }
    }

    /// What the server wrote before these types: `JSONSerialization` of a dictionary.
    func dictionaryJSON(_ o: Any) throws -> NSDictionary {
        try parse(Array(try JSONSerialization.data(withJSONObject: o, options: [.withoutEscapingSlashes])))
    }

    // MARK: - Completions

    func testCompletionIsTheDictionaryItReplaced() throws {
        let c = Completion(id: "cmpl-1f", created: 1700000000, model: "tiny", choices: [
            CompletionChoice(index: 0, text: "a\nb \"c\" é😀/", finishReason: "length"),
            CompletionChoice(index: 1, text: "", finishReason: "stop"),
        ], systemFingerprint: "charrnn-0.11.0", seed: .max, usage: Usage(prompt: 4, completion: 60))
        let old: [String: Any] = [
            "id": "cmpl-1f", "object": "text_completion", "created": 1700000000, "model": "tiny",
            "choices": [["index": 0, "text": "a\nb \"c\" é😀/", "finish_reason": "length", "logprobs": NSNull()],
                        ["index": 1, "text": "", "finish_reason": "stop", "logprobs": NSNull()]],
            "system_fingerprint": "charrnn-0.11.0", "seed": UInt64.max,
            "usage": ["prompt_tokens": 4, "completion_tokens": 60, "total_tokens": 64]]
        assertSameJSON(try parse(APIJSON.encode(c)), try dictionaryJSON(old))
        XCTAssertEqual(String(decoding: APIJSON.encode(c), as: UTF8.self), #"""
            {"choices":[{"finish_reason":"length","index":0,"logprobs":null,"text":"a\nb \"c\" é😀/"},\#
            {"finish_reason":"stop","index":1,"logprobs":null,"text":""}],"created":1700000000,"id":"cmpl-1f","model":"tiny",\#
            "object":"text_completion","seed":18446744073709551615,"system_fingerprint":"charrnn-0.11.0",\#
            "usage":{"completion_tokens":60,"prompt_tokens":4,"total_tokens":64}}
            """#, "compact, keys sorted")
        XCTAssertEqual(try JSONDecoder().decode(Completion.self, from: Data(APIJSON.encode(c))), c)
    }

    func testUsageChunkIsTheDictionaryItReplaced() throws {
        let u = CompletionUsageChunk(id: "cmpl-2", created: 5, model: "m", usage: Usage(prompt: 0, completion: 3))
        let old: [String: Any] = ["id": "cmpl-2", "object": "text_completion", "created": 5, "model": "m", "choices": [Any](),
                                  "usage": ["prompt_tokens": 0, "completion_tokens": 3, "total_tokens": 3]]
        assertSameJSON(try parse(APIJSON.encode(u)), try dictionaryJSON(old))
    }

    // MARK: - Streamed events

    /// Hand-formatted events parse as the OpenAI chunk, with text that needs every kind of escape.
    func testCompletionEventsAreTheAPIChunk() throws {
        let ev = CompletionEvents(id: "cmpl-\"x\\", created: 1700000000, model: "tiny\nmodel", fingerprint: "charrnn-0.1")
        let texts = ["plain", "quote \" back \\ slash", "nl\ncr\rtab\t", "\u{0}\u{1}\u{1F}\u{7F}", "é😀", ""]
        for (k, text) in texts.enumerated() {
            for finish in [nil, FinishReason.length, .stop, .cancelled] {
                var out: [UInt8] = Array("x".utf8)
                ev.append(index: 10 * k + 3, text: Array(text.utf8), finish: finish, to: &out)
                XCTAssertEqual(out.first, UInt8(ascii: "x"), "appends")
                let event = String(decoding: out.dropFirst(), as: UTF8.self)
                XCTAssertTrue(event.hasPrefix("data: {") && event.hasSuffix("}\n\n"), event)
                XCTAssertEqual(event.filter { $0 == "\n" }.count, 2, "one line per event: \(event)")
                let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any], event)
                XCTAssertEqual(o["id"] as? String, "cmpl-\"x\\"); XCTAssertEqual(o["object"] as? String, "text_completion")
                XCTAssertEqual(o["created"] as? Int, 1700000000); XCTAssertEqual(o["model"] as? String, "tiny\nmodel")
                XCTAssertEqual(o["system_fingerprint"] as? String, "charrnn-0.1")
                let c = try XCTUnwrap((o["choices"] as? [[String: Any]])?.first)
                XCTAssertEqual(c["index"] as? Int, 10 * k + 3)
                XCTAssertEqual(c["text"] as? String, text)
                XCTAssertEqual(c["finish_reason"] as? String, finish?.rawValue)
                XCTAssertTrue(c["logprobs"] is NSNull)
                if finish == nil { XCTAssertTrue(c["finish_reason"] is NSNull) }
            }
        }
    }


    /// The hand-written event is `data: ` + the encoded `CompletionChunk` + a blank line, byte for
    /// byte: every byte below 0x80, and scalars an encoder might escape (U+2028, U+FEFF, DEL).
    func testEventIsTheEncodedChunk() {
        var texts = (0..<0x80).map { String(UnicodeScalar(UInt8($0))) }
        texts += ["\u{2028}\u{2029}", "\u{FEFF}x", "\u{7F}", "é😀🦊", "</script>", "a\\u0000b", ""]
        let names = ["tiny", "a\"b\\c\n\u{1}", "π/2"]
        for name in names {
            let ev = CompletionEvents(id: "cmpl-" + name, created: -3, model: name, fingerprint: "charrnn-" + name)
            for (i, text) in texts.enumerated() {
                for finish in [nil, FinishReason.stop] {
                    var out: [UInt8] = []
                    ev.append(index: i, text: Array(text.utf8), finish: finish, to: &out)
                    let chunk = CompletionChunk(id: "cmpl-" + name, created: -3, model: name, systemFingerprint: "charrnn-" + name,
                                                choices: [CompletionChoice(index: i, text: text, finishReason: finish?.rawValue)])
                    XCTAssertEqual(String(decoding: out, as: UTF8.self), "data: " + String(decoding: APIJSON.encode(chunk), as: UTF8.self) + "\n\n",
                                   text.debugDescription)
                }
            }
        }
    }

    /// A logprobs event formatted by hand is, as JSON, the event `APIJSON` encodes for the same chunk:
    /// tokens that need escaping, a first prompt token (null), a token cut by a stop, 0–5 alternatives,
    /// tiny and large log p (exponent forms), −inf.
    func testLogprobsEventIsTheEncodedChunk() throws {
        let tokens = ["\n", "\"", "\\", "a", "é", "\u{1}", "🦊", "ab", "\u{2028}", "z"]
        let vocab = Vocabulary(unit: .grapheme, tokens: tokens)
        let V = tokens.count
        var rng = SystemRandomNumberGenerator()
        let ev = CompletionEvents(id: "cmpl-x", created: 5, model: "m\"", fingerprint: "f")
        for trial in 0..<200 {
            var z = (0..<V).map { _ in -Float.random(in: 0...30, using: &rng) }
            z[trial % V] = -1e-7                                   // an exponent form
            if trial % 7 == 0 { z[(trial + 1) % V] = -.infinity }
            var entries: [TokenLogprob] = []
            var offset = 0
            for k in 0..<Int.random(in: 0...6, using: &rng) {
                let t = Int.random(in: 0..<V, using: &rng)
                var e = z.withUnsafeBufferPointer {
                    TokenLogprob(token: t, bytes: tokens[t].utf8.count, z: trial % 5 == 0 && k == 0 ? nil : $0.baseAddress!,
                                 V: V, top: trial % 6, isPrompt: k == 0)
                }
                if t == 7 && trial % 2 == 0 { e.bytes = 1 }          // "ab" cut by a stop after "a"
                e.offset = offset
                offset += vocab.text(of: e).unicodeScalars.count
                entries.append(e)
            }
            let text = Array(entries.map { vocab.text(of: $0) }.joined().utf8)
            for finish in [nil, FinishReason.length] {
                var hand: [UInt8] = [], coded: [UInt8] = []
                ev.append(index: trial % 3, text: text, finish: finish, entries: entries, vocabulary: vocab, to: &hand)
                ev.append(index: trial % 3, text: text, finish: finish, logprobs: CompletionLogprobs(entries, vocabulary: vocab), to: &coded)
                let h = String(decoding: hand, as: UTF8.self), c = String(decoding: coded, as: UTF8.self)
                XCTAssertTrue(h.hasPrefix("data: ") && h.hasSuffix("\n\n"), h)
                XCTAssertEqual(try parse(Array(hand.dropFirst(6).dropLast(2))), try parse(Array(coded.dropFirst(6).dropLast(2))), "\(h)\n\(c)")
            }
        }
    }

    /// The end of a stream: the overflow error (when dropped), the usage chunk, [DONE].
    func testEndOfStream() throws {
        let ev = CompletionEvents(id: "cmpl-9", created: 7, model: "m", fingerprint: "f")
        for overflowed in [false, true] {
            var out = Array("x".utf8)
            ev.appendEnd(usage: Usage(prompt: 2, completion: 5), overflowed: overflowed, to: &out)
            let lines = String(decoding: out.dropFirst(), as: UTF8.self).components(separatedBy: "\n\n")
            XCTAssertEqual(lines.last, "")
            XCTAssertEqual(lines.dropLast().last, "data: [DONE]")
            XCTAssertEqual(lines.count, overflowed ? 4 : 3)
            if overflowed {
                let e = try parse(Array(lines[0].dropFirst(6).utf8))["error"] as? NSDictionary
                XCTAssertEqual(e?["code"] as? String, "stream_overflow")
            }
            let usage = try parse(Array(lines[lines.count - 3].dropFirst(6).utf8))
            XCTAssertEqual((usage["usage"] as? NSDictionary)?["total_tokens"] as? Int, 7)
            XCTAssertEqual((usage["choices"] as? NSArray)?.count, 0)
            XCTAssertEqual(usage["id"] as? String, "cmpl-9")
        }
    }

    // MARK: - Models, score, health

    static let summaryJSON = #"""
    {"batch":50,"bestIteration":30,"bestValLoss":2.5,"cell":"lstm","corpus":{"bytes":100,"hash":"00ff","name":"c","path":"c.txt","tokens":100},
     "currentLR":0.002,"dropout":0,"embed":0,"epoch":1.5,"file":"r/best.safetensors","fileBytes":1234,"firstTokens":["\n"," ","a"],
     "formatVersion":3,"format":"charrnn","hasOptimizerState":true,"hidden":32,"iteration":30,"lastValLoss":2.6,"layers":2,"lr":0.002,
     "optimizer":"adam","parameters":10000,"rarestTokens":[{"count":1,"token":"z"}],"seq":50,"tensors":12,"trainingSeconds":3.5,"unit":"scalar",
     "vocabSize":3}
    """#

    func testModelObjectIsTheDictionaryItReplaced() throws {
        let summary = try JSONDecoder().decode(CheckpointSummary.self, from: Data(Self.summaryJSON.utf8))
        let limits = ServerLimits(maxStreams: 4, limits: RequestLimits(maxTokens: 100, maxPromptBytes: 200, maxChoices: 3), maxBodyBytes: 4096)
        let object = ModelObject(id: "r", created: 99, summary: summary, version: "0.11.0", limits: limits)
        // the server embedded `info --json` (sorted keys) parsed back into a dictionary
        let info = try JSONSerialization.jsonObject(with: Data(Self.summaryJSON.utf8))
        let old: [String: Any] = [
            "id": "r", "object": "model", "created": 99, "owned_by": "charrnn", "charrnn": info, "charrnn_version": "0.11.0",
            "limits": ["max_streams": 4, "max_tokens": 100, "max_prompt_bytes": 200, "max_n": 3, "max_body_bytes": 4096]]
        assertSameJSON(try parse(APIJSON.encode(object)), try dictionaryJSON(old))
        assertSameJSON(try parse(APIJSON.encode(ModelList(data: [object]))), try dictionaryJSON(["object": "list", "data": [old]]))
    }

    func testScoreIsTheDictionaryItReplaced() throws {
        let scored = EvalResult(file: "text", tokens: 19, unknown: 1, scored: 18, loss: 1.25)
        let empty = EvalResult(file: "text", tokens: 1, unknown: 0, scored: 0, loss: .nan)
        let list = ScoreList(model: "m", data: [ScoreResult(index: 0, result: scored), ScoreResult(index: 1, result: empty)])
        func num(_ x: Double) -> Any { x.isFinite ? x : NSNull() }
        let old: [String: Any] = ["object": "list", "model": "m", "data": [
            ["index": 0, "tokens": 19, "unknown": 1, "scored": 18, "nats_per_token": num(1.25), "bits_per_character": num(scored.bitsPerToken),
             "perplexity": num(scored.perplexity)],
            ["index": 1, "tokens": 1, "unknown": 0, "scored": 0, "nats_per_token": NSNull(), "bits_per_character": NSNull(), "perplexity": NSNull()],
        ]]
        assertSameJSON(try parse(APIJSON.encode(list)), try dictionaryJSON(old))
        XCTAssertEqual(try JSONDecoder().decode(ScoreList.self, from: Data(APIJSON.encode(list))), list)
    }

    func testHealthIsTheDictionaryItReplaced() throws {
        for shutting in [false, true] {
            let h = HealthStatus(shuttingDown: shutting, model: "m", activeStreams: 2, queued: 1, maxStreams: 8, steps: 12345)
            let old: [String: Any] = ["status": shutting ? "shutting_down" : "ok", "model": "m", "active_streams": 2, "queued": 1,
                                      "max_streams": 8, "steps": 12345]
            assertSameJSON(try parse(APIJSON.encode(h)), try dictionaryJSON(old))
        }
    }
}
