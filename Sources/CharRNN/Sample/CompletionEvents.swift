// Sample/CompletionEvents.swift — the server-sent events of one streaming completion, formatted by
// hand into a reused byte buffer (no JSON encoder, no dictionary, no String per token).
//
// One event per choice with new text: `data: {"id":ID,"object":"text_completion","created":N,
// "model":M,"system_fingerprint":F,"choices":[{"index":I,"text":T,"finish_reason":R,"logprobs":null}]}`
// followed by a blank line — the shape OpenAI's completions stream has. Everything up to `"index":`
// is the same for every event of the request and is built once; T is escaped as RFC 8259 asks
// (`"` `\` and U+0000…U+001F; the text is whole UTF-8 scalars, copied as they are).

/// Formats a streaming completion's events (see the file header).
public struct CompletionEvents: Sendable {
    /// `data: {"id":…,"choices":[{"index":` — the request's constant head.
    public let head: [UInt8]

    /// - Parameters:
    ///   - id: the completion id; `created`: Unix seconds; `model`, `fingerprint`: as in the response.
    public init(id: String, created: Int, model: String, fingerprint: String) {
        var h = Array("data: {\"id\":".utf8)
        CompletionEvents.appendJSONString(Array(id.utf8), to: &h)
        h += Array(",\"object\":\"text_completion\",\"created\":\(created),\"model\":".utf8)
        CompletionEvents.appendJSONString(Array(model.utf8), to: &h)
        h += Array(",\"system_fingerprint\":".utf8)
        CompletionEvents.appendJSONString(Array(fingerprint.utf8), to: &h)
        h += Array(",\"choices\":[{\"index\":".utf8)
        head = h
    }

    /// Appends the event of choice `index` carrying `text` (UTF-8) and, when it ended, its finish reason.
    public func append(index: Int, text: [UInt8], finish: FinishReason?, to out: inout [UInt8]) {
        out.append(contentsOf: head)
        CompletionEvents.appendDecimal(index, to: &out)
        out.append(contentsOf: CompletionEvents.textKey)
        CompletionEvents.appendJSONString(text, to: &out)
        out.append(contentsOf: CompletionEvents.finishKey)
        if let finish {
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: finish.rawValue.utf8)
            out.append(UInt8(ascii: "\""))
        } else {
            out.append(contentsOf: CompletionEvents.null)
        }
        out.append(contentsOf: CompletionEvents.tail)
    }

    static let textKey = Array(",\"text\":".utf8)
    static let finishKey = Array(",\"finish_reason\":".utf8)
    static let null = Array("null".utf8)
    static let tail = Array(",\"logprobs\":null}]}\n\n".utf8)
    static let hex = Array("0123456789abcdef".utf8)

    /// Appends `bytes` (UTF-8) as a JSON string literal, quotes included.
    public static func appendJSONString(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        bytes.withUnsafeBufferPointer { b in
            var run = 0   // start of the bytes not yet copied
            for i in 0..<b.count {
                let c = b[i]
                guard c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[run..<i]))
                run = i + 1
                out.append(UInt8(ascii: "\\"))
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(c)
                case UInt8(ascii: "\n"): out.append(UInt8(ascii: "n"))
                case UInt8(ascii: "\r"): out.append(UInt8(ascii: "r"))
                case UInt8(ascii: "\t"): out.append(UInt8(ascii: "t"))
                default:
                    out.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    out.append(hex[Int(c >> 4)]); out.append(hex[Int(c & 15)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: b[run..<b.count]))
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends n ≥ 0 in decimal.
    static func appendDecimal(_ n: Int, to out: inout [UInt8]) {
        precondition(n >= 0)
        if n >= 10 { appendDecimal(n / 10, to: &out) }
        out.append(UInt8(ascii: "0") + UInt8(n % 10))
    }
}
