// Text/JSONWriter.swift — JSON written by hand into a byte buffer: the one string escaper of the
// package, used by the safetensors header writer (fixed key order, reproducible bytes), by the
// quoting of names in checkpoint errors and by the server's streamed completion events (one event
// per token, no allocation once the buffer has grown).
//
// Contract: `appendString` writes a JSON string literal, quotes included, escaping exactly what
// Foundation's JSONEncoder/JSONSerialization (with `.withoutEscapingSlashes`) and serde_json (the
// safetensors reference writer) escape: `"` and `\` with a backslash; U+0008, U+000C, U+000A,
// U+000D, U+0009 as \b \f \n \r \t; every other byte below 0x20 as \u00XX (lowercase hex). All other
// bytes, including every byte of multi-byte UTF-8 and U+007F, are copied as they are, so the input
// must be UTF-8 for the output to be JSON. A Codable value encoded by JSONEncoder and the same value
// written with this writer in the same key order are therefore the same bytes (the API's tests hold
// the streamed event to that). `appendInteger` writes an Int in decimal without allocating.

package enum JSONWriter {
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends the UTF-8 `bytes` as a quoted JSON string (see the file header for the escapes).
    package static func appendString(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(0x22)
        var run = 0   // start of the bytes not yet copied
        for i in 0..<bytes.count {
            let b = bytes[i]
            guard b < 0x20 || b == 0x22 || b == 0x5C else { continue }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
            run = i + 1
            out.append(0x5C)
            switch b {
            case 0x22, 0x5C: out.append(b)
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            default:
                out.append(UInt8(ascii: "u")); out.append(UInt8(ascii: "0")); out.append(UInt8(ascii: "0"))
                out.append(hexDigits[Int(b >> 4)]); out.append(hexDigits[Int(b & 0x0F)])
            }
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<bytes.count]))
        out.append(0x22)
    }

    /// Appends the UTF-8 `bytes` as a quoted JSON string.
    package static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
        bytes.withUnsafeBufferPointer { appendString($0, to: &out) }
    }

    /// Appends `s` as a quoted JSON string.
    package static func appendString(_ s: String, to out: inout [UInt8]) {
        var s = s
        s.withUTF8 { appendString($0, to: &out) }
    }

    /// Appends `n` in decimal (a leading `-` when negative), as JSONEncoder writes an Int.
    package static func appendInteger(_ n: Int, to out: inout [UInt8]) {
        if n < 0 { out.append(UInt8(ascii: "-")) }
        // the magnitude as UInt, so Int.min has one too
        var m = n.magnitude, divisor: UInt = 1
        while m / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            out.append(UInt8(ascii: "0") + UInt8(m / divisor))
            m %= divisor
            divisor /= 10
        }
    }
}
