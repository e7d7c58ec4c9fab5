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
public enum APIJSON {
    /// Compact JSON of `value`, keys sorted (`/` unescaped; a non-finite number, which only a
    /// checkpoint summary can hold, as the string `info --json` writes: "nan", "inf", "-inf").
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
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
public func finishReasonName(_ f: FinishReason?) -> String { f?.rawValue ?? "length" }

/// Token counts of a completion.
public struct Usage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }

    public init(prompt: Int, completion: Int) {
        promptTokens = prompt; completionTokens = completion; totalTokens = prompt + completion
    }
}

/// One choice of a completion or of a streamed chunk. `finish_reason` is null in a chunk of a
/// choice still running; `logprobs` is always null.
public struct CompletionChoice: Codable, Sendable, Equatable {
    public var index: Int
    public var text: String
    public var finishReason: String?

    enum CodingKeys: String, CodingKey { case index, text, finishReason = "finish_reason", logprobs }

    public init(index: Int, text: String, finishReason: String?) {
        self.index = index; self.text = text; self.finishReason = finishReason
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        text = try c.decode(String.self, forKey: .text)
        finishReason = try c.decodeIfPresent(String.self, forKey: .finishReason)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        if let finishReason { try c.encode(finishReason, forKey: .finishReason) } else { try c.encodeNil(forKey: .finishReason) }
        try c.encodeNil(forKey: .logprobs)
    }
}

/// The response of a non-streaming POST /v1/completions.
public struct Completion: Codable, Sendable, Equatable {
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [CompletionChoice]
    public var systemFingerprint: String
    /// The seed the request ran with (drawn at random when it gave none), so it can be repeated.
    public var seed: UInt64
    public var usage: Usage

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, systemFingerprint = "system_fingerprint", seed, usage
    }

    public init(id: String, created: Int, model: String, choices: [CompletionChoice], systemFingerprint: String, seed: UInt64, usage: Usage) {
        self.id = id; self.created = created; self.model = model; self.choices = choices
        self.systemFingerprint = systemFingerprint; self.seed = seed; self.usage = usage
    }
}

/// One server-sent event of a streaming completion: one choice's new text (and its finish reason
/// when it ended). `CompletionEvents` writes these bytes by hand, without allocating; its tests hold
/// it to this type's encoding.
public struct CompletionChunk: Codable, Sendable, Equatable {
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var systemFingerprint: String
    public var choices: [CompletionChoice]

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, systemFingerprint = "system_fingerprint", choices
    }

    public init(id: String, created: Int, model: String, systemFingerprint: String, choices: [CompletionChoice]) {
        self.id = id; self.created = created; self.model = model; self.systemFingerprint = systemFingerprint; self.choices = choices
    }
}

/// The last event of a streaming completion before [DONE]: no choices, the usage.
public struct CompletionUsageChunk: Codable, Sendable, Equatable {
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [CompletionChoice] = []
    public var usage: Usage

    public init(id: String, created: Int, model: String, usage: Usage) {
        self.id = id; self.created = created; self.model = model; self.usage = usage
    }
}

// MARK: - Models

/// What a request may ask for at most (the `serve` flags), as /v1/models reports them.
public struct ServerLimits: Codable, Sendable, Equatable {
    public var maxStreams: Int
    public var maxTokens: Int
    public var maxPromptBytes: Int
    public var maxN: Int
    public var maxBodyBytes: Int

    enum CodingKeys: String, CodingKey {
        case maxStreams = "max_streams", maxTokens = "max_tokens", maxPromptBytes = "max_prompt_bytes", maxN = "max_n",
             maxBodyBytes = "max_body_bytes"
    }

    public init(maxStreams: Int, limits: RequestLimits, maxBodyBytes: Int) {
        self.maxStreams = maxStreams; maxTokens = limits.maxTokens; maxPromptBytes = limits.maxPromptBytes
        maxN = limits.maxChoices; self.maxBodyBytes = maxBodyBytes
    }
}

