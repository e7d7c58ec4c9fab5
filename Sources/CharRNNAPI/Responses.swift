// CharRNNAPI/Responses.swift — every JSON body `charrnn serve` sends, as Codable types: a completion,
// a streamed chunk (and the last, usage-only one), the model list, a score list, the health
// status. The Codable keys are the wire names (snake_case, as OpenAI spells them); a field that is
// null on the wire is encoded as an explicit null (never left out). `APIJSON.encode` is the one
// encoder: compact, keys sorted (so the bytes are reproducible and the hand-written stream events
// can equal them), `/` not escaped, numbers and escapes as the JSONSerialization output these types
// replace. To add or rename a field of the API, change it here (and in docs/openapi.yaml).

#if !CHARRNN_FUZZ
import CharRNN   // CheckpointSummary, EvalResult, FinishReason
#endif
import Foundation

/// The API's JSON encoder.
package enum APIJSON {
    /// Compact JSON of `value`, keys sorted (`/` unescaped; a non-finite number, which only a
    /// checkpoint summary can hold, as the string `info --json` writes: "nan", "inf", "-inf").
    package static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return Array(try e.encode(value)) } catch {
            // only reachable by a programming error in an encode(to:) of this file
            return APIError.internalError(error).json
        }
    }
}

// MARK: - Completions

/// `finish_reason` of a choice: the engine's reason; a choice with none yet has run to its length.
package func finishReasonName(_ f: FinishReason?) -> String { f?.rawValue ?? "length" }

/// Token counts of a completion.
package struct Usage: Codable, Sendable, Equatable {
    package var promptTokens: Int
    package var completionTokens: Int
    package var totalTokens: Int

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }

    package init(prompt: Int, completion: Int) {
        promptTokens = prompt; completionTokens = completion; totalTokens = prompt + completion
    }
}

/// One choice of a completion or of a streamed chunk. `finish_reason` is null in a chunk of a
/// choice still running; `logprobs` is null unless the request asked for them.
package struct CompletionChoice: Codable, Sendable, Equatable {
    package var index: Int
    package var text: String
    package var finishReason: String?
    package var logprobs: CompletionLogprobs? = nil

    enum CodingKeys: String, CodingKey { case index, text, finishReason = "finish_reason", logprobs }

    package init(index: Int, text: String, finishReason: String?, logprobs: CompletionLogprobs? = nil) {
        self.index = index; self.text = text; self.finishReason = finishReason; self.logprobs = logprobs
    }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        text = try c.decode(String.self, forKey: .text)
        finishReason = try c.decodeIfPresent(String.self, forKey: .finishReason)
        logprobs = try c.decodeIfPresent(CompletionLogprobs.self, forKey: .logprobs)
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        if let finishReason { try c.encode(finishReason, forKey: .finishReason) } else { try c.encodeNil(forKey: .finishReason) }
        if let logprobs { try c.encode(logprobs, forKey: .logprobs) } else { try c.encodeNil(forKey: .logprobs) }
    }
}

/// `choices[].logprobs` of OpenAI's completions: per token given out (the echoed prompt's first),
/// its text, its log p (null for the first prompt token), a map of the likeliest alternatives' text
/// to their log p (null for the first prompt token), and its offset in Unicode scalars from the start
/// of the choice's returned text (the echoed prompt included). In a streamed chunk, the tokens whose
/// text that chunk (or an earlier one) carried.
package struct CompletionLogprobs: Codable, Sendable, Equatable {
    package var tokens: [String] = []
    package var tokenLogprobs: [Float?] = []
    package var topLogprobs: [[String: Float]?] = []
    package var textOffset: [Int] = []

    enum CodingKeys: String, CodingKey {
        case tokens, tokenLogprobs = "token_logprobs", topLogprobs = "top_logprobs", textOffset = "text_offset"
    }

    package init() {}

    /// From the loop's entries, the texts taken from `vocabulary`.
    package init(_ entries: [TokenLogprob], vocabulary: Vocabulary) {
        for e in entries {
            tokens.append(vocabulary.text(of: e))
            textOffset.append(e.offset)
            if e.isScored {
                tokenLogprobs.append(e.logprob)
                var top: [String: Float] = [:]
                for (t, lp) in e.top { top[vocabulary.tokens[t]] = lp }
                topLogprobs.append(top)
            } else {
                tokenLogprobs.append(nil); topLogprobs.append(nil)
            }
        }
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(textOffset, forKey: .textOffset)
        var l = c.nestedUnkeyedContainer(forKey: .tokenLogprobs)
        for x in tokenLogprobs { if let x { try l.encode(x) } else { try l.encodeNil() } }
        try c.encode(tokens, forKey: .tokens)
        var t = c.nestedUnkeyedContainer(forKey: .topLogprobs)
        for x in topLogprobs { if let x { try t.encode(x) } else { try t.encodeNil() } }
    }
}

