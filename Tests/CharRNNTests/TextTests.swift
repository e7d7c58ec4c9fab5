// TextTests.swift — UTF8Decoder, Vocabulary and Corpus.
//
// Fixtures: /work/shared/data/{mixed-small,tang-poems}.txt, found as ../shared/data/<name> relative to
// the package root (the directory holding Package.swift above this file); tests that need them are
// skipped when absent. Everything else uses byte arrays built here. Token text is always compared by
// UTF-8 bytes, never with String ==, which treats canonically equivalent strings as equal.

import Foundation
import XCTest
@testable import CharRNN

// MARK: - Fixtures

private enum TextFixture {
    /// The directory holding Package.swift, found by walking up from this file.
    static func packageRoot(_ file: String = #filePath) -> URL? {
        var dir = URL(fileURLWithPath: file).deletingLastPathComponent()
        while dir.path != "/" {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }

    /// Path of ../shared/data/`name`, or XCTSkip.
    static func path(_ name: String) throws -> String {
        guard let root = packageRoot() else { throw XCTSkip("no Package.swift above \(#filePath)") }
        let url = root.appendingPathComponent("../shared/data/\(name)").standardizedFileURL
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw XCTSkip("corpus \(url.path) not found; skipping")
        }
        return url.path
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: try path(name))))
    }
}

private extension Corpus {
    /// All ids.
    var allIDs: [Int32] { (0..<count).map { token(at: $0) } }
    /// The UTF-8 of all tokens, concatenated.
    var allTokenBytes: [UInt8] {
        let utf8 = vocabulary.tokens.map { Array($0.utf8) }
        return allIDs.flatMap { utf8[Int($0)] }
    }
}

private func textBytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Loads one file as `charrnn train` does, without the token cache.
private func loadFile(_ path: String, unit: TokenUnit = .scalar, normalize: Normalization = .none) throws -> Corpus {
    var options = LoadOptions()
    options.unit = unit
    options.normalize = normalize
    return try CorpusLoader.load(paths: [path], options: options, cacheDirectory: nil).0
}

/// Equality of long sequences, reporting the first difference instead of dumping both.
private func assertSameElements<T: Equatable>(_ a: [T], _ b: [T], _ message: String = "",
                                      file: StaticString = #filePath, line: UInt = #line) {
    guard a != b else { return }
    let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
    XCTFail("differ at index \(i) (counts \(a.count), \(b.count)) \(message)", file: file, line: line)
}

private func corpusError(_ bytes: [UInt8], unit: TokenUnit = .scalar, normalize: Normalization = .none,
                         file: StaticString = #filePath, line: UInt = #line) -> TextError? {
    do {
        _ = try Corpus(bytes: bytes, name: "data/x.txt", unit: unit, normalize: normalize)
        XCTFail("expected an error", file: file, line: line)
        return nil
    } catch let error as TextError {
        return error
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
        return nil
    }
}

// MARK: - mixed-small.txt

final class MixedSmallCorpusTests: XCTestCase {
    func testFileFacts() throws {
        let bytes = try TextFixture.bytes("mixed-small.txt")
        XCTAssertEqual(bytes.count, 27_584)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertEqual(text.unicodeScalars.count, 18_701)
        XCTAssertEqual(text.count, 17_769)
    }

    func testScalarTokensAndVocabulary() throws {
        let corpus = try loadFile(TextFixture.path("mixed-small.txt"), unit: .scalar)
        XCTAssertEqual(corpus.name, "mixed-small")
        XCTAssertEqual(corpus.count, 18_701)
        XCTAssertEqual(corpus.vocabulary.count, 1_450)
        XCTAssertEqual(corpus.vocabulary.unit, .scalar)
        XCTAssertEqual(corpus.bytesPerToken, 2)
        XCTAssertTrue(corpus.vocabulary.isSortedInCodePointOrder)
        XCTAssertTrue(corpus.vocabulary.tokens.allSatisfy { $0.unicodeScalars.count == 1 })
    }

