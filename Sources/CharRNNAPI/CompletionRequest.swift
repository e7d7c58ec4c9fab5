// CharRNNAPI/CompletionRequest.swift — the request bodies of `charrnn serve` (OpenAI completions
// shape, plus /v1/score) and the limits they are checked against, decoded without any HTTP: the
// server, its tests and the `request` fuzz target share this decoder.
//
// Decoding: the body must be UTF-8 JSON (`JSONParser`: linear time, nesting at most 64 deep, no
// lone surrogates or duplicate keys) whose top level is an object. Fields are checked one by one
// with the exact JSON type (a number is never read as a bool or string, an integer field rejects
// 1.5 and 1e30); null means "not given"; unknown fields are ignored (OpenAI clients send fields
// such as `user`). Every failure is an `APIError` with HTTP status 400 and
// a one-line message naming the field (`param`).

#if !CHARRNN_FUZZ
import CharRNN   // SamplingOptions (the fuzz build compiles the library and this target as one module)
#endif
import Foundation

/// A JSON value with its exact type (read by `JSONParser`).
package enum JSONValue: Sendable, Equatable {
    case null, bool(Bool), int(Int64), uint(UInt64), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    /// The JSON type's name, for messages.
    package var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .uint, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Decodes a request body: UTF-8 JSON with an object at the top.
    package static func object(from body: [UInt8]) throws(APIError) -> [String: JSONValue] {
        if body.isEmpty { throw .invalid("the request body is empty; expected a JSON object", param: nil, code: "invalid_json") }
        if String(validating: body, as: UTF8.self) == nil {
            let at = firstInvalidUTF8(body)
            throw .invalid("the request body is not valid UTF-8 (byte \(at))", param: nil, code: "invalid_json")
        }
        let v = try JSONParser.parse(body)
        guard case let .object(o) = v else {
            throw .invalid("the request body must be a JSON object, not \(v.typeName == "array" ? "an" : "a") \(v.typeName)", param: nil, code: "invalid_json")
        }
        return o
    }

    /// Offset of the first byte that does not start a valid UTF-8 scalar.
    static func firstInvalidUTF8(_ b: [UInt8]) -> Int {
        var parser = Unicode.UTF8.ForwardParser()
        var it = b.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &it) {
            case let .valid(s): offset += s.count
            case .error: return offset
            case .emptyInput: return offset
            }
        }
    }
}

/// Server limits that a request is checked against.
package struct RequestLimits: Sendable {
    /// Largest `max_tokens`.
    package var maxTokens: Int
    /// Largest prompt, in UTF-8 bytes.
    package var maxPromptBytes: Int
    /// Largest `n`.
    package var maxChoices: Int
    /// Stop strings per request, and bytes per stop string.
    package var maxStops = 4, maxStopBytes = 256
    /// Texts per /v1/score request.
    package var maxScoreInputs = 64

    package init(maxTokens: Int = 4096, maxPromptBytes: Int = 65536, maxChoices: Int = 16) {
        self.maxTokens = maxTokens; self.maxPromptBytes = maxPromptBytes; self.maxChoices = maxChoices
    }
}

