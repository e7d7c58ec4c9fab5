// Checkpoint/JSONHeader.swift — the JSON inside a safetensors header, both directions.
//
// Contract:
// - `JSONHeaderParser` reads the header bytes (already checked to be UTF-8 by the caller) as strict
//   RFC 8259 JSON, directed by the safetensors schema: a top-level object whose keys are tensor names
//   mapping to {"dtype", "shape", "data_offsets"} (exactly those three keys), plus an optional
//   "__metadata__" that is a flat string→string object (or `null`, which the reference also accepts).
//   JSON whitespace is allowed around every token, including before the first `{` and after the
//   last `}` (the reference reader tolerates both).
// - It rejects, as `invalidHeaderDeserialization`: anything that is not that shape, unknown dtypes,
//   sizes that are negative, fractional, exponent-form or beyond UInt64, bad escapes, unpaired
//   surrogates, raw control characters in strings, trailing content. Duplicate keys at any level are
//   rejected as `duplicateKey` (Foundation's decoder cannot see them). Because the public API keys
//   dictionaries by Swift `String`, which compares by canonical equivalence, two byte-different but
//   canonically equivalent tensor names (or metadata keys) also count as duplicates.
// - Hostile input: the parser never recurses (the schema's depth is fixed at object → object →
//   array, so any deeper nesting fails at its first extra bracket), reads every byte through a
//   bounds check, and allocates only in proportion to the header bytes it has actually consumed.
//   Numbers are accumulated with overflow-checked arithmetic. Range checks that belong to the nine
//   validation rules (2^48−1 limits, shape products) are left to `SafeTensorsFile`.
// - `JSONHeaderWriter` builds the compact header by hand in a fixed key order (never JSONEncoder),
//   with the package's one string escaper (`JSONWriter`, Text/JSONWriter.swift: `"`, `\` and control
//   characters, as serde_json does; all other UTF-8 passes through).

// MARK: - Parsed form

/// A tensor entry exactly as declared in the header, before the offset/size validation.
struct RawTensorEntry {
    let name: String
    let dtype: DType
    let shape: [UInt64]
    let begin: UInt64
    let end: UInt64
}

/// The header after JSON parsing: metadata plus tensor entries in file (textual) order.
struct ParsedHeader {
    var metadata: [String: String] = [:]
    var entries: [RawTensorEntry] = []
}

/// Internal failure carrying the error kind; `SafeTensorsFile` attaches the file name.
struct HeaderParseFailure: Error {
    let kind: SafeTensorsError.Kind
}

// MARK: - Parser

