// CharRNNAPI/CompletionEvents.swift — the server-sent events of one streaming completion, written
// into a reused byte buffer: one event per choice with new text, formatted by hand (no encoder, no
// dictionary, no String per token), then the end of the stream.
//
// Event: `data: ` + the JSON of a `CompletionChunk` holding one choice + a blank line, i.e.
// `data: {"choices":[{"finish_reason":R,"index":I,"logprobs":null,"text":T}],"created":N,"id":ID,
// "model":M,"object":"text_completion","system_fingerprint":F}\n\n` — the shape OpenAI's completions
// stream has, keys sorted as `APIJSON` sorts them, so byte for byte what `APIJSON.encode` gives for
// that chunk (the tests and the `request` fuzz target hold the two equal). Everything after the
// text is the same for every event of a request and is built once; R is a fixed name, T is escaped
// by `JSONWriter` (the text is whole UTF-8 scalars).
// End: an error event if the client was dropped for reading too slowly, the `CompletionUsageChunk`
// event, then `data: [DONE]`.
// A request with `logprobs` has its events encoded by `APIJSON` instead (the section at the end).

#if !CHARRNN_FUZZ
import CharRNN   // FinishReason, JSONWriter
#endif

/// Formats a streaming completion's events (see the file header).
package struct CompletionEvents: Sendable {
    package let id: String, created: Int, model: String
    /// The `system_fingerprint` of every event.
    package let fingerprint: String
    /// `}],"created":…,"system_fingerprint":F}` + blank line — the request's constant tail.
    package let tail: [UInt8]

    /// - Parameters:
    ///   - id: the completion id; `created`: Unix seconds; `model`, `fingerprint`: as in the response.
    package init(id: String, created: Int, model: String, fingerprint: String) {
        self.id = id; self.created = created; self.model = model; self.fingerprint = fingerprint
        var t = Array("}],\"created\":".utf8)
        JSONWriter.appendInteger(created, to: &t)
        t += Array(",\"id\":".utf8)
        JSONWriter.appendString(id, to: &t)
        t += Array(",\"model\":".utf8)
        JSONWriter.appendString(model, to: &t)
        t += Array(",\"object\":\"text_completion\",\"system_fingerprint\":".utf8)
        JSONWriter.appendString(fingerprint, to: &t)
        t += Array("}\n\n".utf8)
        tail = t
    }

    /// Appends the event of choice `index` carrying `text` (UTF-8) and, when it ended, its finish reason.
    package func append(index: Int, text: [UInt8], finish: FinishReason?, to out: inout [UInt8]) {
        out.append(contentsOf: CompletionEvents.head)
        if let finish {
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: finish.rawValue.utf8)
            out.append(UInt8(ascii: "\""))
        } else {
            out.append(contentsOf: CompletionEvents.null)
        }
        out.append(contentsOf: CompletionEvents.indexKey)
        JSONWriter.appendInteger(index, to: &out)
        out.append(contentsOf: CompletionEvents.textKey)
        JSONWriter.appendString(text, to: &out)
        out.append(contentsOf: tail)
    }

    /// Appends the end of the stream: the overflow error event when `overflowed`, the usage event,
    /// and `data: [DONE]` (once per request; this one may allocate).
    package func appendEnd(usage: Usage, overflowed: Bool, to out: inout [UInt8]) {
        if overflowed { appendEvent(APIError.streamOverflow.json, to: &out) }
        appendEvent(APIJSON.encode(CompletionUsageChunk(id: id, created: created, model: model, usage: usage)), to: &out)
        out.append(contentsOf: CompletionEvents.done)
    }

    private func appendEvent(_ json: [UInt8], to out: inout [UInt8]) {
        out.append(contentsOf: CompletionEvents.dataPrefix)
        out.append(contentsOf: json)
        out.append(contentsOf: CompletionEvents.blankLine)
    }

    static let head = Array("data: {\"choices\":[{\"finish_reason\":".utf8)
    static let null = Array("null".utf8)
    static let indexKey = Array(",\"index\":".utf8)
    static let textKey = Array(",\"logprobs\":null,\"text\":".utf8)
    static let dataPrefix = Array("data: ".utf8)
    static let blankLine = Array("\n\n".utf8)
    static let done = Array("data: [DONE]\n\n".utf8)
}

// MARK: - Events with logprobs
//
// With `logprobs`, an event carries the chunk's `logprobs` object too; those events are encoded by
// `APIJSON` (one encoder run per event: the writer allocates, the generation loop still does not).

extension CompletionEvents {
    /// Appends the event of choice `index` carrying `text`, its finish reason and `logprobs`.
    package func append(index: Int, text: [UInt8], finish: FinishReason?, logprobs: CompletionLogprobs, to out: inout [UInt8]) {
        let chunk = CompletionChunk(id: id, created: created, model: model, systemFingerprint: fingerprint,
                                    choices: [CompletionChoice(index: index, text: String(decoding: text, as: UTF8.self),
                                                               finishReason: finish?.rawValue, logprobs: logprobs)])
        out.append(contentsOf: CompletionEvents.dataPrefix)
        out.append(contentsOf: APIJSON.encode(chunk))
        out.append(contentsOf: CompletionEvents.blankLine)
    }
}
