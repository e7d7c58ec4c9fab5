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
// A request with `logprobs` has its events formatted by hand too (the section at the end): the same
// object as `APIJSON` gives for the chunk, equal to it as JSON (tests), its numbers in Swift's
// shortest round-trip form.

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
        appendChoiceStart(index: index, finish: finish, to: &out)
        out.append(contentsOf: CompletionEvents.textKey)
        JSONWriter.appendString(text, to: &out)
        out.append(contentsOf: tail)
    }

    /// `data: {"choices":[{"finish_reason":R,"index":I` — what every event of a choice starts with.
    private func appendChoiceStart(index: Int, finish: FinishReason?, to out: inout [UInt8]) {
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
// With `logprobs`, an event carries the chunk's `logprobs` object too, formatted here (an encoder run
// per event cost more server CPU than the generation step it reports on): keys sorted as `APIJSON`
// sorts them (`text_offset`, `token_logprobs`, `tokens`, `top_logprobs`; an alternative map's keys
// by their text), a first prompt token's log p and alternatives as null, a non-finite number as the
// string `APIJSON` writes ("-inf", "inf", "nan").

extension CompletionEvents {
    /// Appends the event of choice `index` carrying `text`, its finish reason and the logprobs of
    /// its tokens (`entries`, texts from `vocabulary`).
    package func append(index: Int, text: [UInt8], finish: FinishReason?, entries: [TokenLogprob], vocabulary: Vocabulary,
                        to out: inout [UInt8]) {
        appendChoiceStart(index: index, finish: finish, to: &out)
        out.append(contentsOf: CompletionEvents.logprobsKey)
        CompletionEvents.appendLogprobs(entries, vocabulary: vocabulary, to: &out)
        out.append(contentsOf: CompletionEvents.textAfterLogprobsKey)
        JSONWriter.appendString(text, to: &out)
        out.append(contentsOf: tail)
    }

    /// The `logprobs` object of `entries` (see the section header).
    package static func appendLogprobs(_ entries: [TokenLogprob], vocabulary: Vocabulary, to out: inout [UInt8]) {
        out.append(contentsOf: offsetKey)
        for (k, e) in entries.enumerated() {
            if k > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendInteger(e.offset, to: &out)
        }
        out.append(contentsOf: logprobKey)
        for (k, e) in entries.enumerated() {
            if k > 0 { out.append(UInt8(ascii: ",")) }
            if e.isScored { appendNumber(e.logprob, to: &out) } else { out.append(contentsOf: null) }
        }
        out.append(contentsOf: tokensKey)
        for (k, e) in entries.enumerated() {
            if k > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(vocabulary.text(of: e), to: &out)
        }
        out.append(contentsOf: topKey)
        for (k, e) in entries.enumerated() {
            if k > 0 { out.append(UInt8(ascii: ",")) }
            guard e.isScored else { out.append(contentsOf: null); continue }
            // at most five alternatives: their keys sorted by a few comparisons
            var order = Array(0..<Int(e.topCount))
            order.sort { vocabulary.tokens[Int(e.topTokens[$0])] < vocabulary.tokens[Int(e.topTokens[$1])] }
            out.append(UInt8(ascii: "{"))
            for (j, a) in order.enumerated() {
                if j > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(vocabulary.tokens[Int(e.topTokens[a])], to: &out)
                out.append(UInt8(ascii: ":"))
                appendNumber(e.topLogprobs[a], to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: closeLogprobs)
    }

    /// A float as JSON: Swift's shortest round-trip digits; non-finite as `APIJSON`'s strings.
    static func appendNumber(_ x: Float, to out: inout [UInt8]) {
        if x.isFinite {
            out.append(contentsOf: x.description.utf8)
        } else {
            out.append(contentsOf: Array((x.isNaN ? "\"nan\"" : x < 0 ? "\"-inf\"" : "\"inf\"").utf8))
        }
    }

    static let offsetKey = Array("{\"text_offset\":[".utf8)
    static let logprobKey = Array("],\"token_logprobs\":[".utf8)
    static let tokensKey = Array("],\"tokens\":[".utf8)
    static let topKey = Array("],\"top_logprobs\":[".utf8)
    static let closeLogprobs = Array("]}".utf8)
    static let logprobsKey = Array(",\"logprobs\":".utf8)
    static let textAfterLogprobsKey = Array(",\"text\":".utf8)

    /// Appends the event of choice `index` carrying `text`, its finish reason and `logprobs`, through
    /// `APIJSON` (the reference the hand-formatted event is tested against).
    package func append(index: Int, text: [UInt8], finish: FinishReason?, logprobs: CompletionLogprobs, to out: inout [UInt8]) {
        let chunk = CompletionChunk(id: id, created: created, model: model, systemFingerprint: fingerprint,
                                    choices: [CompletionChoice(index: index, text: String(decoding: text, as: UTF8.self),
                                                               finishReason: finish?.rawValue, logprobs: logprobs)])
        out.append(contentsOf: CompletionEvents.dataPrefix)
        out.append(contentsOf: APIJSON.encode(chunk))
        out.append(contentsOf: CompletionEvents.blankLine)
    }
}