    func testGraphemeTokensAndVocabulary() throws {
        let bytes = try TextFixture.bytes("mixed-small.txt")
        let corpus = try Corpus(bytes: bytes, name: "mixed-small.txt", unit: .grapheme)
        XCTAssertEqual(corpus.count, 17_769)
        // Swift's Set<Character> merges canonically equivalent clusters ("é" and "e" + U+0301):
        // 1,427 classes. The vocabulary keeps every exact spelling, so it is larger.
        XCTAssertEqual(Set(corpus.vocabulary.tokens.map { Character($0) }).count, 1_427)
        let text = String(decoding: bytes, as: UTF8.self)
        let exactClusters = Set(text.map { Array(String($0).utf8) })
        XCTAssertEqual(corpus.vocabulary.count, exactClusters.count)
        XCTAssertEqual(corpus.vocabulary.count, 1_436)
        XCTAssertTrue(corpus.vocabulary.isSortedInCodePointOrder)
        // Same clusters as Swift, in the same order.
        assertSameElements(corpus.allIDs.map { Array(corpus.vocabulary.tokens[Int($0)].utf8) }, text.map { Array(String($0).utf8) })
    }

    func testCRLFIsPreserved() throws {
        let path = try TextFixture.path("mixed-small.txt")
        let scalars = try loadFile(path, unit: .scalar)
        let cr = try XCTUnwrap(scalars.vocabulary.id(of: "\r"))
        let lf = try XCTUnwrap(scalars.vocabulary.id(of: "\n"))
        XCTAssertEqual(scalars.allIDs.filter { $0 == Int32(cr) }.count, 845)
        XCTAssertEqual(scalars.allIDs.filter { $0 == Int32(lf) }.count, 845)

        let clusters = try loadFile(path, unit: .grapheme)
        let crlf = try XCTUnwrap(clusters.vocabulary.id(of: "\r\n"))
        XCTAssertNil(clusters.vocabulary.id(of: "\r"))
        XCTAssertNil(clusters.vocabulary.id(of: "\n"))
        XCTAssertEqual(clusters.allIDs.filter { $0 == Int32(crlf) }.count, 845)
    }

    func testChineseCharactersAreOneTokenEach() throws {
        let path = try TextFixture.path("mixed-small.txt")
        for unit in TokenUnit.allCases {
            let corpus = try loadFile(path, unit: unit)
            let (ids, unknown) = corpus.vocabulary.encode("孟浩然", normalize: .none)
            XCTAssertEqual(ids.count, 3, "\(unit)")
            XCTAssertEqual(unknown, [])
            XCTAssertEqual(ids.map { corpus.vocabulary.tokens[Int($0)] }, ["孟", "浩", "然"])
            XCTAssertNotNil(corpus.vocabulary.id(of: "𠀀"), "astral CJK Extension B is one token")
        }
    }

    func testDecodedTokensReproduceTheFileExactly() throws {
        let bytes = try TextFixture.bytes("mixed-small.txt")
        for unit in TokenUnit.allCases {
            let corpus = try Corpus(bytes: bytes, name: "mixed-small.txt", unit: unit)
            assertSameElements(corpus.allTokenBytes, bytes, "\(unit)")
        }
    }

    func testNFCChangesOnlyTheNonNFCLines() throws {
        let bytes = try TextFixture.bytes("mixed-small.txt")
        let text = String(decoding: bytes, as: UTF8.self)
        let nfcText = text.precomposedStringWithCanonicalMapping          // Foundation, independent of utf8proc

        let raw = try Corpus(bytes: bytes, name: "m", unit: .scalar)
        let nfc = try Corpus(bytes: bytes, name: "m", unit: .scalar, normalize: .nfc)
        XCTAssertEqual(nfc.count, nfcText.unicodeScalars.count)
        XCTAssertLessThan(nfc.count, raw.count)
        assertSameElements(nfc.allTokenBytes, textBytes(nfcText))

        // Line by line: exactly the 8 deliberately non-NFC lines change length.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).dropLast().map(String.init)
        XCTAssertEqual(lines.count, 845)                                // every line ends in CR LF, the last too
        let changed = lines.filter {
            raw.vocabulary.encode($0, normalize: .nfc).ids.count != raw.vocabulary.encode($0, normalize: .none).ids.count
        }
        XCTAssertEqual(changed.count, 8)

        let clusters = try Corpus(bytes: bytes, name: "m", unit: .grapheme, normalize: .nfc)
        assertSameElements(clusters.allTokenBytes, textBytes(nfcText))
        XCTAssertEqual(clusters.vocabulary.count, 1_427)                // canonical duplicates merged
    }

