// CharRNNServer/Server.swift — the HTTP layer of `charrnn serve` on Hummingbird 2.
//
// Routes: GET / (the web page), GET /health, GET /v1/models, POST /v1/completions (OpenAI completions,
// with server-sent events when `stream` is true), POST /v1/score. The model runs only on the
// BatchEngine's thread; handlers submit tickets and await their text (completions) or queue a job
// (score). Limits: the body is read up to `maxBodyBytes` (413 beyond), `max_tokens`, prompt size and
// `n` are checked by the library's decoder (400), a full engine queue answers 429 with Retry-After,
// a shutting-down engine 503. A client that closes (or half-closes) its connection cancels its
// ticket, streaming or not (`DisconnectMonitor`; a failed write does the same), so its rows are free
// before the next step. A streaming client that reads too slowly overflows
// the ticket's bounded buffer and is dropped. Idle connections (also one that never finishes its
// headers) are closed after `idleTimeout`; so is one whose body does not arrive within `bodyTimeout`.
// Every request logs one line to standard error: time, method, path, status, tokens, ms.
// Shutdown (SIGINT/SIGTERM): the engine stops taking requests, running streams get `shutdownGrace`
// seconds to finish and are then cut; then the HTTP server closes its connections and exits.

import CharRNN
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// What `charrnn serve` was asked for.
public struct ServeConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var maxStreams = 64
    /// Requests waiting for rows beyond the running ones.
    public var queueLimit = 64
    public var limits = RequestLimits()
    public var maxBodyBytes = 1 << 20
    /// Bytes of generated text a streaming client may lag behind before it is dropped.
    public var streamBufferBytes = 1 << 16
    public var idleTimeout: Double = 30
    public var bodyTimeout: Double = 30
    public var shutdownGrace: Double = 5
    /// Least seconds between batched steps (0 = as fast as possible); see `BatchEngine.stepInterval`.
    public var stepInterval: Double = 0
    /// Precision of the packed weights the engine streams (`--weights`; scoring stays exact fp32).
    public var weights: WeightPrecision = .fp32
    public init() {}
}

/// The loaded model and what the API says about it.
public struct ServedModel: Sendable {
    /// The id clients pass as `model` (also accepted: "charrnn", or no model at all).
    public var id: String
    /// The checkpoint file.
    public var path: String
    /// `charrnn info --json` of the checkpoint, as a JSON object.
    public var info: [UInt8]
    /// `charrnn --version`.
    public var version: String
    public var created: Int
    public init(id: String, path: String, info: [UInt8], version: String, created: Int) {
        self.id = id; self.path = path; self.info = info; self.version = version; self.created = created
    }
}

/// Per-request figures for the log line, filled by the handlers.
final class RequestStats: @unchecked Sendable {
    private let lock = NSLock()
    private var _tokens = 0
    var tokens: Int {
        get { lock.withLock { _tokens } }
        set { lock.withLock { _tokens = newValue } }
    }
}

struct ServeContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let stats = RequestStats()
    /// The connection (for the body timeout).
    let channel: any Channel
    init(source: ApplicationRequestContextSource) { coreContext = .init(source: source); channel = source.channel }
}

/// `charrnn serve`: the engine and the HTTP application around it.
public final class CompletionServer: Sendable {
    public let configuration: ServeConfiguration
    public let model: ServedModel
    let engine: BatchEngine
    let vocabulary: Vocabulary
    let normalize: Normalization
    let evaluator: EngineThreadOnly<Evaluator>   // scoring runs as an engine job, never concurrently
    let modelInfo: String   // the model object of /v1/models, JSON