/// A checked `POST /v1/completions` body.
package struct CompletionRequest: Sendable, Equatable {
    package var model: String?
    package var prompt: String
    package var maxTokens: Int
    package var temperature: Float
    package var topP: Float
    package var topK: Int
    package var n: Int
    package var seed: UInt64?
    package var stop: [String]
    package var stream: Bool
    // logprobs, echo, best_of (see `decodeScoring`)
    /// nil, or each token's log p with this many (0...5) likeliest alternatives.
    package var logprobs: Int? = nil
    /// The prompt is returned (and, with `logprobs`, scored) before each completion.
    package var echo = false
    /// Candidates drawn per returned choice set: the `n` best of `bestOf` (≥ n) by mean log p per character.
    package var bestOf: Int? = nil
    // penalties and bias (Penalties.swift; decoded at the end of this file)
    package var frequencyPenalty: Float
    package var presencePenalty: Float
    package var repetitionPenalty: Float
    package var repeatWindow: Int
    /// `logit_bias` as sent: key → bias; the keys are resolved against the vocabulary by `samplingOptions`.
    package var logitBias: [String: Float]

    /// Defaults where the body is silent: 16 tokens (OpenAI's), temperature 0.8 (charrnn sample's),
    /// top_p 1, top_k 0 (off), n 1, a random seed, no stop strings, no streaming.
    package static let defaultMaxTokens = 16
    package static let defaultTemperature: Float = 0.8

    package var options: SamplingOptions { withPenalties(SamplingOptions(temperature: temperature, topK: topK, topP: topP)) }

    /// Decodes and checks a body.
    /// - Throws: `APIError` (status 400) saying which field is wrong and why.
    package init(body: [UInt8], limits: RequestLimits) throws(APIError) {
        let o = try JSONValue.object(from: body)
        var f = Fields(o)
        model = try f.string("model")
        prompt = try f.prompt()
        if prompt.utf8.count > limits.maxPromptBytes {
            throw .invalid("prompt is \(prompt.utf8.count) bytes; the limit is \(limits.maxPromptBytes)", param: "prompt", code: "prompt_too_long")
        }
        maxTokens = try f.int("max_tokens", in: 0...limits.maxTokens) ?? min(Self.defaultMaxTokens, limits.maxTokens)
        temperature = Float(try f.double("temperature", in: 0...100) ?? Double(Self.defaultTemperature))
        let p = try f.double("top_p", in: 0...1) ?? 1
        if p <= 0 { throw .invalid("top_p must be in (0, 1], got \(p)", param: "top_p") }
        topP = Float(p)
        topK = try f.int("top_k", in: 0...Int(Int32.max)) ?? 0
        n = try f.int("n", in: 1...limits.maxChoices) ?? 1
        seed = try f.seed("seed")
        stop = try f.stop("stop", limits: limits)
        stream = try f.bool("stream") ?? false
        (frequencyPenalty, presencePenalty, repetitionPenalty, repeatWindow, logitBias) = try f.penalties()
        try decodeScoring(&f, limits: limits)   // a mutating method: after every stored field is set
    }

    /// `logprobs` (integer 0...5), `echo` (boolean), `best_of` (integer n...max n; not with `stream`), as
    /// OpenAI's completions endpoint defines them.
    private mutating func decodeScoring(_ f: inout Fields, limits: RequestLimits) throws(APIError) {
        logprobs = try f.int("logprobs", in: 0...TokenLogprob.maxTop)
        echo = try f.bool("echo") ?? false
        bestOf = try f.int("best_of", in: 1...limits.maxChoices)
        if let b = bestOf {
            if b < n { throw .invalid("best_of must be at least n (\(n)), got \(b)", param: "best_of") }
            if stream && b > 1 { throw .invalid("best_of cannot be used with stream", param: "best_of") }
        }
    }

    /// Rows each choice set needs: `best_of` when given, else `n`.
    package var candidates: Int { bestOf ?? n }

    /// What the engine records: the requested `logprobs`, or 0 alternatives when only best_of needs log p.
    package var engineLogprobs: Int? { logprobs ?? (candidates > n ? 0 : nil) }
}