/// The response of a non-streaming POST /v1/completions.
package struct Completion: Codable, Sendable, Equatable {
    package var id: String
    package var object = "text_completion"
    package var created: Int
    package var model: String
    package var choices: [CompletionChoice]
    package var systemFingerprint: String
    /// The seed the request ran with (drawn at random when it gave none), so it can be repeated.
    package var seed: UInt64
    package var usage: Usage

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, systemFingerprint = "system_fingerprint", seed, usage
    }

    package init(id: String, created: Int, model: String, choices: [CompletionChoice], systemFingerprint: String, seed: UInt64, usage: Usage) {
        self.id = id; self.created = created; self.model = model; self.choices = choices
        self.systemFingerprint = systemFingerprint; self.seed = seed; self.usage = usage
    }
}

/// One server-sent event of a streaming completion: one choice's new text (and its finish reason
/// when it ended). `CompletionEvents` writes these bytes by hand, without allocating; its tests hold
/// it to this type's encoding.
package struct CompletionChunk: Codable, Sendable, Equatable {
    package var id: String
    package var object = "text_completion"
    package var created: Int
    package var model: String
    package var systemFingerprint: String
    package var choices: [CompletionChoice]

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, systemFingerprint = "system_fingerprint", choices
    }

    package init(id: String, created: Int, model: String, systemFingerprint: String, choices: [CompletionChoice]) {
        self.id = id; self.created = created; self.model = model; self.systemFingerprint = systemFingerprint; self.choices = choices
    }
}

/// The last event of a streaming completion before [DONE]: no choices, the usage.
package struct CompletionUsageChunk: Codable, Sendable, Equatable {
    package var id: String
    package var object = "text_completion"
    package var created: Int
    package var model: String
    package var choices: [CompletionChoice] = []
    package var usage: Usage

    package init(id: String, created: Int, model: String, usage: Usage) {
        self.id = id; self.created = created; self.model = model; self.usage = usage
    }
}

// MARK: - best_of and the returned choices

/// The choices of a non-streaming completion from the collected update: with `bestOf` K > n, the n
/// candidates of highest mean log p per generated character (`BestOf`), best first, re-indexed 0..<n;
/// otherwise choice i is row i. `logprobs` objects only when the request asked for them.
package func completionChoices(_ r: CompletionRequest, _ u: GenerationTicket.Update, vocabulary: Vocabulary) -> [CompletionChoice] {
    let K = r.candidates
    let picked = K > r.n && u.logprobs.count == K
        ? BestOf.pick(r.n, of: (0..<K).map { BestOf.meanLogprob(u.logprobs[$0], vocabulary: vocabulary) })
        : Array(0..<r.n)
    return picked.enumerated().map { k, i in
        CompletionChoice(index: k, text: String(decoding: u.text[i], as: UTF8.self), finishReason: finishReasonName(u.finish[i]),
                         logprobs: r.logprobs == nil ? nil : CompletionLogprobs(u.logprobs[i], vocabulary: vocabulary))
    }
}

// MARK: - Models

/// What a request may ask for at most (the `serve` flags), as /v1/models reports them.
package struct ServerLimits: Codable, Sendable, Equatable {
    package var maxStreams: Int
    package var maxTokens: Int
    package var maxPromptBytes: Int
    package var maxN: Int
    package var maxBodyBytes: Int

    enum CodingKeys: String, CodingKey {
        case maxStreams = "max_streams", maxTokens = "max_tokens", maxPromptBytes = "max_prompt_bytes", maxN = "max_n",
             maxBodyBytes = "max_body_bytes"
    }

    package init(maxStreams: Int, limits: RequestLimits, maxBodyBytes: Int) {
        self.maxStreams = maxStreams; maxTokens = limits.maxTokens; maxPromptBytes = limits.maxPromptBytes
        maxN = limits.maxChoices; self.maxBodyBytes = maxBodyBytes
    }
}