    /// Loads the model once for generation (the engine) and once for scoring (as `charrnn eval`).
    public init(checkpoint: Checkpoint.Loaded, model: ServedModel, configuration: ServeConfiguration) throws {
        self.configuration = configuration
        self.model = model
        let m = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: m)
        m.inferencePrecision = configuration.weights
        vocabulary = checkpoint.meta.vocabulary
        normalize = checkpoint.meta.train.normalize
        engine = BatchEngine(model: m, vocabulary: vocabulary, maxStreams: configuration.maxStreams, queueLimit: configuration.queueLimit)
        engine.stepInterval = configuration.stepInterval
        evaluator = EngineThreadOnly(try Evaluator(checkpoint: checkpoint))
        let info = (try? JSONSerialization.jsonObject(with: Data(model.info))) ?? [:]
        let object: [String: Any] = [
            "id": model.id, "object": "model", "created": model.created, "owned_by": "charrnn",
            "charrnn": info, "charrnn_version": model.version,
            "limits": ["max_streams": configuration.maxStreams, "max_tokens": configuration.limits.maxTokens,
                       "max_prompt_bytes": configuration.limits.maxPromptBytes, "max_n": configuration.limits.maxChoices,
                       "max_body_bytes": configuration.maxBodyBytes],
        ]
        modelInfo = String(decoding: json(object), as: UTF8.self)
    }

    /// Serves until SIGINT/SIGTERM. `onListening` gets the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        engine.start()
        let router = Router(context: ServeContext.self)
        router.add(middleware: LogAndErrorMiddleware())
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                     body: .init(byteBuffer: ByteBuffer(string: webPage)))
        }
        router.get("/health") { [self] _, _ in health() }
        router.get("/v1/models") { [self] _, _ in
            jsonResponse(.ok, Array(#"{"object":"list","data":["#.utf8) + Array(modelInfo.utf8) + Array("]}".utf8))
        }
        router.get("/v1/models/:id") { [self] _, context in
            guard context.parameters.get("id") == model.id else {
                throw APIError(status: 404, message: "model '\(context.parameters.get("id") ?? "")' not found; this server serves '\(model.id)'",
                               param: "model", code: "model_not_found")
            }
            return jsonResponse(.ok, Array(modelInfo.utf8))
        }
        router.post("/v1/completions") { [self] request, context in try await completions(request, context) }
        router.post("/v1/score") { [self] request, context in try await score(request, context) }

        var logger = Logger(label: "charrnn.serve")
        logger.logLevel = .error
        let app = Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [DisconnectMonitor()],
                                                idleTimeout: .milliseconds(Int64(configuration.idleTimeout * 1000)))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "charrnn/\(model.version)",
                                 backlog: 256),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        // The engine is listed after the app, so on a signal it shuts down first (services stop in
        // reverse order): streams end within the grace time, then the HTTP server drains and closes.
        let group = ServiceGroup(configuration: .init(
            services: [app, EngineService(engine: engine, grace: configuration.shutdownGrace)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    // MARK: - Handlers

    func health() -> Response {
        let shutting = engine.isShuttingDown
        let o: [String: Any] = ["status": shutting ? "shutting_down" : "ok", "model": model.id,
                                "active_streams": engine.active, "queued": engine.queued, "max_streams": engine.maxStreams,
                                "steps": engine.steps]
        return jsonResponse(shutting ? .serviceUnavailable : .ok, json(o))
    }

    func checkModel(_ name: String?) throws(APIError) {
        if let name, name != model.id, name != "charrnn" {
            throw APIError(status: 404, message: "model '\(name)' not found; this server serves '\(model.id)'", param: "model",
                           code: "model_not_found")
        }
    }

    func completions(_ request: Request, _ context: ServeContext) async throws -> Response {
        let body = try await readBody(request, context)
        let r = try CompletionRequest(body: body, limits: configuration.limits)
        try checkModel(r.model)
        let (ids, unknown) = vocabulary.encode(r.prompt, normalize: normalize)
        if ids.isEmpty && !unknown.isEmpty {
            throw APIError.invalid("prompt has no character in the model's vocabulary: " + unknown.prefix(10).map { $0.debugDescription }.joined(separator: " "),
                                   param: "prompt", code: "unknown_characters")
        }
        let seed = r.seed ?? UInt64.random(in: 0...UInt64.max)
        let ticket = GenerationTicket(GenerationRequest(prompt: ids, choices: r.n, seed: seed, options: r.options,
                                                        maxTokens: r.maxTokens, stop: r.stop),
                                      bufferLimit: configuration.streamBufferBytes)
        do { try engine.submit(ticket) } catch {
            switch error {
            case .queueFull:
                throw APIError(status: 429, message: error.description, type: "rate_limit_error", code: "server_busy")
            case .shuttingDown:
                throw APIError(status: 503, message: error.description, type: "server_error", code: "shutting_down")
            case .tooManyChoices:
                throw APIError.invalid(error.description, param: "n")
            case .tokenOutOfRange:
                throw APIError(status: 500, message: error.description, type: "server_error")
            }
        }
        // A client that goes away (closes or half-closes its connection) cancels the ticket: its
        // rows are free before the next step, streaming or not.
        let monitor = try? await context.channel.pipeline.handler(type: DisconnectMonitor.self).get()
        monitor?.watch { ticket.cancel() }
        let id = "cmpl-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let created = Int(Date().timeIntervalSince1970)
        let promptTokens = ids.count
        let stats = context.stats
        if !r.stream {
            let u = await withTaskCancellationHandler { await ticket.collect() } onCancel: { ticket.cancel() }
            monitor?.unwatch()
            if u.finish.contains(.shutdown) && u.completionTokens.allSatisfy({ $0 == 0 }) {
                throw APIError(status: 503, message: "the server shut down before this request ran", type: "server_error", code: "shutting_down")
            }
            let completion = u.completionTokens.reduce(0, +)
            stats.tokens = completion
            let choices: [[String: Any]] = (0..<r.n).map { i in
                ["index": i, "text": String(decoding: u.text[i], as: UTF8.self), "finish_reason": finishName(u.finish[i]), "logprobs": NSNull()]
            }
            let o: [String: Any] = ["id": id, "object": "text_completion", "created": created, "model": model.id, "choices": choices,
                                    "system_fingerprint": "charrnn-\(model.version)", "seed": seed,
                                    "usage": ["prompt_tokens": promptTokens, "completion_tokens": completion,
                                              "total_tokens": promptTokens + completion]]
            return jsonResponse(.ok, json(o))
        }
        // Server-sent events: one event per choice with text released since the writer last ran (one
        // token when the stream keeps up; several when the writer was late), a last event per choice
        // with its finish_reason, then one with usage and [DONE]. The events are formatted by hand
        // into one reused buffer; the text is taken into a reused update (no allocation per take).
        let modelID = model.id, fingerprint = "charrnn-\(model.version)"
        let events = CompletionEvents(id: id, created: created, model: modelID, fingerprint: fingerprint)
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            var reported = [Bool](repeating: false, count: r.n)
            var u = ticket.makeUpdate()
            var out = [UInt8]()
            out.reserveCapacity(4096)   // grows to the largest write once, then keeps its capacity
            var buffer = ByteBufferAllocator().buffer(capacity: 4096)
            do {
                while true {
                    await withTaskCancellationHandler { await ticket.next(into: &u) } onCancel: { ticket.cancel() }
                    out.removeAll(keepingCapacity: true)
                    for i in 0..<r.n {
                        let f = u.finish[i]
                        if u.text[i].isEmpty && (f == nil || reported[i]) { continue }
                        if f != nil { reported[i] = true }
                        events.append(index: i, text: u.text[i], finish: f, to: &out)
                    }
                    let done = u.isDone
                    if done {
                        let completion = u.completionTokens.reduce(0, +)
                        stats.tokens = completion
                        let usage: [String: Any] = ["id": id, "object": "text_completion", "created": created, "model": modelID,
                                                    "choices": [Any](),
                                                    "usage": ["prompt_tokens": promptTokens, "completion_tokens": completion,
                                                              "total_tokens": promptTokens + completion]]
                        if u.finish.contains(.overflow) {
                            out += Array("data: ".utf8) + APIError(status: 500, message: "the client read too slowly; the stream was dropped",
                                                                   type: "server_error", code: "stream_overflow").json + Array("\n\n".utf8)
                        }
                        out += Array("data: ".utf8) + json(usage) + Array("\n\ndata: [DONE]\n\n".utf8)
                    }
                    if !out.isEmpty {
                        // clear() reuses the storage once NIO has let go of it (else it takes a new one)
                        buffer.clear()
                        buffer.writeBytes(out)
                        try await writer.write(buffer)
                    }
                    if done { break }
                }
                monitor?.unwatch()
                try await writer.finish(nil)
            } catch {
                ticket.cancel()   // the client went away: its rows are free before the next step
                stats.tokens = ticket.progress.completionTokens.reduce(0, +)
                throw error
            }
        })
    }

    func score(_ request: Request, _ context: ServeContext) async throws -> Response {
        let body = try await readBody(request, context)
        let r = try ScoreRequest(body: body, limits: configuration.limits)
        try checkModel(r.model)
        let evaluator = self.evaluator
        // Exactly `charrnn eval FILE`: each text goes through the same file reader and evaluator.
        let results = await engine.run { () -> [Result<EvalResult, APIError>] in
            r.input.enumerated().map { (i, text) -> Result<EvalResult, APIError> in
                let path = NSTemporaryDirectory() + "/charrnn-score-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).txt"
                defer { unlink(path) }
                guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
                    return .failure(APIError(status: 500, message: "cannot write a scratch file", type: "server_error"))
                }
                do { return .success(try evaluator.value.evaluate(path: path)) } catch {
                    return .failure(.invalid("input[\(i)]: \(String(describing: error).replacingOccurrences(of: path, with: "text"))", param: "input"))
                }
            }
        }
        guard let results else {
            throw APIError(status: 503, message: "the server is busy or shutting down", type: "server_error", code: "server_busy")
        }
        var data: [[String: Any]] = []
        for (i, res) in results.enumerated() {
            let e = try res.get()
            func num(_ x: Double) -> Any { x.isFinite ? x : NSNull() }
            data.append(["index": i, "tokens": e.tokens, "unknown": e.unknown, "scored": e.scored, "nats_per_token": num(e.loss),
                         "bits_per_character": num(e.bitsPerToken), "perplexity": num(e.perplexity)])
            context.stats.tokens += e.tokens
        }
        return jsonResponse(.ok, json(["object": "list", "model": model.id, "data": data]))
    }

    /// The request body, at most `maxBodyBytes` (413 beyond); a body that has not arrived within
    /// `bodyTimeout` closes the connection. (An event-loop timer, cancelled at once when the body is
    /// in: a sleeping child task per request would hold its timer, and memory, for the whole timeout.)
    func readBody(_ request: Request, _ context: ServeContext) async throws -> [UInt8] {
        let cap = configuration.maxBodyBytes
        if let l = request.headers[.contentLength].flatMap({ Int($0) }), l > cap {
            throw APIError(status: 413, message: "the request body is \(l) bytes; the limit is \(cap)", code: "body_too_large")
        }
        let channel = context.channel
        let timer = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(configuration.bodyTimeout * 1000))) {
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do { return Array(buffer: try await request.body.collect(upTo: cap)) } catch is NIOTooManyBytesError {
            throw APIError(status: 413, message: "the request body is larger than the limit of \(cap) bytes", code: "body_too_large")
        }
    }
}

