// Tests/CharRNNTests/SafeTensorsTests.swift — golden bytes, the nine rejection rules (each with its
// own hostile file, taken from the reference tensor.rs tests where one exists), header-parser
// strictness, round trips, and a mutation fuzz smoke test.

import Foundation
import XCTest
@testable import CharRNN

final class SafeTensorsTests: XCTestCase {

    // MARK: - Helpers

    /// u64 little-endian.
    private func le64(_ n: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
    }

    /// A file with N = header byte count (no padding) followed by `data`.
    private func file(_ header: String, data: [UInt8] = []) -> [UInt8] {
        let h = Array(header.utf8)
        return le64(UInt64(h.count)) + h + data
    }

    /// A file with an explicit (possibly lying) N.
    private func file(n: UInt64, _ rest: [UInt8]) -> [UInt8] {
        le64(n) + rest
    }

    private func kind(of bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> SafeTensorsError.Kind? {
        do {
            _ = try SafeTensorsFile(bytes: bytes, path: "t.safetensors")
            XCTFail("hostile input was accepted", file: file, line: line)
            return nil
        } catch let e as SafeTensorsError {
            XCTAssertEqual(e.file, "t.safetensors", file: file, line: line)
            XCTAssertFalse(e.description.contains("\n"), "error must be one line", file: file, line: line)
            return e.kind
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
            return nil
        }
    }

    private func assertRejected(_ bytes: [UInt8], _ expected: SafeTensorsError.Kind,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(kind(of: bytes, file: file, line: line), expected, file: file, line: line)
    }

    private func assertDeserializationError(_ header: String, data: [UInt8] = [],
                                            file: StaticString = #filePath, line: UInt = #line) {
        let k = kind(of: self.file(header, data: data), file: file, line: line)
        guard case .invalidHeaderDeserialization = k else {
            XCTFail("expected invalidHeaderDeserialization for \(header.prefix(80)), got \(String(describing: k))",
                    file: file, line: line)
            return
        }
    }

    private func load(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> SafeTensorsFile? {
        do {
            return try SafeTensorsFile(bytes: bytes, path: "t.safetensors")
        } catch {
            XCTFail("valid input rejected: \(error)", file: file, line: line)
            return nil
        }
    }

    /// 0.0 … 5.0 as little-endian F32, written out by hand.
    private let zeroToFiveBytes: [UInt8] = [
        0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
    ]

    private let i32Test = #"{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}"#

    // MARK: - Golden bytes (reference test_serialization, test_serialization_forced_alignement, test_empty)

    func testGoldenAttnDot0NoPadding() {
        var w = SafeTensorsWriter()
        w.add("attn.0", shape: [1, 2, 3], floats: [0, 1, 2, 3, 4, 5])
        let json = Array(#"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#.utf8)
        XCTAssertEqual(json.count, 64)
        let expected: [UInt8] = [64, 0, 0, 0, 0, 0, 0, 0] + json + zeroToFiveBytes
        XCTAssertEqual(w.serialize(), expected)
        let f = load(expected)
        XCTAssertEqual(try f?.floats("attn.0", shape: [1, 2, 3]), [0, 1, 2, 3, 4, 5])
    }

    func testGoldenForcedAlignmentPadsWithSevenSpaces() {
        var w = SafeTensorsWriter()
        w.add("attn0", shape: [1, 1, 2, 3], floats: [0, 1, 2, 3, 4, 5])
        let json = Array(#"{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}"#.utf8)
        XCTAssertEqual(json.count, 65)
        let expected: [UInt8] = [72, 0, 0, 0, 0, 0, 0, 0] + json + [32, 32, 32, 32, 32, 32, 32] + zeroToFiveBytes
        XCTAssertEqual(w.serialize(), expected)
        XCTAssertEqual(try load(expected)?.floats("attn0"), [0, 1, 2, 3, 4, 5])
    }

    func testGoldenEmptyAndMetadataOnly() {
        XCTAssertEqual(SafeTensorsWriter().serialize(), [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32])
        var w = SafeTensorsWriter()
        w.metadata = ["framework": "pt"]
        let json = Array(#"{"__metadata__":{"framework":"pt"}}"#.utf8)
        let expected: [UInt8] = [40, 0, 0, 0, 0, 0, 0, 0] + json + [32, 32, 32, 32, 32]
        XCTAssertEqual(w.serialize(), expected)
        XCTAssertEqual(load(expected)?.metadata, ["framework": "pt"])
    }

    func testWriterOrderIsAlignmentThenNameWithMetadataFirst() {
        var w = SafeTensorsWriter()
        w.add("b", shape: [2], floats: [1, 2])
        w.add("a", shape: [1], floats: [3])
        w.add("step", shape: [], int64s: [7])
        w.add("rng", shape: [2], uint64s: [1, 2])
        w.metadata = ["z": "1", "a": "2"]
        let bytes = w.serialize()
        let n = Int(bytes[0]) | Int(bytes[1]) << 8
        XCTAssertEqual(n % 8, 0)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        let expectedJSON = #"{"__metadata__":{"a":"2","z":"1"},"#
            + #""rng":{"dtype":"U64","shape":[2],"data_offsets":[0,16]},"#
            + #""step":{"dtype":"I64","shape":[],"data_offsets":[16,24]},"#
            + #""a":{"dtype":"F32","shape":[1],"data_offsets":[24,28]},"#
            + #""b":{"dtype":"F32","shape":[2],"data_offsets":[28,36]}}"#
        XCTAssertEqual(header.trimmingCharacters(in: .whitespaces), expectedJSON)
        XCTAssertEqual(bytes.count, 8 + n + 36)
        let f = load(bytes)
        XCTAssertEqual(f?.names, ["a", "b", "rng", "step"])
        XCTAssertEqual(try f?.int64s("step", shape: []), [7])
        XCTAssertEqual(try f?.uint64s("rng"), [1, 2])
        XCTAssertEqual(f?.tensors["a"], TensorInfo(dtype: .F32, shape: [1], begin: 24, end: 28))
    }

    // MARK: - Rule 1: HeaderTooSmall

    func testRule1HeaderTooSmall() {
        assertRejected([], .headerTooSmall)                       // reference test_header_too_small
        assertRejected([1, 0, 0, 0, 0, 0, 0], .headerTooSmall)
    }

    // MARK: - Rule 2: HeaderTooLarge

    func testRule2HeaderTooLarge() {
        // reference test_header_too_large: "<\x00\x00\x00\x00\xff\xff\xff" + a valid-looking header.
        let ref: [UInt8] = [0x3C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF] + Array(i32Test.utf8) + [UInt8](repeating: 0, count: 16)
        assertRejected(ref, .headerTooLarge(0xFFFF_FF00_0000_003C))
        assertRejected([UInt8](repeating: 0xFF, count: 8), .headerTooLarge(UInt64.max))
        assertRejected(file(n: 100_000_001, Array("{}".utf8)), .headerTooLarge(100_000_001))
        // Exactly the limit is not "too large"; it then fails rule 3 on this short file.
        assertRejected(file(n: 100_000_000, Array("{}".utf8)), .invalidHeaderLength)
    }

    func testErrorDescriptionFormat() {
        let e = SafeTensorsError(file: "checkpoints/run/best.safetensors", kind: .headerTooLarge(UInt64.max))
        XCTAssertEqual(e.description,
                       "checkpoints/run/best.safetensors: not a safetensors checkpoint: its first 8 bytes give a header length of 18446744073709551615, over the 100000000-byte limit (HeaderTooLarge)")
        let hostile = SafeTensorsError(file: "x", kind: .notFound("a\nb\"c"))
        XCTAssertEqual(hostile.description, #"x: no tensor named "a\nb\"c" (TensorNotFound)"#)
    }

    // MARK: - Rule 3: InvalidHeaderLength

    func testRule3InvalidHeaderLength() {
        assertRejected([0x3C, 0, 0, 0, 0, 0, 0, 0], .invalidHeaderLength)   // reference test_invalid_header_length
        assertRejected(file(n: 10, Array("{}       ".utf8)), .invalidHeaderLength)  // one byte short
    }

    // MARK: - Rule 4: InvalidHeader (UTF-8)

    func testRule4InvalidHeaderNotUTF8() {
        assertRejected([1, 0, 0, 0, 0, 0, 0, 0, 0xFF], .invalidHeader)     // reference test_invalid_header_non_utf8
        assertRejected(file(n: 4, [0x7B, 0xC0, 0xAF, 0x7D]), .invalidHeader)          // overlong '/'
        assertRejected(file(n: 5, [0x7B, 0xED, 0xA0, 0x80, 0x7D]), .invalidHeader)    // UTF-8-encoded surrogate
        assertRejected(file(n: 3, [0x7B, 0xE2, 0x82]), .invalidHeader)                // truncated sequence
        // Invalid UTF-8 inside a JSON string is still rule 4, not 5.
        assertRejected(file(n: 8, Array(#"{"a":""#.utf8) + [0x80, 0x22, 0x7D]), .invalidHeader)
    }

    // MARK: - Rule 5: InvalidHeaderDeserialization

    func testRule5NotJSON() {
        let k = kind(of: [1, 0, 0, 0, 0, 0, 0, 0, 0x7B])                  // reference test_invalid_header_not_json: "{"
        guard case .invalidHeaderDeserialization(let detail) = k else { return XCTFail("got \(String(describing: k))") }
        XCTAssertTrue(detail.contains("header byte"), detail)
    }

    func testRule5MalformedJSON() {
        for header in [
            "", " ", "[]", "\"x\"", "1", "null", "{", "}", "{}}", "{}{}", "{} x", "{,}",
            #"{"a"}"#, #"{"a":}"#, #"{"a" 1}"#, "{'a':1}", #"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},}"#,
            "{/*c*/}", "\u{FEFF}{}", "{}\u{0}", "\u{0}{}", "{\u{0B}}",  // BOM, NUL, vertical tab are not JSON whitespace
            #"{"a":NaN}"#, #"{"a\x":1}"#, #"{"a"#, #"{"\"#, #"{"\u12"#, #"{"\u12G4":1}"#,
            "{\"a\tb\":1}",                                                 // raw control character in a string
            #"{"\ud800":1}"#, #"{"\udc00":1}"#, #"{"\ud800\u0041":1}"#,     // unpaired surrogates
        ] {
            assertDeserializationError(header)
        }
    }

    func testRule5TensorEntryShape() {
        let ok = #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        XCTAssertNotNil(load(file(ok, data: [0, 0, 0, 0])))
        for header in [
            #"{"t":1}"#, #"{"t":"F32"}"#, #"{"t":[]}"#, #"{"t":null}"#, #"{"t":{}}"#,
            // missing keys
            #"{"t":{"shape":[1],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[1]}}"#,
            // extra key
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}"#,
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"__metadata__":{}}}"#,
            // dtype
            #"{"t":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}"#,
            // sizes: negative, non-integer, exponent, leading zero, > u64, wrong types
            #"{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[-0],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[1E0],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[1,],"data_offsets":[0,4]}}"#,
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}}"#,
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}"#,
            // data_offsets must be exactly two integers
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#,
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#,
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[]}}"#,
            #"{"t":{"dtype":"F32","shape":[1],"data_offsets":{"0":4}}}"#,
        ] {
            assertDeserializationError(header, data: [0, 0, 0, 0])
        }
    }

    func testRule5MetadataMustBeStringToString() {
        XCTAssertEqual(load(file(#"{"__metadata__":{"k":"v"}}"#))?.metadata, ["k": "v"])
        XCTAssertEqual(load(file(#"{"__metadata__":{}}"#))?.metadata, [:])
        XCTAssertEqual(load(file(#"{"__metadata__":null}"#))?.metadata, [:])   // serde's Option accepts null
        for header in [
            #"{"__metadata__":{"k":1}}"#, #"{"__metadata__":{"k":null}}"#, #"{"__metadata__":{"k":true}}"#,
            #"{"__metadata__":{"k":{"a":"b"}}}"#, #"{"__metadata__":{"k":["v"]}}"#,
            #"{"__metadata__":"v"}"#, #"{"__metadata__":[]}"#, #"{"__metadata__":1}"#,
            #"{"__metadata__":{"k":"v",}}"#, #"{"__metadata__":{"k":"v""#,
        ] {
            assertDeserializationError(header)
        }
    }

    func testRule5DeepNestingIsRejectedWithoutCrashing() {
        let depth = 1_000_000
        assertDeserializationError(String(repeating: "[", count: depth))
        assertDeserializationError(String(repeating: "{\"a\":", count: depth))
        assertDeserializationError(#"{"__metadata__":"# + String(repeating: "{\"a\":", count: depth))
        assertDeserializationError(#"{"t":{"dtype":"F32","shape":"# + String(repeating: "[", count: depth))
        assertDeserializationError(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":"# + String(repeating: "[", count: depth))
    }

    func testDuplicateKeysAreRejected() {
        let t = #""t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#
        assertRejected(file("{\(t),\(t)}", data: [0, 0, 0, 0]), .duplicateKey("t"))
        assertRejected(file(#"{"__metadata__":{},"__metadata__":{}}"#), .duplicateKey("__metadata__"))
        assertRejected(file(#"{"__metadata__":{"k":"a","k":"b"}}"#), .duplicateKey("k"))
        assertRejected(file(#"{"t":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
                       .duplicateKey("dtype"))
        assertRejected(file(#"{"t":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
                       .duplicateKey("shape"))
        assertRejected(file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
                       .duplicateKey("data_offsets"))
        // An escaped spelling of the same key is the same key.
        assertRejected(file(#"{"__metadata__":{"k":"a","\u006b":"b"}}"#), .duplicateKey("k"))
    }

    // MARK: - Rule 6: InvalidOffset

    func testRule6InvalidOffset() {
        // First tensor must start at 0.
        assertRejected(file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
                       .invalidOffset("t"))
        // Gap between tensors.
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                            data: [UInt8](repeating: 0, count: 12)), .invalidOffset("b"))
        // Overlap.
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                            data: [UInt8](repeating: 0, count: 8)), .invalidOffset("b"))
        // end < begin.
        assertRejected(file(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"c":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
                            data: [UInt8](repeating: 0, count: 4)), .invalidOffset("c"))
        // Offsets beyond the schema's 2^48−1.
        assertRejected(file(#"{"t":{"dtype":"U8","shape":[281474976710656],"data_offsets":[0,281474976710656]}}"#),
                       .invalidOffset("t"))
    }

    func testRule6JSONAttackManyTensorsSameOffsets() {
        // reference test_json_attack: ten tensors all claiming [0,16].
        let entries = (0..<10).map { #""weight_\#($0)":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}"# }
        let k = kind(of: file("{" + entries.joined(separator: ",") + "}", data: [UInt8](repeating: 0, count: 16)))
        guard case .invalidOffset(let name) = k else { return XCTFail("got \(String(describing: k))") }
        XCTAssertTrue(name.hasPrefix("weight_"))
    }

    // MARK: - Rule 7: ValidationOverflow / MisalignedSlice

    func testRule7ValidationOverflow() {
        // reference test_validation_overflow, both inputs.
        for shape in ["[2,18446744073709551614]", "[2,9223372036854775807]"] {
            let h = #"{"test":{"dtype":"I32","shape":\#(shape),"data_offsets":[0,16]}}"#
            assertRejected(file(h, data: [UInt8](repeating: 0, count: 16)), .validationOverflow("test"))
        }
        // Product overflow with dims each under 2^48: 2^40 · 2^40.
        assertRejected(file(#"{"t":{"dtype":"U8","shape":[1099511627776,1099511627776],"data_offsets":[0,0]}}"#),
                       .validationOverflow("t"))
        // A dimension above 2^48−1 is rejected even when another dimension is 0.
        assertRejected(file(#"{"t":{"dtype":"U8","shape":[0,281474976710656],"data_offsets":[0,0]}}"#),
                       .validationOverflow("t"))
        XCTAssertNotNil(load(file(#"{"t":{"dtype":"U8","shape":[0,281474976710655],"data_offsets":[0,0]}}"#)))
    }

    func testRule7MisalignedSlice() {
        assertRejected(file(#"{"t":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#, data: [0, 0]), .misalignedSlice("t"))
        assertRejected(file(#"{"t":{"dtype":"F6_E3M2","shape":[1],"data_offsets":[0,1]}}"#, data: [0]), .misalignedSlice("t"))
        // Whole bytes are fine: 4 × 6 bits = 3 bytes, 2 × 4 bits = 1 byte.
        XCTAssertNotNil(load(file(#"{"t":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]}}"#, data: [1, 2, 3])))
        XCTAssertNotNil(load(file(#"{"t":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#, data: [9])))
    }

    // MARK: - Rule 8: TensorInvalidInfo

    func testRule8TensorInvalidInfo() {
        // reference test_invalid_info (note the space inside data_offsets).
        assertRejected(file(#"{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0, 4]}}"#), .tensorInvalidInfo("test"))
        assertRejected(file(#"{"t":{"dtype":"F32","shape":[],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8)),
                       .tensorInvalidInfo("t"))
    }

    // MARK: - Rule 9: MetadataIncompleteBuffer

    func testRule9MetadataIncompleteBuffer() {
        let zeros16 = [UInt8](repeating: 0, count: 16)
        XCTAssertNotNil(load(file(i32Test, data: zeros16)))                 // reference test_deserialization
        // reference test_metadata_incomplete_buffer: bogus tail, then 2 bytes short.
        assertRejected(file(i32Test, data: zeros16 + Array("extra_bogus_data_for_polyglot_file".utf8)), .metadataIncompleteBuffer)
        assertRejected(file(i32Test, data: [UInt8](repeating: 0, count: 14)), .metadataIncompleteBuffer)
        assertRejected(file("{}", data: [0]), .metadataIncompleteBuffer)
    }

    func testRulesApplyInOrder() {
        // Violates 6 (starts at 4) and 9 (no data): rule 6 wins.
        assertRejected(file(#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#), .invalidOffset("t"))
        // Violates 4 (non-UTF-8) and 5 (not JSON): rule 4 wins.
        assertRejected(file(n: 2, [0xFF, 0x7B]), .invalidHeader)
        // Violates 2 and 3: rule 2 wins.
        assertRejected(file(n: UInt64.max, []), .headerTooLarge(UInt64.max))
    }

    // MARK: - Accepted edge cases

    func testWhitespaceAroundHeaderIsAccepted() {
        // reference test_whitespace_padded_header and test_whitespace_leading_padded_header.
        XCTAssertEqual(load([6, 0, 0, 0, 0, 0, 0, 0] + Array("{}\r \t\n".utf8))?.tensors.count, 0)
        XCTAssertEqual(load([6, 0, 0, 0, 0, 0, 0, 0] + Array("\t\n{}\r ".utf8))?.tensors.count, 0)
        let spaced = " \n{ \"__metadata__\" : { \"k\" : \"v\" } ,\r\n \"t\" : { \"shape\" : [ 1 , 1 ] , \"dtype\" : \"F32\" , \"data_offsets\" : [ 0 , 4 ] } }\t "
        let f = load(file(spaced, data: [0, 0, 0x80, 0x3F]))
        XCTAssertEqual(try f?.floats("t", shape: [1, 1]), [1])
        XCTAssertEqual(f?.metadata, ["k": "v"])
    }

    func testEmptyAndRankZeroTensorsAreAccepted() {
        // reference test_zero_sized_tensor and test_empty_shapes_allowed.
        let z = load(file(#"{"test":{"dtype":"I32","shape":[2,0],"data_offsets":[0, 0]}}"#))
        XCTAssertEqual(z?.tensors["test"], TensorInfo(dtype: .I32, shape: [2, 0], begin: 0, end: 0))
        let r = load(file(#"{"test":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
        XCTAssertEqual(r?.tensors["test"]?.shape, [])
        XCTAssertEqual(try r?.rawBytes("test"), [0, 0, 0, 0])

        var w = SafeTensorsWriter()
        w.add("empty", shape: [0], floats: [])
        w.add("empty2", shape: [3, 0], floats: [])
        w.add("scalar", shape: [], floats: [42])
        let f = load(w.serialize())
        XCTAssertEqual(try f?.floats("empty", shape: [0]), [])
        XCTAssertEqual(try f?.floats("empty2", shape: [3, 0]), [])
        XCTAssertEqual(try f?.floats("scalar", shape: []), [42])
        XCTAssertEqual(f?.tensors["empty"]?.begin, f?.tensors["empty"]?.end)
    }

    func testEscapesInKeysAndUnalignedDataSection() {
        // Third-party writers need not pad: this odd N puts the data section at an odd offset.
        let h = #"{"t\u00e9\ud83d\ude00\n":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} "#
        let bytes = file(h, data: [0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0])
        let f = load(bytes)
        XCTAssertEqual(f?.names.map { Array($0.utf8) }, [Array("té😀\n".utf8)])
        XCTAssertEqual(try f?.floats("té😀\n"), [1, -2])
        var out = [Float](repeating: 0, count: 2)
        try? out.withUnsafeMutableBufferPointer { try f?.copyFloats("té😀\n", shape: [2], into: $0.baseAddress!) }
        XCTAssertEqual(out, [1, -2])
    }

    // MARK: - Accessors

    func testAccessorErrors() throws {
        var w = SafeTensorsWriter()
        w.add("w", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])
        w.add("n", shape: [1], int64s: [5])
        let f = try SafeTensorsFile(bytes: w.serialize(), path: "m.safetensors")
        XCTAssertEqual(f.path, "m.safetensors")
        func k(_ body: () throws -> Void) -> SafeTensorsError.Kind? {
            do { try body(); return nil } catch { return (error as? SafeTensorsError)?.kind }
        }
        XCTAssertEqual(k { _ = try f.floats("missing") }, .notFound("missing"))
        XCTAssertEqual(k { _ = try f.floats("n") }, .wrongDType("n", .I64))
        XCTAssertEqual(k { _ = try f.floats("w", shape: [3, 2]) }, .wrongShape("w", [2, 3], expected: [3, 2]))
        var dst = [Float](repeating: 0, count: 6)
        XCTAssertEqual(k { try dst.withUnsafeMutableBufferPointer { try f.copyFloats("w", shape: [6], into: $0.baseAddress!) } },
                       .wrongShape("w", [2, 3], expected: [6]))
        XCTAssertEqual(dst, [0, 0, 0, 0, 0, 0])
        try dst.withUnsafeMutableBufferPointer { try f.copyFloats("w", shape: [2, 3], into: $0.baseAddress!) }
        XCTAssertEqual(dst, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(k { _ = try f.rawBytes("missing") }, .notFound("missing"))
        XCTAssertEqual(f.headerLength % 8, 0)
    }

    func testDTypeBits() {
        XCTAssertEqual(DType.allCases.count, 22)
        XCTAssertEqual(DType.F32.bits, 32)
        XCTAssertEqual(DType.C64.bits, 64)
        XCTAssertEqual(DType.F4.bits, 4)
        XCTAssertEqual(DType.F6_E2M3.bits, 6)
        XCTAssertEqual(DType.F8_E4M3FNUZ.bits, 8)
        XCTAssertEqual(DType.BOOL.bits, 8)
        XCTAssertEqual(DType(rawValue: "BF16")?.bits, 16)
        // The writer's order (reference enum order) never puts a smaller type before a larger one;
        // BOOL is first in the reference enum, so it is written last.
        XCTAssertEqual(DType.allCases.min { $0.alignmentRank < $1.alignmentRank }, .BOOL)
        for a in DType.allCases where a != .BOOL {
            for b in DType.allCases where a.alignmentRank < b.alignmentRank {
                XCTAssertLessThanOrEqual(a.bits, b.bits, "\(a) vs \(b)")
            }
        }
    }

    // MARK: - Round trips

    private static let specialFloats: [Float] = [
        Float(bitPattern: 0x7FC0_0001),  // quiet NaN with payload
        Float(bitPattern: 0xFFC1_2345),  // negative quiet NaN with payload
        Float(bitPattern: 0x7F80_0001),  // signalling NaN
        -0.0, 0.0, .infinity, -.infinity,
        Float(bitPattern: 0x0000_0001),  // smallest subnormal
        Float(bitPattern: 0x807F_FFFF),  // largest negative subnormal
        .greatestFiniteMagnitude, -.leastNormalMagnitude, 1.0 / 3.0, .pi,
    ]

    private static let hostileMetadata: [String: String] = [
        "config": #"{"hidden_size":128,"cell":"lstm","dropout":0.25,"name":"a \"quoted\" \\ path"}"#,
        "vocab": "[\"\\n\",\"\\r\",\"\\\"\",\"😀\",\"日本語\",\"\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\"]",
        "raw": "line1\nline2\r\n\t\"q\" \\ / \u{0}\u{1}\u{1F}\u{7F}\u{2028}\u{2029} é e\u{301} 한국어 🇯🇵",
        "": "empty key",
        "emoji 🔑\n": "",
        "e\u{301}": "decomposed key",
    ]

    private func assertBitExact(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), file: file, line: line)
    }

    private func assertMetadataExact(_ a: [String: String], _ b: [String: String],
                                     file: StaticString = #filePath, line: UInt = #line) {
        func bytes(_ m: [String: String]) -> [[UInt8]: [UInt8]] {
            Dictionary(uniqueKeysWithValues: m.map { (Array($0.key.utf8), Array($0.value.utf8)) })
        }
        XCTAssertEqual(bytes(a), bytes(b), file: file, line: line)
    }

    func testRoundTripInMemoryIsBitExact() throws {
        var random = STSplitMix(seed: 7)
        let big = (0..<1000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: random.next())) }
        var w = SafeTensorsWriter()
        w.add("special", shape: [Self.specialFloats.count], floats: Self.specialFloats)
        w.add("random.bits", shape: [10, 100], floats: big)
        w.metadata = Self.hostileMetadata
        let bytes = w.serialize()
        let f = try SafeTensorsFile(bytes: bytes, path: "mem")
        assertBitExact(try f.floats("special"), Self.specialFloats)
        assertBitExact(try f.floats("random.bits", shape: [10, 100]), big)
        assertMetadataExact(f.metadata, Self.hostileMetadata)
        // The metadata JSON must itself be valid JSON for other readers (Foundation as a witness).
        let n = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16
        let json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any]
        let meta = json?["__metadata__"] as? [String: String]
        XCTAssertEqual(meta?.count, Self.hostileMetadata.count)
        XCTAssertEqual(meta?["raw"].map { Array($0.utf8) }, Self.hostileMetadata["raw"].map { Array($0.utf8) })
        // Re-serialising what was read gives the same bytes.
        var w2 = SafeTensorsWriter()
        w2.metadata = f.metadata
        for name in f.names { w2.add(name, shape: f.tensors[name]!.shape, floats: try f.floats(name)) }
        XCTAssertEqual(w2.serialize(), bytes)
    }

    func testRoundTripThroughDisk() throws {
        let dir = try makeSTTempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        var w = SafeTensorsWriter()
        Self.specialFloats.withUnsafeBufferPointer { w.add("p", shape: [Self.specialFloats.count], floats: $0) }
        w.metadata = Self.hostileMetadata
        try w.write(to: path)
        let f = try SafeTensorsFile.read(path: path)
        assertBitExact(try f.floats("p"), Self.specialFloats)
        assertMetadataExact(f.metadata, Self.hostileMetadata)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])

        XCTAssertThrowsError(try SafeTensorsFile.read(path: dir + "/missing.safetensors")) { error in
            XCTAssertTrue(error is FileIOError)
            XCTAssertEqual("\(error)", dir + "/missing.safetensors: cannot open: No such file or directory")
        }
        XCTAssertThrowsError(try SafeTensorsFile.read(path: dir)) { error in
            XCTAssertEqual((error as? FileIOError)?.code, EISDIR)
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/short"))
        XCTAssertThrowsError(try SafeTensorsFile.read(path: dir + "/short")) { error in
            XCTAssertEqual(error as? SafeTensorsError, SafeTensorsError(file: dir + "/short", kind: .headerTooSmall))
        }
    }

    func testFiftyMegabyteCheckpointIsFast() throws {
        let dir = try makeSTTempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/big.safetensors"
        let count = 50_000_000 / 4 / 4
        var w = SafeTensorsWriter()
        for i in 0..<4 {
            let values = [Float](repeating: Float(i) + 0.5, count: count)
            w.add("w\(i)", shape: [count / 1000, 1000], floats: values)
        }
        try w.write(to: path)
        let start = Date()
        let f = try SafeTensorsFile.read(path: path)
        var total: Float = 0
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { dst.deallocate() }
        for i in 0..<4 {
            try f.copyFloats("w\(i)", shape: [count / 1000, 1000], into: dst)
            total += dst[count - 1]
            total += try f.floats("w\(i)")[0]
        }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(total, 2 * (0.5 + 1.5 + 2.5 + 3.5))
        XCTAssertLessThan(elapsed, 2.0, "reading a 50 MB checkpoint took \(elapsed) s")
    }

    // MARK: - Writer errors

    func testWriterRejectsOversizedHeaderOnWrite() throws {
        let dir = try makeSTTempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = SafeTensorsWriter()
        w.metadata = ["huge": String(decoding: [UInt8](repeating: 0x78, count: SafeTensorsFile.maxHeaderLength), as: UTF8.self)]
        XCTAssertThrowsError(try w.write(to: dir + "/x.safetensors")) { error in
            guard case .headerTooLarge(let n)? = (error as? SafeTensorsError)?.kind else { return XCTFail("\(error)") }
            XCTAssertGreaterThan(n, UInt64(SafeTensorsFile.maxHeaderLength))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    // MARK: - Fuzz smoke test

    /// Deterministic mutations of valid files (byte flips, truncation, insertion, random lengths)
    /// must produce either a valid file or a SafeTensorsError — never a crash or another error.
    func testMutationFuzzNeverCrashes() {
        var w = SafeTensorsWriter()
        w.add("a", shape: [2, 3], floats: [0, 1, 2, 3, 4, 5])
        w.add("b", shape: [], int64s: [9])
        w.add("c", shape: [0], floats: [])
        w.metadata = ["k": "v\n\"😀", "config": #"{"x":[1,2]}"#]
        let seeds: [[UInt8]] = [
            w.serialize(),
            file(i32Test, data: [UInt8](repeating: 0, count: 16)),
            file(#"{"t\u00e9":{"dtype":"F4","shape":[2,0],"data_offsets":[0,0]},"__metadata__":null}"#),
        ]
        let interesting: [UInt8] = Array("{}[]\",:\\-0123456789eE.u ".utf8) + [0, 0x7F, 0x80, 0xBF, 0xC0, 0xED, 0xF4, 0xFF]
        var rng = STSplitMix(seed: 12345)
        var accepted = 0
        for iteration in 0..<20_000 {
            var bytes = seeds[iteration % seeds.count]
            let mutations = 1 + Int(rng.next() % 4)
            for _ in 0..<mutations {
                guard !bytes.isEmpty else { break }
                let at = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 6 {
                case 0: bytes[at] ^= UInt8(1 << (rng.next() % 8))
                case 1: bytes[at] = interesting[Int(rng.next() % UInt64(interesting.count))]
                case 2: bytes.removeSubrange(at...)
                case 3: bytes.insert(interesting[Int(rng.next() % UInt64(interesting.count))], at: at)
                case 4: bytes.remove(at: at)
                default:
                    // Rewrite the length prefix (keeps N small enough to be interesting).
                    let n = rng.next() % UInt64(bytes.count + 16)
                    for i in 0..<min(8, bytes.count) { bytes[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(i))) }
                }
            }
            do {
                let f = try SafeTensorsFile(bytes: bytes, path: "fuzz")
                accepted += 1
                for name in f.names {
                    _ = try? f.rawBytes(name)
                    _ = try? f.floats(name)
                }
            } catch is SafeTensorsError {
                continue
            } catch {
                XCTFail("unexpected error \(error)")
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }
}

// MARK: - Shared test utilities

/// STSplitMix64, for reproducible test data.
struct STSplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A fresh empty directory under the system temp directory.
private func makeSTTempDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "charrnn-st-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