    func testNFCShortcutsMatchPlainUtf8proc() throws {
        let bytes = try TextFixture.bytes("mixed-small.txt")
        for unit in TokenUnit.allCases {
            let reference = try nfcTokens(bytes, unit: unit, quickCheck: false, chunkBytes: 1 << 30)
            assertSameElements(try nfcTokens(bytes, unit: unit, quickCheck: true, chunkBytes: 1 << 20), reference, "\(unit)")
            assertSameElements(try nfcTokens(bytes, unit: unit, quickCheck: true, chunkBytes: 5), reference, "\(unit)")
            assertSameElements(try nfcTokens(bytes, unit: unit, quickCheck: false, chunkBytes: 7), reference, "\(unit)")
        }
    }
}

// MARK: - tang-poems.txt

final class TangPoemsCorpusTests: XCTestCase {
    func testCounts() throws {
        let corpus = try loadFile(TextFixture.path("tang-poems.txt"))
        XCTAssertEqual(corpus.name, "tang-poems")
        XCTAssertEqual(corpus.count, 1_430_139)
        XCTAssertEqual(corpus.vocabulary.count, 6_783)
    }
}

// MARK: - Decoding and errors

final class UTF8DecoderTests: XCTestCase {
    func testScalarsAreTokensAndVocabularyIsInCodePointOrder() throws {
        let text = "b\u{E9}a\u{10000}\u{FFFF}e\u{301}中a"
        let corpus = try Corpus(bytes: textBytes(text), name: "t.txt")
        XCTAssertEqual(corpus.name, "t")
        XCTAssertEqual(corpus.vocabulary.tokens.map { $0.unicodeScalars.first!.value },
                       [0x61, 0x62, 0x65, 0xE9, 0x301, 0x4E2D, 0xFFFF, 0x10000])
        XCTAssertEqual(corpus.count, 9)
        XCTAssertEqual(corpus.allIDs, [1, 3, 0, 7, 6, 2, 4, 5, 0])
        XCTAssertEqual(corpus.allTokenBytes, textBytes(text))
    }

    func testGraphemeClustersMatchSwiftAndSortByScalars() throws {
        // Combining marks, ZWJ sequence, flags (RI pairs), keycap, CR LF, conjoining jamo, lone CR,
        // Prepend (U+0600 ARABIC NUMBER SIGN joins the digit after it, GB9b) and a Hangul syllable + T.
        let text = "e\u{301}fé👨‍👩‍👧‍👦🇯🇵🇫🇷🇩1️⃣\r\n\u{1100}\u{1161}\u{11A8}x\u{300}\u{316}\r\r\n\n\u{600}12\u{600}中\u{AC00}\u{11A8}"
        let corpus = try Corpus(bytes: textBytes(text), name: "t", unit: .grapheme)
        XCTAssertEqual(corpus.count, text.count)
        XCTAssertEqual(corpus.allIDs.map { Array(corpus.vocabulary.tokens[Int($0)].utf8) },
                       text.map { Array(String($0).utf8) })
        let tokens = corpus.vocabulary.tokens
        XCTAssertTrue(corpus.vocabulary.isSortedInCodePointOrder)
        // "e" + U+0301 < "f" < "é" (U+00E9) by scalars, although Swift calls the first and last equal.
        let decomposed = try XCTUnwrap(corpus.vocabulary.id(of: "e\u{301}"))
        let precomposed = try XCTUnwrap(corpus.vocabulary.id(of: "\u{E9}"))
        let f = try XCTUnwrap(corpus.vocabulary.id(of: "f"))
        XCTAssertLessThan(decomposed, f)
        XCTAssertLessThan(f, precomposed)
        XCTAssertTrue(tokens.contains { $0.utf8.elementsEqual("👨‍👩‍👧‍👦".utf8) })
    }

    func testLongClustersAndEmptyLookups() throws {
        let long = "a\u{300}\u{301}\u{302}\u{303}\u{304}"                   // 11 bytes: the long-key path
        let corpus = try Corpus(bytes: textBytes(long + "b" + long), name: "t", unit: .grapheme)
        XCTAssertEqual(corpus.count, 3)
        XCTAssertEqual(corpus.vocabulary.count, 2)
        XCTAssertEqual(corpus.vocabulary.id(of: long), 0)
        XCTAssertNil(corpus.vocabulary.id(of: ""))
        XCTAssertNil(corpus.vocabulary.id(of: "a\u{300}"))
    }