/// Tells a waiting completion that its client has gone: the connection's input ended (the server
/// allows remote half-closure, so a client's close() arrives as `inputClosed`, not as a closed
/// channel) or the channel closed. One per connection, after the HTTP codec; the handler of the
/// request in progress registers what to do (`watch`), at once if the client is already gone.
final class DisconnectMonitor: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    private let lock = NSLock()
    private var gone = false
    private var onGone: (@Sendable () -> Void)?

    /// Runs `body` once when the client goes (now, if it has); replaces an earlier watch.
    func watch(_ body: @escaping @Sendable () -> Void) {
        let now = lock.withLock { () -> Bool in
            if gone { return true }
            onGone = body
            return false
        }
        if now { body() }
    }

    /// Stops watching (the response is complete).
    func unwatch() { lock.withLock { onGone = nil } }

    private func fire() {
        let body = lock.withLock { () -> (@Sendable () -> Void)? in
            gone = true
            defer { onGone = nil }
            return onGone
        }
        body?()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .some(.inputClosed) { fire() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fire()
        context.fireChannelInactive()
    }
}

/// A value used only on the engine thread (through `BatchEngine.run`), which serialises every use.
final class EngineThreadOnly<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Stops the engine first on a signal (see `CompletionServer.run`).
struct EngineService: Service {
    let engine: BatchEngine
    let grace: Double
    func run() async throws {
        try? await gracefulShutdown()
        engine.shutdown(grace: grace)
        let e = engine
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread { e.waitUntilStopped(); c.resume() }
        }
    }
}