/// The model object of GET /v1/models and GET /v1/models/{id}.
package struct ModelObject: Codable, Sendable, Equatable {
    package var id: String
    package var object = "model"
    /// The checkpoint file's modification time, Unix seconds.
    package var created: Int
    package var ownedBy = "charrnn"
    /// `charrnn info --json` of the checkpoint.
    package var charrnn: CheckpointSummary
    /// `charrnn --version`.
    package var charrnnVersion: String
    package var limits: ServerLimits

    enum CodingKeys: String, CodingKey {
        case id, object, created, ownedBy = "owned_by", charrnn, charrnnVersion = "charrnn_version", limits
    }

    package init(id: String, created: Int, summary: CheckpointSummary, version: String, limits: ServerLimits) {
        self.id = id; self.created = created; charrnn = summary; charrnnVersion = version; self.limits = limits
    }
}

/// GET /v1/models.
package struct ModelList: Codable, Sendable, Equatable {
    package var object = "list"
    package var data: [ModelObject]
    package init(data: [ModelObject]) { self.data = data }
}

// MARK: - Score

/// One text's score in POST /v1/score: `charrnn eval --json`'s numbers under the API's names; the
/// three rates are null when nothing was scored (fewer than two known tokens).
package struct ScoreResult: Codable, Sendable, Equatable {
    package var index: Int
    package var tokens: Int
    package var unknown: Int
    package var scored: Int
    package var natsPerToken: Double?
    package var bitsPerCharacter: Double?
    package var perplexity: Double?

    enum CodingKeys: String, CodingKey {
        case index, tokens, unknown, scored, natsPerToken = "nats_per_token", bitsPerCharacter = "bits_per_character", perplexity
    }

    package init(index: Int, result e: EvalResult) {
        func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }
        self.index = index; tokens = e.tokens; unknown = e.unknown; scored = e.scored
        natsPerToken = finite(e.loss); bitsPerCharacter = finite(e.bitsPerToken); perplexity = finite(e.perplexity)
    }

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index); tokens = try c.decode(Int.self, forKey: .tokens)
        unknown = try c.decode(Int.self, forKey: .unknown); scored = try c.decode(Int.self, forKey: .scored)
        natsPerToken = try c.decodeIfPresent(Double.self, forKey: .natsPerToken)
        bitsPerCharacter = try c.decodeIfPresent(Double.self, forKey: .bitsPerCharacter)
        perplexity = try c.decodeIfPresent(Double.self, forKey: .perplexity)
    }

    package func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(tokens, forKey: .tokens)
        try c.encode(unknown, forKey: .unknown); try c.encode(scored, forKey: .scored)
        for (v, k) in [(natsPerToken, CodingKeys.natsPerToken), (bitsPerCharacter, .bitsPerCharacter), (perplexity, .perplexity)] {
            if let v { try c.encode(v, forKey: k) } else { try c.encodeNil(forKey: k) }
        }
    }
}

/// POST /v1/score.
package struct ScoreList: Codable, Sendable, Equatable {
    package var object = "list"
    package var model: String
    package var data: [ScoreResult]
    package init(model: String, data: [ScoreResult]) { self.model = model; self.data = data }
}

// MARK: - Health

/// GET /health (status 503 while shutting down).
package struct HealthStatus: Codable, Sendable, Equatable {
    /// "ok" or "shutting_down".
    package var status: String
    package var model: String
    package var activeStreams: Int
    package var queued: Int
    package var maxStreams: Int
    /// Batched steps run since start.
    package var steps: Int

    enum CodingKeys: String, CodingKey {
        case status, model, activeStreams = "active_streams", queued, maxStreams = "max_streams", steps
    }

    package init(shuttingDown: Bool, model: String, activeStreams: Int, queued: Int, maxStreams: Int, steps: Int) {
        status = shuttingDown ? "shutting_down" : "ok"; self.model = model
        self.activeStreams = activeStreams; self.queued = queued; self.maxStreams = maxStreams; self.steps = steps
    }
}