    func testInvalidAtStart() {
        let error = corpusError([0xC3, 0x28, 0x61])
        XCTAssertEqual(error, .invalidUTF8(file: "data/x.txt", line: 1, column: 1, byteOffset: 0, bytes: [0xC3]))
        XCTAssertEqual(error?.description, "data/x.txt:1:1 (byte 0): invalid UTF-8 sequence 0xC3")
    }

    func testInvalidInTheMiddle() {
        // Line 2 is "cd中e" then 0xFF: column 5 in scalars, byte 3 + 2 + 3 + 1 = 9.
        let bytes = textBytes("ab\ncd中e") + [0xFF] + textBytes("x\n")
        for unit in TokenUnit.allCases {
            for normalize in Normalization.allCases {
                XCTAssertEqual(corpusError(bytes, unit: unit, normalize: normalize),
                               .invalidUTF8(file: "data/x.txt", line: 2, column: 5, byteOffset: 9, bytes: [0xFF]),
                               "\(unit) \(normalize)")
            }
        }
        XCTAssertEqual(corpusError(bytes)?.description, "data/x.txt:2:5 (byte 9): invalid UTF-8 sequence 0xFF")
    }

    func testTruncatedThreeByteSequenceAtEOF() {
        let bytes = textBytes("abc\r\n") + [0xE4, 0xB8]
        XCTAssertEqual(corpusError(bytes), .invalidUTF8(file: "data/x.txt", line: 2, column: 1, byteOffset: 5, bytes: [0xE4, 0xB8]))
        XCTAssertEqual(corpusError(bytes, unit: .grapheme, normalize: .nfc),
                       .invalidUTF8(file: "data/x.txt", line: 2, column: 1, byteOffset: 5, bytes: [0xE4, 0xB8]))
    }

    func testOverlongEncodingIsRejected() {
        let bytes = textBytes("é/") + [0xC0, 0xAF] + textBytes("/")                  // overlong "/"
        XCTAssertEqual(corpusError(bytes), .invalidUTF8(file: "data/x.txt", line: 1, column: 3, byteOffset: 3, bytes: [0xC0, 0xAF]))
        XCTAssertEqual(corpusError([0xE0, 0x80, 0xAF]),                        // 3-byte overlong
                       .invalidUTF8(file: "data/x.txt", line: 1, column: 1, byteOffset: 0, bytes: [0xE0, 0x80, 0xAF]))
    }

    func testEncodedSurrogateIsRejected() {
        let bytes = textBytes("\n\nok ") + [0xED, 0xA0, 0x80]
        let error = corpusError(bytes, unit: .grapheme)
        XCTAssertEqual(error, .invalidUTF8(file: "data/x.txt", line: 3, column: 4, byteOffset: 5, bytes: [0xED, 0xA0, 0x80]))
        XCTAssertEqual(error?.description, "data/x.txt:3:4 (byte 5): invalid UTF-8 sequence 0xED 0xA0 0x80")
    }

    func testOtherInvalidForms() {
        XCTAssertEqual(corpusError([0x61, 0x80]),                              // stray continuation byte
                       .invalidUTF8(file: "data/x.txt", line: 1, column: 2, byteOffset: 1, bytes: [0x80]))
        XCTAssertEqual(corpusError([0xF4, 0x90, 0x80, 0x80]),                  // above U+10FFFF
                       .invalidUTF8(file: "data/x.txt", line: 1, column: 1, byteOffset: 0, bytes: [0xF4, 0x90, 0x80, 0x80]))
        XCTAssertEqual(corpusError([0xE4, 0x28, 0x80]),                        // continuation missing
                       .invalidUTF8(file: "data/x.txt", line: 1, column: 1, byteOffset: 0, bytes: [0xE4]))
    }

    func testByteOffsetCountsTheBOMButColumnDoesNot() {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + textBytes("ab") + [0xC3]
        XCTAssertEqual(corpusError(bytes), .invalidUTF8(file: "data/x.txt", line: 1, column: 3, byteOffset: 5, bytes: [0xC3]))
    }