/// Strict, schema-directed JSON reader over the header bytes. Use `JSONHeaderParser.parse(_:)`.
struct JSONHeaderParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var pos = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Parses a complete header. `bytes` must stay valid for the duration of the call only.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(HeaderParseFailure) -> ParsedHeader {
        var parser = JSONHeaderParser(bytes)
        return try parser.parseHeader()
    }

    // MARK: Byte constants

    private static let quote: UInt8 = 0x22       // "
    private static let backslash: UInt8 = 0x5C   // \
    private static let comma: UInt8 = 0x2C       // ,
    private static let colon: UInt8 = 0x3A       // :
    private static let openBrace: UInt8 = 0x7B   // {
    private static let closeBrace: UInt8 = 0x7D  // }
    private static let openBracket: UInt8 = 0x5B // [
    private static let closeBracket: UInt8 = 0x5D // ]
    private static let minus: UInt8 = 0x2D      // -
    private static let zero: UInt8 = 0x30
    private static let nine: UInt8 = 0x39

    private static let metadataKey = Array("__metadata__".utf8)
    private static let dtypeKey = Array("dtype".utf8)
    private static let shapeKey = Array("shape".utf8)
    private static let offsetsKey = Array("data_offsets".utf8)
    private static let nullLiteral = Array("null".utf8)

    // MARK: Primitives

    private func failure(_ message: String) -> HeaderParseFailure {
        HeaderParseFailure(kind: .invalidHeaderDeserialization("\(message) at header byte \(pos)"))
    }

    private var atEnd: Bool { pos >= bytes.count }

    private func peek() -> UInt8? {
        pos < bytes.count ? bytes[pos] : nil
    }

    private mutating func skipWhitespace() {
        while pos < bytes.count {
            switch bytes[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws(HeaderParseFailure) {
        guard let b = peek() else { throw failure("unexpected end of header, expected \(what)") }
        guard b == byte else { throw failure("expected \(what), found \(Self.describe(b))") }
        pos += 1
    }

    /// Consumes `literal` if the input continues with it.
    private mutating func consume(_ literal: [UInt8]) -> Bool {
        guard bytes.count - pos >= literal.count else { return false }
        for i in 0..<literal.count where bytes[pos + i] != literal[i] { return false }
        pos += literal.count
        return true
    }

    private static func describe(_ b: UInt8) -> String {
        if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
        let hex = String(b, radix: 16, uppercase: true)
        return "byte 0x" + (hex.count == 1 ? "0" + hex : hex)
    }

    /// A short, one-line, quoted rendering of a key for error messages.
    private static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        JSONWriter.appendString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Strings

    /// Reads a JSON string and returns its decoded UTF-8 bytes.
    private mutating func parseStringBytes() throws(HeaderParseFailure) -> [UInt8] {
        try expect(Self.quote, "'\"' to start a string")
        var out: [UInt8] = []
        while true {
            // Copy the longest run of ordinary bytes in one go.
            let runStart = pos
            while pos < bytes.count {
                let b = bytes[pos]
                if b == Self.quote || b == Self.backslash || b < 0x20 { break }
                pos += 1
            }
            if pos > runStart {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<pos]))
            }
            guard let b = peek() else { throw failure("unterminated string") }
            if b == Self.quote {
                pos += 1
                return out
            }
            if b < 0x20 { throw failure("raw control character \(Self.describe(b)) inside a string") }
            // Escape sequence.
            pos += 1
            guard let e = peek() else { throw failure("unterminated escape sequence") }
            pos += 1
            switch e {
            case 0x22: out.append(0x22)  // \"
            case 0x5C: out.append(0x5C)  // \\
            case 0x2F: out.append(0x2F)  // \/
            case 0x62: out.append(0x08)  // \b
            case 0x66: out.append(0x0C)  // \f
            case 0x6E: out.append(0x0A)  // \n
            case 0x72: out.append(0x0D)  // \r
            case 0x74: out.append(0x09)  // \t
            case 0x75:                   // \uXXXX, possibly a surrogate pair
                let unit = try parseHex4()
                var scalar: UInt32
                if (0xD800...0xDBFF).contains(unit) {
                    guard consume([Self.backslash, 0x75]) else { throw failure("unpaired high surrogate in \\u escape") }
                    let low = try parseHex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw failure("unpaired high surrogate in \\u escape") }
                    scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(unit) {
                    throw failure("unpaired low surrogate in \\u escape")
                } else {
                    scalar = unit
                }
                Self.appendUTF8(scalar, to: &out)
            default:
                pos -= 1
                throw failure("invalid escape \\\(Character(Unicode.Scalar(e)))")
            }
        }
    }

    private mutating func parseHex4() throws(HeaderParseFailure) -> UInt32 {
        guard bytes.count - pos >= 4 else { throw failure("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let b = bytes[pos]
            let digit: UInt32
            switch b {
            case 0x30...0x39: digit = UInt32(b - 0x30)
            case 0x41...0x46: digit = UInt32(b - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(b - 0x61 + 10)
            default: throw failure("invalid hex digit \(Self.describe(b)) in \\u escape")
            }
            value = value << 4 | digit
            pos += 1
        }
        return value
    }

    /// UTF-8 encodes a scalar value already known to be valid (not a surrogate, ≤ 0x10FFFF).
    private static func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
        switch v {
        case 0..<0x80:
            out.append(UInt8(v))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (v >> 6)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (v >> 12)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (v >> 18)))
            out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }

    /// Header bytes are valid UTF-8 (checked before parsing) and escapes decode to valid scalars,
    /// so the decoded bytes are valid UTF-8 and `String(decoding:)` never repairs anything.
    private static func string(_ utf8: [UInt8]) -> String {
        String(decoding: utf8, as: UTF8.self)
    }

    // MARK: Numbers

    /// Reads a JSON number that must be a non-negative integer fitting in UInt64.
    private mutating func parseSize(_ what: String) throws(HeaderParseFailure) -> UInt64 {
        guard let first = peek() else { throw failure("unexpected end of header, expected \(what)") }
        if first == Self.minus { throw failure("\(what) is negative") }
        guard first >= Self.zero && first <= Self.nine else {
            throw failure("expected a non-negative integer for \(what), found \(Self.describe(first))")
        }
        var value: UInt64 = 0
        var overflow = false
        let start = pos
        while let b = peek(), b >= Self.zero && b <= Self.nine {
            if !overflow {
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(b - Self.zero))
                value = s
                overflow = o1 || o2
            }
            pos += 1
        }
        if first == Self.zero && pos - start > 1 {
            pos = start
            throw failure("\(what) has a leading zero")
        }
        if let b = peek(), b == 0x2E || b == 0x65 || b == 0x45 {  // '.', 'e', 'E'
            throw failure("\(what) is not an integer")
        }
        if overflow {
            pos = start
            throw failure("\(what) does not fit in 64 bits")
        }
        return value
    }

    // MARK: Schema

    private mutating func parseHeader() throws(HeaderParseFailure) -> ParsedHeader {
        var header = ParsedHeader()
        var seenNames = Set<String>()
        var seenMetadata = false
        skipWhitespace()
        try expect(Self.openBrace, "'{' to start the header object")
        skipWhitespace()
        if peek() == Self.closeBrace {
            pos += 1
        } else {
            while true {
                skipWhitespace()
                let keyBytes = try parseStringBytes()
                skipWhitespace()
                try expect(Self.colon, "':' after a key")
                skipWhitespace()
                if keyBytes == Self.metadataKey {
                    if seenMetadata { throw HeaderParseFailure(kind: .duplicateKey("__metadata__")) }
                    seenMetadata = true
                    header.metadata = try parseMetadata()
                } else {
                    let name = Self.string(keyBytes)
                    if !seenNames.insert(name).inserted { throw HeaderParseFailure(kind: .duplicateKey(name)) }
                    header.entries.append(try parseEntry(name: name))
                }
                skipWhitespace()
                guard let b = peek() else { throw failure("unexpected end of header inside the top-level object") }
                pos += 1
                if b == Self.comma { continue }
                if b == Self.closeBrace { break }
                pos -= 1
                throw failure("expected ',' or '}' in the top-level object, found \(Self.describe(b))")
            }
        }
        skipWhitespace()
        if let b = peek() { throw failure("unexpected \(Self.describe(b)) after the header object") }
        return header
    }

    /// `"__metadata__"`: a flat string→string object, or `null` (treated as empty, like the reference).
    private mutating func parseMetadata() throws(HeaderParseFailure) -> [String: String] {
        if consume(Self.nullLiteral) { return [:] }
        guard peek() == Self.openBrace else {
            throw failure("\"__metadata__\" must be an object of string values")
        }
        pos += 1
        var result: [String: String] = [:]
        skipWhitespace()
        if peek() == Self.closeBrace {
            pos += 1
            return result
        }
        while true {
            skipWhitespace()
            let key = Self.string(try parseStringBytes())
            skipWhitespace()
            try expect(Self.colon, "':' after a metadata key")
            skipWhitespace()
            guard peek() == Self.quote else {
                throw failure("\"__metadata__\" value for \(Self.quoted(key)) must be a string")
            }
            let value = Self.string(try parseStringBytes())
            if result.updateValue(value, forKey: key) != nil {
                throw HeaderParseFailure(kind: .duplicateKey(key))
            }
            skipWhitespace()
            guard let b = peek() else { throw failure("unexpected end of header inside \"__metadata__\"") }
            pos += 1
            if b == Self.comma { continue }
            if b == Self.closeBrace { return result }
            pos -= 1
            throw failure("expected ',' or '}' in \"__metadata__\", found \(Self.describe(b))")
        }
    }

    /// One tensor entry: exactly the keys dtype, shape, data_offsets, in any order.
    private mutating func parseEntry(name: String) throws(HeaderParseFailure) -> RawTensorEntry {
        let label = "tensor \(Self.quoted(name))"
        guard peek() == Self.openBrace else { throw failure("\(label) must be an object") }
        pos += 1
        var dtype: DType?
        var shape: [UInt64]?
        var offsets: (UInt64, UInt64)?
        skipWhitespace()
        if peek() == Self.closeBrace {
            pos += 1
        } else {
            while true {
                skipWhitespace()
                let keyStart = pos
                let key = try parseStringBytes()
                skipWhitespace()
                try expect(Self.colon, "':' after a key")
                skipWhitespace()
                if key == Self.dtypeKey {
                    if dtype != nil { throw HeaderParseFailure(kind: .duplicateKey("dtype")) }
                    guard peek() == Self.quote else { throw failure("\(label): dtype must be a string") }
                    let text = Self.string(try parseStringBytes())
                    guard let d = DType(rawValue: text) else {
                        throw failure("\(label): unknown dtype \(Self.quoted(text))")
                    }
                    dtype = d
                } else if key == Self.shapeKey {
                    if shape != nil { throw HeaderParseFailure(kind: .duplicateKey("shape")) }
                    shape = try parseSizeArray(label: label)
                } else if key == Self.offsetsKey {
                    if offsets != nil { throw HeaderParseFailure(kind: .duplicateKey("data_offsets")) }
                    offsets = try parseOffsets(label: label)
                } else {
                    pos = keyStart
                    throw failure("\(label) has unexpected key \(Self.quoted(Self.string(key)))")
                }
                skipWhitespace()
                guard let b = peek() else { throw failure("unexpected end of header inside \(label)") }
                pos += 1
                if b == Self.comma { continue }
                if b == Self.closeBrace { break }
                pos -= 1
                throw failure("expected ',' or '}' in \(label), found \(Self.describe(b))")
            }
        }
        guard let dtype else { throw failure("\(label) lacks \"dtype\"") }
        guard let shape else { throw failure("\(label) lacks \"shape\"") }
        guard let offsets else { throw failure("\(label) lacks \"data_offsets\"") }
        return RawTensorEntry(name: name, dtype: dtype, shape: shape, begin: offsets.0, end: offsets.1)
    }

    /// `[n, n, …]` of non-negative integers (possibly empty).
    private mutating func parseSizeArray(label: String) throws(HeaderParseFailure) -> [UInt64] {
        guard peek() == Self.openBracket else { throw failure("\(label): shape must be an array of integers") }
        pos += 1
        var values: [UInt64] = []
        skipWhitespace()
        if peek() == Self.closeBracket {
            pos += 1
            return values
        }
        while true {
            skipWhitespace()
            values.append(try parseSize("\(label): shape entry"))
            skipWhitespace()
            guard let b = peek() else { throw failure("unexpected end of header inside \(label) shape") }
            pos += 1
            if b == Self.comma { continue }
            if b == Self.closeBracket { return values }
            pos -= 1
            throw failure("expected ',' or ']' in \(label) shape, found \(Self.describe(b))")
        }
    }

    /// `[begin, end]`: exactly two non-negative integers.
    private mutating func parseOffsets(label: String) throws(HeaderParseFailure) -> (UInt64, UInt64) {
        guard peek() == Self.openBracket else {
            throw failure("\(label): data_offsets must be an array of two integers")
        }
        pos += 1
        skipWhitespace()
        let begin = try parseSize("\(label): data_offsets begin")
        skipWhitespace()
        try expect(Self.comma, "',' in \(label) data_offsets (exactly two entries)")
        skipWhitespace()
        let end = try parseSize("\(label): data_offsets end")
        skipWhitespace()
        try expect(Self.closeBracket, "']' closing \(label) data_offsets (exactly two entries)")
        return (begin, end)
    }
}

