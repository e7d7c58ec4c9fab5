// CharRNNAPI/APIError.swift — every error the API returns, in OpenAI's shape:
// `{"error":{"code":C,"message":M,"param":P,"type":T}}` (keys sorted, by `APIJSON`: the bytes clients
// have always received; a missing param or code is null) with its HTTP status, which is not part of the
// body. The named constructors below are the API's whole error vocabulary (status, type and code
// per situation), so the HTTP layer only picks one.

#if !CHARRNN_FUZZ
import CharRNN   // BatchEngine.Refusal
#endif

/// An error in OpenAI's shape plus the HTTP status it is sent with.
package struct APIError: Error, Sendable, Equatable, CustomStringConvertible, Encodable {
    package var status: Int
    package var message: String
    package var type: String
    package var param: String?
    package var code: String?

    package init(status: Int, message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
        self.status = status; self.message = message; self.type = type; self.param = param; self.code = code
    }

    package var description: String { message }

    /// The response body.
    package var json: [UInt8] { APIJSON.encode(self) }

    private enum Outer: String, CodingKey { case error }
    private enum Inner: String, CodingKey { case code, message, param, type }

    package func encode(to encoder: Encoder) throws {
        var outer = encoder.container(keyedBy: Outer.self)
        var c = outer.nestedContainer(keyedBy: Inner.self, forKey: .error)
        if let code { try c.encode(code, forKey: .code) } else { try c.encodeNil(forKey: .code) }
        try c.encode(message, forKey: .message)
        if let param { try c.encode(param, forKey: .param) } else { try c.encodeNil(forKey: .param) }
        try c.encode(type, forKey: .type)
    }

    // MARK: - The vocabulary

    /// 400: a request field (or the body, `param` nil) is wrong.
    package static func invalid(_ message: String, param: String?, code: String? = "invalid_value") -> APIError {
        APIError(status: 400, message: message, param: param, code: code)
    }

    /// 404: a request names a model this server does not serve.
    package static func modelNotFound(_ name: String, served: String) -> APIError {
        APIError(status: 404, message: "model '\(name)' not found; this server serves '\(served)'", param: "model", code: "model_not_found")
    }

    /// 400: a prompt none of whose characters the model knows (`unknown`: the first few).
    package static func unknownCharacters(_ unknown: [String]) -> APIError {
        .invalid("prompt has no character in the model's vocabulary: " + unknown.prefix(10).map { $0.debugDescription }.joined(separator: " "),
                 param: "prompt", code: "unknown_characters")
    }

    /// What the engine's refusal of a request means to a client: 429 (queue full, with Retry-After),
    /// 503 (shutting down), 400 (`n` over the rows), 500.
    package init(_ refusal: BatchEngine.Refusal) {
        switch refusal {
        case .queueFull: self.init(status: 429, message: refusal.description, type: "rate_limit_error", code: "server_busy")
        case .shuttingDown: self.init(status: 503, message: refusal.description, type: "server_error", code: "shutting_down")
        case .tooManyChoices: self = .invalid(refusal.description, param: "n")
        case .tokenOutOfRange: self.init(status: 500, message: refusal.description, type: "server_error")
        }
    }

    /// 503: the server stopped before a (non-streaming) request produced anything.
    package static let shutDownBeforeRunning = APIError(status: 503, message: "the server shut down before this request ran",
                                                       type: "server_error", code: "shutting_down")

    /// 503: a scoring job could not be queued.
    package static let busy = APIError(status: 503, message: "the server is busy or shutting down", type: "server_error", code: "server_busy")

    /// Sent in the stream (status 500) before [DONE] when the client read too slowly and was dropped.
    package static let streamOverflow = APIError(status: 500, message: "the client read too slowly; the stream was dropped",
                                                type: "server_error", code: "stream_overflow")

    /// 413: the body is (`length` known) or grew larger than `limit` bytes.
    package static func bodyTooLarge(length: Int?, limit: Int) -> APIError {
        APIError(status: 413, message: length.map { "the request body is \($0) bytes; the limit is \(limit)" }
                    ?? "the request body is larger than the limit of \(limit) bytes", code: "body_too_large")
    }

    /// 400: the request body is not well-formed HTTP (a bad chunk size, …); the answer closes the
    /// connection, which cannot be read further.
    package static func malformedBody(_ detail: String) -> APIError {
        .invalid("the request body is malformed HTTP (\(detail))", param: nil, code: "malformed_body")
    }

    /// An HTTP-level failure (no route, wrong method, …) with its status and reason phrase.
    package static func http(status: Int, reason: String, method: String, path: String) -> APIError {
        let type = status >= 500 && status != 404 && status != 405 ? "server_error" : "invalid_request_error"
        let message = status == 404 ? "no route \(method) \(path)" : status == 405 ? "\(method) is not allowed on \(path)"
            : status == 413 ? "the request body is too large" : "HTTP \(status): \(reason)"
        return APIError(status: status, message: message, type: type, code: status == 404 ? "not_found" : nil)
    }

    /// 500: anything else.
    package static func internalError(_ error: any Error) -> APIError {
        APIError(status: 500, message: "internal error: \(error)", type: "server_error")
    }
}