    func testLeadingBOMIsSkipped() throws {
        let corpus = try Corpus(bytes: [0xEF, 0xBB, 0xBF] + textBytes("ab\u{FEFF}"), name: "t")
        XCTAssertEqual(corpus.count, 3)                                        // a, b and the inner U+FEFF
        XCTAssertEqual(corpus.allTokenBytes, textBytes("ab\u{FEFF}"))
        let plain = try Corpus(bytes: [0xEF, 0xBB, 0xBF] + textBytes("ab"), name: "t", unit: .grapheme, normalize: .nfc)
        XCTAssertEqual(plain.vocabulary.tokens, ["a", "b"])
    }

    func testEmptyAndBOMOnlyCorporaAreErrors() {
        for bytes in [[], [0xEF, 0xBB, 0xBF]] as [[UInt8]] {
            for unit in TokenUnit.allCases {
                for normalize in Normalization.allCases {
                    XCTAssertEqual(corpusError(bytes, unit: unit, normalize: normalize), .empty(file: "data/x.txt"))
                }
            }
        }
        XCTAssertEqual(TextError.empty(file: "data/x.txt").description, "data/x.txt: corpus is empty")
    }

    func testUnreadableFiles() throws {
        let missing = "/nonexistent-charrnn-dir/x.txt"
        XCTAssertThrowsError(try loadFile(missing)) { error in
            XCTAssertEqual(error as? TextError, .cannotRead(file: missing, reason: "No such file or directory"))
            XCTAssertEqual("\(error)", "cannot read /nonexistent-charrnn-dir/x.txt: No such file or directory")
        }
        let dir = NSTemporaryDirectory() + "charrnn-notext-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try loadFile(dir)) { error in
            XCTAssertEqual(error as? TextError, .cannotRead(file: dir, reason: "directory has no .txt files"))
        }
        // Reading a directory as one file (eval, --init-from) names it.
        XCTAssertThrowsError(try Vocabulary(unit: .scalar, tokens: ["a"]).encodeFile(path: dir, normalize: .none)) { error in
            XCTAssertEqual(error as? TextError, .cannotRead(file: dir, reason: "Is a directory"))
        }
    }

    func testLoadFromFileEqualsInMemoryAndEmptyFileIsAnError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-text-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("small.corpus.txt")
        let bytes = textBytes("hello 世界\r\n")
        try Data(bytes).write(to: file)
        let loaded = try loadFile(file.path, unit: .grapheme)
        XCTAssertEqual(loaded.name, "small.corpus")
        XCTAssertEqual(loaded.vocabulary, try Corpus(bytes: bytes, name: "x", unit: .grapheme).vocabulary)
        XCTAssertEqual(loaded.allTokenBytes, bytes)

        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        XCTAssertThrowsError(try loadFile(empty.path)) { error in
            XCTAssertEqual(error as? TextError, .empty(file: empty.path))
        }
    }

    func testMoreThan65536DistinctTokensWidenIds() throws {
        // 70,000 distinct astral scalars, written in descending order, then the first one again.
        let scalars = (0..<70_000).reversed().map { UInt32(0x10000 + $0) }
        var text = String.UnicodeScalarView()
        for s in scalars { text.append(Unicode.Scalar(s)!) }
        text.append(Unicode.Scalar(scalars[0])!)
        let corpus = try Corpus(bytes: Array(String(text).utf8), name: "wide")
        XCTAssertEqual(corpus.bytesPerToken, 4)
        XCTAssertEqual(corpus.vocabulary.count, 70_000)
        XCTAssertEqual(corpus.count, 70_001)
        XCTAssertEqual(corpus.token(at: 0), 69_999)
        XCTAssertEqual(corpus.token(at: 69_999), 0)
        XCTAssertEqual(corpus.token(at: 70_000), 69_999)
        XCTAssertTrue(corpus.vocabulary.isSortedInCodePointOrder)
        var copied = [Int32](repeating: -1, count: 3)
        copied.withUnsafeMutableBufferPointer { corpus.copyTokens(from: 69_998, count: 3, into: $0.baseAddress!) }
        XCTAssertEqual(copied, [1, 0, 69_999])
    }

    func testNFCPiecesEqualWholeTextNFC() throws {
        // Marks after spaces and newlines, reordering (U+0316 ccc 220 before U+0301 ccc 230), composing
        // jamo, CR LF, singletons (Å U+212B), kana + dakuten, ZWJ emoji, all at every chunk size 1...24.
        let text = " \u{301}x\n\u{301}\u{316}a\u{301}\u{316}bb\r\n\u{1100}\u{1161}\u{11A8}cc\u{212B}dd\u{304B}\u{3099}"
            + "ee👩\u{200D}💻ff\r\r\n\ne\u{301}\u{302}gg\u{AC00}\u{11A8}hh\u{F900}."
        // NFC of `text` per Python's unicodedata (Foundation on Linux leaves U+AC00 U+11A8 uncomposed).
        let nfc = " \u{301}x\n\u{316}\u{301}\u{E1}\u{316}bb\r\n\u{AC01}cc\u{C5}dd\u{304C}"
            + "ee👩\u{200D}💻ff\r\r\n\n\u{E9}\u{302}gg\u{AC01}hh\u{8C48}."
        let bytes = textBytes(text + text)
        for unit in TokenUnit.allCases {
            let reference = try nfcTokens(bytes, unit: unit, quickCheck: false, chunkBytes: 1 << 30)
            assertSameElements(Array(reference.joined()), textBytes(nfc + nfc))
            for chunk in 1...24 {
                for quick in [false, true] {
                    assertSameElements(try nfcTokens(bytes, unit: unit, quickCheck: quick, chunkBytes: chunk), reference,
                               "\(unit) chunk \(chunk) quick \(quick)")
                }
            }
        }
    }

    func testNFCQuickCheckRangesAreReallyStable() throws {
        // Every scalar `isNFCStable` accepts, in order, twice: utf8proc must leave the text unchanged.
        var text = String.UnicodeScalarView()
        for value in UInt32(0)...0x2A6DF where UTF8Decoder.isNFCStable(value) {
            if let s = Unicode.Scalar(value) { text.append(s) }
        }
        let once = Array(String(text).utf8)
        let bytes = once + once
        let reference = try nfcTokens(bytes, unit: .scalar, quickCheck: false, chunkBytes: 1 << 30)
        assertSameElements(Array(reference.joined()), bytes)
        // And the decomposed, reorderable and composing cases do go through utf8proc.
        for s in ["e\u{301}", "a\u{316}\u{301}", "\u{1100}\u{1161}", "\u{212B}", "\u{304B}\u{3099}", "\u{0915}\u{093C}"] {
            XCTAssertFalse(s.unicodeScalars.allSatisfy { UTF8Decoder.isNFCStable($0.value) }, s)
        }
    }

    func testNFCOfAHundredThousandCombiningMarksIsBounded() throws {
        // alternating ccc 230 and 220: canonical reordering has to move every other mark
        var text = "a"
        for i in 0..<100_000 { text.unicodeScalars.append(i % 2 == 0 ? "\u{301}" : "\u{323}") }
        text += "\nb\n"
        let t0 = Date()
        let c = try Corpus(bytes: Array(text.utf8), name: "marks.txt", unit: .scalar, normalize: .nfc)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 10, "NFC work is not bounded per piece")
        XCTAssertGreaterThan(c.count, 90_000)
        // ordinary text is normalized as before
        let e = try Corpus(bytes: Array("e\u{301}\u{323}x\n".utf8), name: "e.txt", unit: .scalar, normalize: .nfc)
        XCTAssertEqual(e.count, 4, "ẹ́ composes to U+1EB9 U+0301")
    }

    func testAnInvalidSequenceIsReportedWithoutTheValidByteAfterIt() {
        XCTAssertThrowsError(try Corpus(bytes: Array("ab".utf8) + [0xE4, 0xB8, 0x41], name: "x.txt")) {
            XCTAssertEqual("\($0)", "x.txt:1:3 (byte 2): invalid UTF-8 sequence 0xE4 0xB8")
        }
    }
}

