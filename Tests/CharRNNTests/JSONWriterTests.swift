// JSONWriterTests.swift — the package's one JSON string escaper (Text/JSONWriter.swift) writes what
// Foundation's JSONEncoder writes for every string (so hand-written JSON and Codable JSON agree),
// and its integers are JSONEncoder's too.

import Foundation
import XCTest
@testable import CharRNN

final class JSONWriterTests: XCTestCase {
    func encoded<T: Encodable>(_ v: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return String(decoding: try e.encode([v]), as: UTF8.self)   // in an array: a bare scalar is not every encoder's top level
    }

    func testStringsAreJSONEncoders() throws {
        var texts = (0..<0x80).map { String(UnicodeScalar(UInt8($0))) }
        texts += ["", "plain", "quote \" back \\ slash / solidus", "nl\ncr\rtab\t\u{8}\u{C}", "\u{0}\u{1}\u{1F}\u{7F}", "é😀🦊",
                  "\u{2028}\u{2029}\u{FEFF}", "e\u{301}", "\u{10FFFF}"]
        for t in texts {
            var out = Array("[".utf8)
            JSONWriter.appendString(t, to: &out)
            out.append(UInt8(ascii: "]"))
            XCTAssertEqual(String(decoding: out, as: UTF8.self), try encoded(t), t.debugDescription)
            var fromBytes: [UInt8] = []
            JSONWriter.appendString(Array(t.utf8), to: &fromBytes)
            XCTAssertEqual(fromBytes, Array(out.dropFirst().dropLast()))
        }
    }

    func testIntegersAreJSONEncoders() throws {
        for n in [0, 1, 9, 10, 99, 100, 12345, -1, -10, -987654321, Int.max, Int.min, 1 << 48] {
            var out: [UInt8] = []
            JSONWriter.appendInteger(n, to: &out)
            XCTAssertEqual("[" + String(decoding: out, as: UTF8.self) + "]", try encoded(n))
        }
    }
}