/// The model object of GET /v1/models and GET /v1/models/{id}.
public struct ModelObject: Codable, Sendable, Equatable {
    public var id: String
    public var object = "model"
    /// The checkpoint file's modification time, Unix seconds.
    public var created: Int
    public var ownedBy = "charrnn"
    /// `charrnn info --json` of the checkpoint.
    public var charrnn: CheckpointSummary
    /// `charrnn --version`.
    public var charrnnVersion: String
    public var limits: ServerLimits

    enum CodingKeys: String, CodingKey {
        case id, object, created, ownedBy = "owned_by", charrnn, charrnnVersion = "charrnn_version", limits
    }

    public init(id: String, created: Int, summary: CheckpointSummary, version: String, limits: ServerLimits) {
        self.id = id; self.created = created; charrnn = summary; charrnnVersion = version; self.limits = limits
    }
}

/// GET /v1/models.
public struct ModelList: Codable, Sendable, Equatable {
    public var object = "list"
    public var data: [ModelObject]
    public init(data: [ModelObject]) { self.data = data }
}

// MARK: - Score

/// One text's score in POST /v1/score: `charrnn eval --json`'s numbers under the API's names; the
/// three rates are null when nothing was scored (fewer than two known tokens).
public struct ScoreResult: Codable, Sendable, Equatable {
    public var index: Int
    public var tokens: Int
    public var unknown: Int
    public var scored: Int
    public var natsPerToken: Double?
    public var bitsPerCharacter: Double?
    public var perplexity: Double?

    enum CodingKeys: String, CodingKey {
        case index, tokens, unknown, scored, natsPerToken = "nats_per_token", bitsPerCharacter = "bits_per_character", perplexity
    }

    public init(index: Int, result e: EvalResult) {
        func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }
        self.index = index; tokens = e.tokens; unknown = e.unknown; scored = e.scored
        natsPerToken = finite(e.loss); bitsPerCharacter = finite(e.bitsPerToken); perplexity = finite(e.perplexity)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index); tokens = try c.decode(Int.self, forKey: .tokens)
        unknown = try c.decode(Int.self, forKey: .unknown); scored = try c.decode(Int.self, forKey: .scored)
        natsPerToken = try c.decodeIfPresent(Double.self, forKey: .natsPerToken)
        bitsPerCharacter = try c.decodeIfPresent(Double.self, forKey: .bitsPerCharacter)
        perplexity = try c.decodeIfPresent(Double.self, forKey: .perplexity)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(tokens, forKey: .tokens)
        try c.encode(unknown, forKey: .unknown); try c.encode(scored, forKey: .scored)
        for (v, k) in [(natsPerToken, CodingKeys.natsPerToken), (bitsPerCharacter, .bitsPerCharacter), (perplexity, .perplexity)] {
            if let v { try c.encode(v, forKey: k) } else { try c.encodeNil(forKey: k) }
        }
    }
}

/// POST /v1/score.
public struct ScoreList: Codable, Sendable, Equatable {
    public var object = "list"
    public var model: String
    public var data: [ScoreResult]
    public init(model: String, data: [ScoreResult]) { self.model = model; self.data = data }
}

// MARK: - Health

/// GET /health (status 503 while shutting down).
public struct HealthStatus: Codable, Sendable, Equatable {
    /// "ok" or "shutting_down".
    public var status: String
    public var model: String
    public var activeStreams: Int
    public var queued: Int
    public var maxStreams: Int
    /// Batched steps run since start.
    public var steps: Int

    enum CodingKeys: String, CodingKey {
        case status, model, activeStreams = "active_streams", queued, maxStreams = "max_streams", steps
    }

    public init(shuttingDown: Bool, model: String, activeStreams: Int, queued: Int, maxStreams: Int, steps: Int) {
        status = shuttingDown ? "shutting_down" : "ok"; self.model = model
        self.activeStreams = activeStreams; self.queued = queued; self.maxStreams = maxStreams; self.steps = steps
    }
}
