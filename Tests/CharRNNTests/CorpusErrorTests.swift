// CorpusErrorTests.swift — a bad corpus gives one specific, one-line error: empty files, a BOM alone,
// invalid UTF-8 anywhere in every mode, overlong encodings and surrogates, a corpus with nothing to learn.
// The same cases through the binary: Tests/charrnnTests/CorpusCLITests.swift.

import Foundation
import XCTest
@testable import CharRNN

final class CorpusErrorTests: XCTestCase {
    func corpusError(_ bytes: [UInt8], unit: TokenUnit = .scalar, normalize: Normalization = .none,
                     file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            _ = try Corpus(bytes: bytes, name: "data/x.txt", unit: unit, normalize: normalize)
            XCTFail("accepted hostile corpus \(bytes.prefix(16))", file: file, line: line)
            return nil
        } catch {
            let d = "\(error)"
            XCTAssertFalse(d.contains("\n"), "not one line: \(d)", file: file, line: line)
            return d
        }
    }

    func testEmptyFileAndBOMOnly() {
        XCTAssertEqual(corpusError([]), "data/x.txt: corpus is empty")
        XCTAssertEqual(corpusError([0xEF, 0xBB, 0xBF], unit: .grapheme), "data/x.txt: corpus is empty")
    }

    func testInvalidUTF8AtStartMiddleEndInEveryMode() {
        for unit in TokenUnit.allCases {
            for nfc in Normalization.allCases {
                XCTAssertEqual(corpusError([0xFF] + Array("abc".utf8), unit: unit, normalize: nfc),
                               "data/x.txt:1:1 (byte 0): invalid UTF-8 sequence 0xFF")
                XCTAssertEqual(corpusError(Array("ab\ncd".utf8) + [0xC3, 0x28] + Array("ef".utf8), unit: unit, normalize: nfc),
                               "data/x.txt:2:3 (byte 5): invalid UTF-8 sequence 0xC3")
                XCTAssertEqual(corpusError(Array("abc 床".utf8) + [0xE4, 0xB8], unit: unit, normalize: nfc),
                               "data/x.txt:1:6 (byte 7): invalid UTF-8 sequence 0xE4 0xB8")
            }
        }
    }

    func testOverlongEncodingsAndSurrogatesAreRejected() {
        // "/" as C0 AF and E0 80 AF, U+D800 as ED A0 80, U+110000 as F4 90 80 80.
        XCTAssertEqual(corpusError(Array("a".utf8) + [0xC0, 0xAF]), "data/x.txt:1:2 (byte 1): invalid UTF-8 sequence 0xC0 0xAF")
        XCTAssertEqual(corpusError([0xE0, 0x80, 0xAF], unit: .grapheme), "data/x.txt:1:1 (byte 0): invalid UTF-8 sequence 0xE0 0x80 0xAF")
        XCTAssertEqual(corpusError(Array("xy".utf8) + [0xED, 0xA0, 0x80], normalize: .nfc), "data/x.txt:1:3 (byte 2): invalid UTF-8 sequence 0xED 0xA0 0x80")
        XCTAssertEqual(corpusError([0xF4, 0x90, 0x80, 0x80]), "data/x.txt:1:1 (byte 0): invalid UTF-8 sequence 0xF4 0x90 0x80 0x80")
    }

    func info(_ path: String) -> CorpusInfo { CorpusInfo(name: "x", path: path, bytes: 0, tokens: 0) }

    func testOnlyNewlinesAndOneCharacterVocabularyAreRefusedBeforeTraining() throws {
        let dir = NSTemporaryDirectory() + "charrnn-hostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (text, shown) in [(String(repeating: "\n", count: 5000), "\"\\n\""), (String(repeating: "a", count: 5000), "\"a\"")] {
            let c = try Corpus(bytes: Array(text.utf8), name: "x.txt")
            XCTAssertEqual(c.vocabulary.count, 1)
            var t = TrainConfig(); t.seq = 10; t.batch = 4
            XCTAssertThrowsError(try Trainer(corpus: c, corpusInfo: info("x.txt"), model: ModelConfig(hidden: 4, vocabSize: 1),
                                             train: t, runDir: dir)) { e in
                XCTAssertEqual("\(e)", "x.txt: the corpus has only one distinct character (\(shown)); there is nothing to learn")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir), "no run directory for a refused corpus")
        }
    }

    /// A UTF-16 or UTF-32 file (a byte-order mark first) is named as such, with the command that converts it.
    func testWideEncodingsAreNamedWithTheConversion() {
        let text = "To be, or not to be: that is the question.\n"
        let cases: [(String, [UInt8])] = [
            ("UTF-16LE", [0xFF, 0xFE] + text.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }),
            ("UTF-16BE", [0xFE, 0xFF] + text.utf16.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }),
            ("UTF-32LE", [0xFF, 0xFE, 0, 0] + text.unicodeScalars.flatMap { [UInt8($0.value & 0xFF), 0, 0, 0] }),
        ]
        for (name, bytes) in cases {
            let e = corpusError(bytes) ?? ""
            XCTAssertTrue(e.contains("is \(name)") && e.contains("iconv -f \(name) -t UTF-8"), e)
        }
    }
}
