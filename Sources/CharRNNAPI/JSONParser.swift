// CharRNNAPI/JSONParser.swift — the JSON reader of serve's request bodies (RFC 8259) into `JSONValue`.
//
// Guarantees
// - One pass over the bytes, each byte looked at a bounded number of times: time and memory are
//   linear in the body's size whatever its shape. (Foundation's JSONDecoder, driven through
//   `Decodable` with a "try each type" cascade, built a typeMismatch error with the whole coding
//   path for every failed guess, so 511 levels of nesting took over a second; and the cascade
//   reported a lone surrogate as "typeMismatch … Dictionary<String, Any>".)
// - Nesting is bounded: an array or object opened at more than `maxDepth` levels is refused at its
//   opening bracket, before anything inside it is read (the recursion never goes deeper).
// - Every failure is one APIError 400 (code `invalid_json`, or `nesting_too_deep`) whose message
//   gives the byte offset (0-based) and, when it lies inside a top-level field's value, names that
//   field (also as `param`): `prompt: invalid JSON string: lone surrogate \ud800 at byte 11`.
// - Strict: no NaN/Infinity, no leading zeros or '+', no control characters or lone surrogates in
//   strings, no trailing bytes, no key twice in one object (so that a proxy and this server cannot
//   read different values from one body). A leading UTF-8 byte-order mark is skipped.
// - Numbers: an integer literal (no fraction, no exponent) that fits Int64 is `.int`, one that fits
//   only UInt64 is `.uint`; every other number is `.double` and must be finite. Number literals are
//   at most `maxNumberLength` characters (the float conversion of longer ones is not linear).
// The input must be valid UTF-8 (`JSONValue.object(from:)` checks it first).

/// Reads one JSON value from UTF-8 bytes (see the file header).
struct JSONParser {
    /// Arrays and objects nested deeper than this are refused.
    static let maxDepth = 64
    /// Longest number literal accepted, in characters.
    static let maxNumberLength = 400

    private let b: UnsafeBufferPointer<UInt8>
    private var i = 0
    /// The top-level key whose value is being read (for messages and `param`).
    private var field: String?

    private init(_ b: UnsafeBufferPointer<UInt8>) { self.b = b }

    /// The value `bytes` hold, with nothing but whitespace around it.
    /// - Throws: `APIError` 400 (see the file header).
    static func parse(_ bytes: [UInt8]) throws(APIError) -> JSONValue {
        let r: Result<JSONValue, APIError> = bytes.withUnsafeBufferPointer { buf in
            var p = JSONParser(buf)
            do throws(APIError) {
                if buf.count >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF { p.i = 3 }
                let v = try p.value(depth: 0)
                p.skipSpace()
                if p.i < buf.count { throw p.fail("unexpected \(p.describe(p.i)) after the JSON value") }
                return .success(v)
            } catch { return .failure(error) }
        }
        return try r.get()
    }

    // MARK: - Errors

    private func fail(_ what: String, at offset: Int? = nil, code: String = "invalid_json") -> APIError {
        let at = offset ?? i
        if let field {
            return .invalid("\(Self.display(field)): \(what) at byte \(at)", param: field, code: code)
        }
        return .invalid("the request body is not valid JSON: \(what) at byte \(at)", param: nil, code: code)
    }