// MARK: - Vocabulary

final class VocabularyTests: XCTestCase {
    func testEncodeReportsUnknownTokensOnceInOrder() throws {
        let vocabulary = try Corpus(bytes: textBytes("abc 中"), name: "v").vocabulary
        XCTAssertEqual(vocabulary.tokens, [" ", "a", "b", "c", "中"])
        let (ids, unknown) = vocabulary.encode("ab x中y文xz a", normalize: .none)
        XCTAssertEqual(ids, [1, 2, 0, 4, 0, 1])
        XCTAssertEqual(unknown, ["x", "y", "文", "z"])
    }

    func testEncodeUsesTheUnitAndNormalization() throws {
        let scalars = try Corpus(bytes: textBytes("\u{E9}a"), name: "v").vocabulary
        XCTAssertEqual(scalars.encode("e\u{301}a", normalize: .nfc).ids, [1, 0])
        let raw = scalars.encode("e\u{301}a", normalize: .none)
        XCTAssertEqual(raw.ids, [0])
        XCTAssertEqual(raw.unknown.map(textBytes), [textBytes("e"), textBytes("\u{301}")])

        let clusters = try Corpus(bytes: textBytes("ab\r\n"), name: "v", unit: .grapheme).vocabulary
        let result = clusters.encode("a\r\nb\rx\u{301}\u{302}\rx\u{301}\u{302}", normalize: .none)
        XCTAssertEqual(result.ids, [1, 0, 2])
        XCTAssertEqual(result.unknown.map(textBytes), [textBytes("\r"), textBytes("x\u{301}\u{302}")])
    }