/// Turns every error into OpenAI's error object and logs one line per request (after the body,
/// for streams, so tokens and time are the whole request's).
struct LogAndErrorMiddleware: RouterMiddleware {
    typealias Context = ServeContext
    func handle(_ request: Request, context: ServeContext, next: (Request, ServeContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let method = request.method.rawValue, path = request.uri.path
        let stats = context.stats
        var response: Response
        do {
            response = try await next(request, context)
        } catch let e as APIError {
            response = errorResponse(e)
        } catch let e as HTTPResponseError {
            let status = Int(e.status.code)
            let type = status == 404 || status == 405 ? "invalid_request_error" : status >= 500 ? "server_error" : "invalid_request_error"
            let message = status == 404 ? "no route \(method) \(path)" : status == 405 ? "\(method) is not allowed on \(path)"
                : status == 413 ? "the request body is too large" : "HTTP \(status): \(e.status.reasonPhrase)"
            response = errorResponse(APIError(status: status, message: message, type: type, code: status == 404 ? "not_found" : nil))
        } catch {
            response = errorResponse(APIError(status: 500, message: "internal error: \(error)", type: "server_error"))
        }
        let status = response.status.code
        let body = response.body
        response.body = ResponseBody { writer in
            defer { logLine(method, path, status, stats.tokens, start) }
            try await body.write(writer)
        }
        return response
    }
}

func logLine(_ method: String, _ path: String, _ status: Int, _ tokens: Int, _ start: ContinuousClock.Instant) {
    let ms = Double((ContinuousClock.now - start).components.attoseconds) / 1e15 + Double((ContinuousClock.now - start).components.seconds) * 1000
    let time = ISO8601DateFormatter().string(from: Date())
    let line = "\(time) \(method) \(path) \(status) tokens=\(tokens) ms=\(String(format: "%.1f", ms))\n"
    FileHandle.standardError.write(Data(line.utf8))
}

func errorResponse(_ e: APIError) -> Response {
    var headers: HTTPFields = [.contentType: "application/json"]
    if e.status == 429 { headers[.retryAfter] = "1" }
    return Response(status: .init(code: e.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: e.json)))
}

func jsonResponse(_ status: HTTPResponse.Status, _ bytes: [UInt8]) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

func json(_ o: Any) -> [UInt8] {
    Array((try? JSONSerialization.data(withJSONObject: o, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8))
}

func finishName(_ f: FinishReason?) -> String { f?.rawValue ?? "length" }