    /// A key as messages show it: as is when it is a plain name, else quoted with its control
    /// characters escaped (a message stays one line), and cut to 64 characters.
    static func display(_ key: String) -> String {
        let plain = !key.isEmpty && key.utf8.count <= 64 && key.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D
        }
        if plain { return key }
        let short = key.count > 64 ? String(key.prefix(64)) + "…" : key
        return short.debugDescription
    }

    /// The byte at `k` for a message: a printable ASCII character quoted, anything else in hex.
    private func describe(_ k: Int) -> String {
        guard k < b.count else { return "end of the body" }
        let c = b[k]
        return c >= 0x21 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x" + String(c, radix: 16, uppercase: true)
    }

    // MARK: - Values

    private mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    /// The value at `i` (after whitespace), inside `depth` open arrays/objects.
    private mutating func value(depth: Int) throws(APIError) -> JSONValue {
        skipSpace()
        guard i < b.count else { throw fail("unexpected end of the body, expected a value") }
        switch b[i] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected \(describe(i)), expected a value")
        }
    }

    private mutating func literal(_ word: String) throws(APIError) {
        var k = i
        for c in word.utf8 {
            guard k < b.count && b[k] == c else { throw fail("unexpected \(describe(i)), expected a value") }
            k += 1
        }
        i = k
    }

    private mutating func checkDepth(_ depth: Int) throws(APIError) {
        if depth > Self.maxDepth {
            throw fail("arrays and objects are nested more than \(Self.maxDepth) levels deep", code: "nesting_too_deep")
        }
    }

    private mutating func object(depth: Int) throws(APIError) -> JSONValue {
        try checkDepth(depth)
        i += 1   // {
        var o: [String: JSONValue] = [:]
        skipSpace()
        if i < b.count && b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
        while true {
            skipSpace()
            guard i < b.count && b[i] == UInt8(ascii: "\"") else { throw fail("unexpected \(describe(i)), expected a key (a string)") }
            let keyAt = i
            let key = try string()
            skipSpace()
            guard i < b.count && b[i] == UInt8(ascii: ":") else { throw fail("unexpected \(describe(i)), expected ':'") }
            i += 1
            if depth == 1 { field = key }
            let v = try value(depth: depth)
            if o.updateValue(v, forKey: key) != nil {
                throw fail("the key \(Self.display(key)) appears twice in one object", at: keyAt)
            }
            if depth == 1 { field = nil }
            skipSpace()
            guard i < b.count else { throw fail("unexpected end of the body, expected ',' or '}'") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
            throw fail("unexpected \(describe(i)), expected ',' or '}'")
        }
    }

    private mutating func array(depth: Int) throws(APIError) -> JSONValue {
        try checkDepth(depth)
        i += 1   // [
        var a: [JSONValue] = []
        skipSpace()
        if i < b.count && b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
        while true {
            a.append(try value(depth: depth))
            skipSpace()
            guard i < b.count else { throw fail("unexpected end of the body, expected ',' or ']'") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
            throw fail("unexpected \(describe(i)), expected ',' or ']'")
        }
    }

    // MARK: - Strings

    /// The string starting at the quote at `i`; `i` ends after its closing quote.
    private mutating func string() throws(APIError) -> String {
        i += 1   // "
        let start = i
        // fast path: no escape
        while i < b.count, b[i] != UInt8(ascii: "\""), b[i] != UInt8(ascii: "\\"), b[i] >= 0x20 { i += 1 }
        if i < b.count && b[i] == UInt8(ascii: "\"") {
            defer { i += 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        }
        var out = [UInt8](UnsafeBufferPointer(rebasing: b[start..<i]))
        while true {
            guard i < b.count else { throw fail("invalid JSON string: no closing quote", at: start - 1) }
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) }
            if c < 0x20 {
                throw fail("invalid JSON string: control character U+\(hex4(UInt32(c))) must be escaped")
            }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            let escapeAt = i
            guard i + 1 < b.count else { throw fail("invalid JSON string: no closing quote", at: start - 1) }
            i += 2
            switch b[escapeAt + 1] {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                let u = try hexEscape(at: escapeAt)
                i += 4
                var scalar = u
                if (0xD800...0xDBFF).contains(u) {
                    // a high surrogate must be followed by an escaped low one
                    let low: UInt32? = i + 1 < b.count && b[i] == UInt8(ascii: "\\") && b[i + 1] == UInt8(ascii: "u")
                        ? try hexEscape(at: i) : nil
                    guard let low, (0xDC00...0xDFFF).contains(low) else {
                        throw fail("invalid JSON string: lone surrogate \\u\(hex4(u).lowercased())", at: escapeAt)
                    }
                    i += 6
                    scalar = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(u) {
                    throw fail("invalid JSON string: lone surrogate \\u\(hex4(u).lowercased())", at: escapeAt)
                }
                out.append(contentsOf: Unicode.UTF8.encode(Unicode.Scalar(scalar)!)!)
            default:
                throw fail("invalid JSON string: unknown escape \\\(describe(escapeAt + 1).trimmingQuotes)", at: escapeAt)
            }
        }
    }

    /// The four hex digits of the `\uXXXX` escape at `k` (not consumed: the caller advances).
    private mutating func hexEscape(at k: Int) throws(APIError) -> UInt32 {
        guard k + 6 <= b.count else { throw fail("invalid JSON string: \\u needs four hex digits", at: k) }
        var v: UInt32 = 0
        for j in (k + 2)..<(k + 6) {
            let c = b[j]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw fail("invalid JSON string: \\u needs four hex digits", at: k)
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    private func hex4(_ v: UInt32) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    // MARK: - Numbers

    private mutating func number() throws(APIError) -> JSONValue {
        let start = i
        func digits() -> Int {
            let s = i
            while i < b.count, b[i] >= UInt8(ascii: "0") && b[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        if b[i] == UInt8(ascii: "-") { i += 1 }
        let intStart = i
        let n = digits()
        if n == 0 { throw fail("invalid number: expected a digit after '-'", at: start) }
        if n > 1 && b[intStart] == UInt8(ascii: "0") { throw fail("invalid number: leading zero", at: start) }
        var integral = true
        if i < b.count && b[i] == UInt8(ascii: ".") {
            i += 1; integral = false
            if digits() == 0 { throw fail("invalid number: expected a digit after '.'", at: start) }
        }
        if i < b.count && (b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E")) {
            i += 1; integral = false
            if i < b.count && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) { i += 1 }
            if digits() == 0 { throw fail("invalid number: expected a digit in the exponent", at: start) }
        }
        if i - start > Self.maxNumberLength {
            throw fail("number literal longer than \(Self.maxNumberLength) characters", at: start)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        if integral {
            if let v = Int64(text) { return .int(v) }
            if let v = UInt64(text) { return .uint(v) }
        }
        guard let d = Double(text), d.isFinite else { throw fail("number \(text) is out of range", at: start) }
        return .double(d)
    }
}

private extension String {
    /// `'x'` → `x` (for escape messages).
    var trimmingQuotes: String { hasPrefix("'") && hasSuffix("'") && count == 3 ? String(dropFirst().dropLast()) : self }
}