    func testEncodeSkipsALeadingBOMLikeTheLoader() throws {
        let vocabulary = try Corpus(bytes: textBytes("ab"), name: "v").vocabulary
        XCTAssertEqual(vocabulary.encode("\u{FEFF}ab", normalize: .none).ids, [0, 1])
        XCTAssertEqual(vocabulary.encode("a\u{FEFF}", normalize: .none).unknown, ["\u{FEFF}"])
    }

    func testReloadedVocabularyIsEqualAndLooksUpTheSame() throws {
        let text = "Hé\u{301}llo, 世界 🇯🇵 👩‍💻\r\n"
        for unit in TokenUnit.allCases {
            let built = try Corpus(bytes: textBytes(text), name: "v", unit: unit).vocabulary
            let reloaded = Vocabulary(unit: unit, tokens: built.tokens)
            XCTAssertEqual(reloaded, built)
            for (i, token) in built.tokens.enumerated() { XCTAssertEqual(reloaded.id(of: token), i) }
            XCTAssertEqual(reloaded.encode(text, normalize: .none).ids, built.encode(text, normalize: .none).ids)
            XCTAssertEqual(reloaded.encode(text, normalize: .none).unknown, [])
        }
    }

    func testEqualityIsByExactBytesAndUnit() {
        let a = Vocabulary(unit: .grapheme, tokens: ["e\u{301}"])
        let b = Vocabulary(unit: .grapheme, tokens: ["\u{E9}"])
        XCTAssertEqual(a.tokens, b.tokens)                                     // String == says equal…
        XCTAssertNotEqual(a, b)                                                // …the vocabulary does not
        XCTAssertNotEqual(a, Vocabulary(unit: .scalar, tokens: ["e\u{301}"]))
        XCTAssertEqual(a.id(of: "e\u{301}"), 0)
        XCTAssertNil(a.id(of: "\u{E9}"))
        XCTAssertFalse(Vocabulary(unit: .scalar, tokens: ["b", "a"]).isSortedInCodePointOrder)
    }
}

// MARK: - Helpers

/// Every token produced from `bytes` with NFC, as UTF-8, via the internal pipeline.
private func nfcTokens(_ bytes: [UInt8], unit: TokenUnit, quickCheck: Bool, chunkBytes: Int) throws -> [[UInt8]] {
    struct Collect: TokenSink {
        var tokens: [[UInt8]] = []
        mutating func willScan(byteCount: Int) {}
        mutating func scalar(_ value: UInt32, bytes: UnsafePointer<UInt8>, length: Int) {
            tokens.append(Array(UnsafeBufferPointer(start: bytes, count: length)))
        }
        mutating func cluster(bytes: UnsafePointer<UInt8>, length: Int) {
            tokens.append(Array(UnsafeBufferPointer(start: bytes, count: length)))
        }
    }
    var sink = Collect()
    try bytes.withUnsafeBufferPointer { buf in
        try UTF8Decoder.tokenize(buf, unit: unit, normalize: .nfc, into: &sink, quickCheck: quickCheck, chunkBytes: chunkBytes)
    }
    return sink.tokens
}