/// A checked `POST /v1/score` body: `{"input": "text" | ["text", …]}`.
package struct ScoreRequest: Sendable, Equatable {
    package var model: String?
    package var input: [String]

    package init(body: [UInt8], limits: RequestLimits) throws(APIError) {
        let o = try JSONValue.object(from: body)
        var f = Fields(o)
        model = try f.string("model")
        switch o["input"] ?? .null {
        case .null: throw .invalid("input is required: a string or a list of strings", param: "input", code: "missing_field")
        case let .string(s): input = [s]
        case let .array(a):
            if a.isEmpty || a.count > limits.maxScoreInputs {
                throw .invalid("input must hold 1 to \(limits.maxScoreInputs) strings, got \(a.count)", param: "input")
            }
            var out: [String] = []
            for (i, v) in a.enumerated() {
                guard case let .string(s) = v else { throw .invalid("input[\(i)] must be a string, not a \(v.typeName)", param: "input", code: "invalid_type") }
                out.append(s)
            }
            input = out
        case let v: throw .invalid("input must be a string or a list of strings, not a \(v.typeName)", param: "input", code: "invalid_type")
        }
    }
}

/// Typed access to a body's fields.
private struct Fields {
    let o: [String: JSONValue]
    init(_ o: [String: JSONValue]) { self.o = o }

    func value(_ k: String) -> JSONValue? {
        guard let v = o[k], v != .null else { return nil }
        return v
    }

    func type(_ k: String, _ want: String, _ v: JSONValue) -> APIError {
        .invalid("\(k) must be \(want), not a \(v.typeName)", param: k, code: "invalid_type")
    }

    mutating func string(_ k: String) throws(APIError) -> String? {
        guard let v = value(k) else { return nil }
        guard case let .string(s) = v else { throw type(k, "a string", v) }
        return s
    }

    mutating func bool(_ k: String) throws(APIError) -> Bool? {
        guard let v = value(k) else { return nil }
        guard case let .bool(b) = v else { throw type(k, "a boolean", v) }
        return b
    }

    mutating func int(_ k: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let v = value(k) else { return nil }
        let n: Int?
        switch v {
        case let .int(i): n = Int(exactly: i)
        case let .uint(u): n = Int(exactly: u)
        case let .double(d): n = d.isFinite && d == d.rounded() && abs(d) < 1e15 ? Int(d) : nil
            if n == nil { throw .invalid("\(k) must be an integer in \(range.lowerBound)...\(range.upperBound), got \(d)", param: k) }
        default: throw type(k, "an integer", v)
        }
        guard let n, range.contains(n) else {
            throw .invalid("\(k) must be an integer in \(range.lowerBound)...\(range.upperBound)\(n.map { ", got \($0)" } ?? "")", param: k)
        }
        return n
    }

    mutating func double(_ k: String, in range: ClosedRange<Double>) throws(APIError) -> Double? {
        guard let v = value(k) else { return nil }
        let d: Double
        switch v {
        case let .int(i): d = Double(i)
        case let .uint(u): d = Double(u)
        case let .double(x): d = x
        default: throw type(k, "a number", v)
        }
        guard d.isFinite, range.contains(d) else {
            throw .invalid("\(k) must be a number in \(range.lowerBound)...\(range.upperBound), got \(d)", param: k)
        }
        return d
    }

    mutating func seed(_ k: String) throws(APIError) -> UInt64? {
        guard let v = value(k) else { return nil }
        switch v {
        case let .int(i) where i >= 0: return UInt64(i)
        case let .uint(u): return u
        case let .double(d) where d.isFinite && d >= 0 && d == d.rounded() && d < 18446744073709551616.0: return UInt64(d)
        case .int, .double: throw .invalid("seed must be an integer in 0...18446744073709551615", param: k)
        default: throw type(k, "an integer", v)
        }
    }

    mutating func prompt() throws(APIError) -> String {
        guard let v = value("prompt") else { return "" }
        switch v {
        case let .string(s): return s
        case let .array(a):
            if a.isEmpty { return "" }
            guard a.count == 1, case let .string(s) = a[0] else {
                throw .invalid("prompt must be a string or a list of one string (send one request per prompt)", param: "prompt",
                              code: "invalid_type")
            }
            return s
        default: throw type("prompt", "a string", v)
        }
    }