// MARK: - Writer

/// Hand-built compact JSON for the header, in a fixed order, so output bytes are reproducible.
enum JSONHeaderWriter {
    /// One tensor line of the header, in the order it will appear (offset order).
    struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        let begin: Int
        let end: Int
    }

    private static func appendIntArray(_ values: [Int], to out: inout [UInt8]) {
        out.append(0x5B)
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(0x2C) }
            JSONWriter.appendInteger(v, to: &out)
        }
        out.append(0x5D)
    }

    /// Compact JSON: `{"__metadata__":{…keys in UTF-8 byte order…},"name":{"dtype":…,"shape":[…],
    /// "data_offsets":[b,e]},…}`. `__metadata__` is omitted when empty. No padding is added here.
    static func header(metadata: [String: String], entries: [Entry]) -> [UInt8] {
        var out: [UInt8] = [0x7B]
        var first = true
        if !metadata.isEmpty {
            out.append(contentsOf: #""__metadata__":{"#.utf8)
            let keys = metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(0x2C) }
                JSONWriter.appendString(key, to: &out)
                out.append(0x3A)
                JSONWriter.appendString(metadata[key] ?? "", to: &out)
            }
            out.append(0x7D)
            first = false
        }
        for e in entries {
            if !first { out.append(0x2C) }
            first = false
            JSONWriter.appendString(e.name, to: &out)
            out.append(contentsOf: #":{"dtype":"#.utf8)
            JSONWriter.appendString(e.dtype.rawValue, to: &out)
            out.append(contentsOf: #","shape":"#.utf8)
            appendIntArray(e.shape, to: &out)
            out.append(contentsOf: #","data_offsets":"#.utf8)
            appendIntArray([e.begin, e.end], to: &out)
            out.append(0x7D)
        }
        out.append(0x7D)
        return out
    }
}