    mutating func stop(_ k: String, limits: RequestLimits) throws(APIError) -> [String] {
        guard let v = value(k) else { return [] }
        var list: [String]
        switch v {
        case let .string(s): list = [s]
        case let .array(a):
            list = []
            for (i, e) in a.enumerated() {
                guard case let .string(s) = e else { throw .invalid("stop[\(i)] must be a string, not a \(e.typeName)", param: k, code: "invalid_type") }
                list.append(s)
            }
        default: throw type(k, "a string or a list of strings", v)
        }
        if list.count > limits.maxStops { throw .invalid("stop holds \(list.count) strings; at most \(limits.maxStops) are allowed", param: k) }
        for s in list where s.isEmpty || s.utf8.count > limits.maxStopBytes {
            throw .invalid("each stop string must be 1 to \(limits.maxStopBytes) bytes, got \(s.utf8.count)", param: k)
        }
        return list
    }
}

// MARK: - Penalties and logit bias

extension CompletionRequest {
    /// `o` with the request's penalties (not the bias: its keys need the vocabulary).
    func withPenalties(_ o: SamplingOptions) -> SamplingOptions {
        var o = o
        o.frequencyPenalty = frequencyPenalty; o.presencePenalty = presencePenalty
        o.repetitionPenalty = repetitionPenalty; o.repeatWindow = repeatWindow
        return o
    }

    /// The request's sampling options with `logit_bias` resolved against `vocabulary`: a key is one
    /// token of the vocabulary (normalized as the prompt is) or, failing that, a token id in decimal
    /// (`LogitBias.token`).
    /// - Throws: `APIError` (400, param `logit_bias`) for a key that names no token, the unknown
    ///   token, two keys naming one token, or a bias that bans every token.
    package func samplingOptions(vocabulary: Vocabulary, normalize: Normalization) throws(APIError) -> SamplingOptions {
        var o = options
        guard !logitBias.isEmpty else { return o }
        let pairs = logitBias.keys.sorted().map { (key: $0, bias: logitBias[$0]!) }
        do { o.logitBias = try LogitBias.resolve(pairs, vocabulary: vocabulary, normalize: normalize) } catch {
            throw .invalid("logit_bias: \(error)", param: "logit_bias")
        }
        return o
    }
}

extension Fields {
    /// frequency_penalty and presence_penalty (−2…2, OpenAI's), repetition_penalty ((0, 100], 1 = off)
    /// and repeat_window (≥ 0, 0 = all generated) — extensions —, and logit_bias (an object of
    /// numbers in −100…100; its keys are checked against the vocabulary later).
    mutating func penalties() throws(APIError) -> (Float, Float, Float, Int, [String: Float]) {
        let fp = Float(try double("frequency_penalty", in: -2...2) ?? 0)
        let pp = Float(try double("presence_penalty", in: -2...2) ?? 0)
        let rp = try double("repetition_penalty", in: 0...100) ?? 1
        if rp <= 0 { throw .invalid("repetition_penalty must be in (0, 100], got \(rp)", param: "repetition_penalty") }
        let window = try int("repeat_window", in: 0...Int(Int32.max)) ?? 0
        var bias: [String: Float] = [:]
        if let v = value("logit_bias") {
            guard case let .object(o) = v else { throw type("logit_bias", "an object of token → bias", v) }
            for k in o.keys.sorted() {
                let b: Double
                switch o[k]! {
                case let .int(i): b = Double(i)
                case let .uint(u): b = Double(u)
                case let .double(d): b = d
                case let e: throw .invalid("logit_bias[\(k.debugDescription)] must be a number, not a \(e.typeName)", param: "logit_bias", code: "invalid_type")
                }
                guard b >= -100 && b <= 100 else {
                    throw .invalid("logit_bias[\(k.debugDescription)] must be a number in -100...100, got \(b)", param: "logit_bias")
                }
                bias[k] = Float(b)
            }
        }
        return (fp, pp, Float(rp), window, bias)
    }
}
