// CharRNNServer/Server.swift — the HTTP layer of `charrnn serve` on Hummingbird 2.
//
// Routes (`makeRouter`): GET / (the web page), GET /health, GET /v1/models, GET /v1/models/{id}
// (percent-decoded), POST /v1/completions (OpenAI completions, with server-sent events when `stream`
// is true), POST /v1/score, GET /favicon.ico (204). GET routes answer HEAD too; another method on a
// route is 405 with `Allow`. HTTP/1.0, `Expect: 100-continue` and closing after a malformed body
// are HTTP1Conformance's. What goes over
// the wire — request decoding, limits, the error object, every response body and streamed event — is
// the CharRNNAPI target's; this file is the HTTP around it. The checkpoint is loaded once (by the
// caller) and its model built once: the engine generates with it, the evaluator copies its weights.
// The model runs only on the BatchEngine's thread; handlers submit tickets and await their text
// (completions) or queue a text's scoring a slice at a time (score), generation steps running
// between the slices.
// Limits: the body is read up to `maxBodyBytes` (413 beyond), `max_tokens`, prompt size and
// `n` are checked by the library's decoder (400), a full engine queue answers 429 with Retry-After,
// a shutting-down engine 503. A client that closes (or half-closes) its connection cancels its
// ticket, streaming or not (`DisconnectMonitor`; a failed write does the same), so its rows are free
// before the next step. A streaming client that reads too slowly overflows
// the ticket's bounded buffer and is dropped. Idle connections (also one that never finishes its
// headers) are closed after `idleTimeout`; so is one whose body does not arrive within `bodyTimeout`.
// Open connections stay below the descriptor limit (`ConnectionLimit`: the oldest idle one is
// closed to make room), so the server stays reachable however many connections clients hold.
// Every request logs one line to standard error: time, method, path, status, tokens, ms, and
// "client-gone" when the client left before its response was written whole (AccessLogEntry).
// Shutdown (SIGINT/SIGTERM): the engine stops taking requests, running streams get `shutdownGrace`
// seconds to finish and are then cut; then the HTTP server closes its connections and exits.

import CharRNN
import CharRNNAPI
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1   // HTTPParserError
import ServiceLifecycle

/// What `charrnn serve` was asked for.
package struct ServeConfiguration: Sendable {
    package var host = "127.0.0.1"
    package var port = 8080
    package var maxStreams = 64
    /// Requests waiting for rows beyond the running ones.
    package var queueLimit = 64
    package var limits = RequestLimits()
    package var maxBodyBytes = 1 << 20
    /// Bytes of generated text a streaming client may lag behind before it is dropped.
    package var streamBufferBytes = 1 << 16
    package var idleTimeout: Double = 30
    package var bodyTimeout: Double = 30
    package var shutdownGrace: Double = 5
    /// Least seconds between batched steps (0 = as fast as possible); see `BatchEngine.stepInterval`.
    package var stepInterval: Double = 0
    /// Precision of the packed weights the engine streams (`--weights`; scoring stays exact fp32).
    package var weights: WeightPrecision = .fp32
    /// Predictions /v1/score scores per engine job; a generation step runs between two jobs.
    package var scoreSlice = 4096
    package init() {}
}

/// The loaded model and what the API says about it.
package struct ServedModel: Sendable {
    /// The id clients pass as `model` (also accepted: "charrnn", or no model at all).
    package var id: String
    /// The checkpoint file.
    package var path: String
    /// `charrnn info` of the checkpoint.
    package var summary: CheckpointSummary
    /// `charrnn --version`.
    package var version: String
    package var created: Int
    package init(id: String, path: String, summary: CheckpointSummary, version: String, created: Int) {
        self.id = id; self.path = path; self.summary = summary; self.version = version; self.created = created
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
package final class CompletionServer: Sendable {
    package let configuration: ServeConfiguration
    package let model: ServedModel
    let engine: BatchEngine
    let vocabulary: Vocabulary
    let normalize: Normalization
    let evaluator: EngineThreadOnly<Evaluator>   // scoring runs as an engine job, never concurrently
    /// The model object of /v1/models.
    let modelObject: ModelObject
    /// Open connections against the descriptor limit (ConnectionLimit.swift).
    let connectionLimit = ConnectionLimit()

    /// Builds the model once from the loaded checkpoint (checking its tensors): the engine generates
    /// with it, the evaluator scores with a copy of its weights.
    package init(checkpoint: Checkpoint.Loaded, model: ServedModel, configuration: ServeConfiguration) throws {
        self.configuration = configuration
        self.model = model
        let m = CharRNNModel(config: checkpoint.meta.model, maxT: 1, maxB: 1)
        try Checkpoint.restore(checkpoint, model: m)
        m.inferencePrecision = configuration.weights
        vocabulary = checkpoint.meta.vocabulary
        normalize = checkpoint.meta.train.normalize
        engine = BatchEngine(model: m, vocabulary: vocabulary, maxStreams: configuration.maxStreams, queueLimit: configuration.queueLimit)
        engine.stepInterval = configuration.stepInterval
        evaluator = EngineThreadOnly(Evaluator(model: m, vocabulary: vocabulary, normalize: normalize))
        modelObject = ModelObject(id: model.id, created: model.created, summary: model.summary, version: model.version,
                                  limits: ServerLimits(maxStreams: configuration.maxStreams, limits: configuration.limits,
                                                       maxBodyBytes: configuration.maxBodyBytes))
    }

    /// The routes, their handlers and the error/log middleware (see the file header). The engine must
    /// be started (`run` does it) for completions and scores to be answered.
    func makeRouter() -> Router<ServeContext> {
        let router = Router(context: ServeContext.self)
        router.add(middleware: LogAndErrorMiddleware())
        /// GET and HEAD (the same response without its body) on `path`.
        func get(_ path: RouterPath, _ handler: @escaping @Sendable (Request, ServeContext) async throws -> Response) {
            router.get(path, use: handler)
            router.head(path) { request, context in try await handler(request, context).createHeadResponse() }
        }
        get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                     body: .init(byteBuffer: ByteBuffer(string: webPage)))
        }
        // browsers ask for it whatever the page says: no icon, and nothing to log as an error
        get("/favicon.ico") { _, _ in Response(status: .noContent, headers: [.cacheControl: "max-age=86400"]) }
        get("/health") { [self] _, _ in health() }
        get("/v1/models") { [self] _, _ in jsonResponse(.ok, ModelList(data: [modelObject])) }
        get("/v1/models/:id") { [self] _, context in
            let raw = context.parameters.get("id") ?? ""
            let id = raw.removingPercentEncoding ?? raw
            guard id == model.id else { throw APIError.modelNotFound(id, served: model.id) }
            return jsonResponse(.ok, modelObject)
        }
        router.post("/v1/completions") { [self] request, context in try await completions(request, context) }
        router.post("/v1/score") { [self] request, context in try await score(request, context) }
        return router
    }

    /// The routes `makeRouter` adds and their methods (GET routes also answer HEAD), for the 405
    /// answer to another method on one of them, with `Allow`. (HTTPBehaviourTests holds the two equal.)
    static let routes: [(path: String, methods: [HTTPRequest.Method])] = [
        ("/", [.get, .head]), ("/favicon.ico", [.get, .head]), ("/health", [.get, .head]), ("/v1/models", [.get, .head]),
        ("/v1/models/:id", [.get, .head]), ("/v1/completions", [.post]), ("/v1/score", [.post]),
    ]

    /// The methods `path` is served with, nil when no route has that path.
    static func allowedMethods(path: String) -> [HTTPRequest.Method]? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        return routes.first { route in
            let pattern = route.path.split(separator: "/", omittingEmptySubsequences: true)
            return pattern.count == parts.count && zip(pattern, parts).allSatisfy { $0.hasPrefix(":") || $0 == $1 }
        }?.methods
    }

    /// Serves until SIGINT/SIGTERM. `onListening` gets the bound port (useful with port 0).
    package func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        engine.start()
        var logger = Logger(label: "charrnn.serve")
        logger.logLevel = .error
        let maxBody = configuration.maxBodyBytes
        let limit = connectionLimit
        let app = Application(
            router: makeRouter(),
            server: .http1(configuration: .init(additionalChannelHandlers: [DisconnectMonitor(),
                                                                            HTTP1Conformance.Installer(maxBody: maxBody),
                                                                            ConnectionLimit.Slot(limit)],
                                                idleTimeout: .milliseconds(Int64(configuration.idleTimeout * 1000)))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "charrnn/\(model.version)",
                                 backlog: 256),
            onServerRunning: { channel in
                // measured now that the event loops and the listening socket hold their descriptors
                limit.cap = ConnectionLimit.measuredCap()
                onListening(channel.localAddress?.port ?? 0)
            },
            logger: logger)
        // The engine is listed after the app, so on a signal it shuts down first (services stop in
        // reverse order): streams end within the grace time, then the HTTP server drains and closes.
        let group = ServiceGroup(configuration: .init(
            services: [app, EngineService(engine: engine, grace: configuration.shutdownGrace)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do { try await group.run() } catch let e as IOError {
            throw ListenError(host: configuration.host, port: configuration.port, errno: e.errnoCode)
        }
    }

    // MARK: - Handlers

    func health() -> Response {
        let shutting = engine.isShuttingDown
        return jsonResponse(shutting ? .serviceUnavailable : .ok,
                            HealthStatus(shuttingDown: shutting, model: model.id, activeStreams: engine.active, queued: engine.queued,
                                         maxStreams: engine.maxStreams, steps: engine.steps))
    }

    func checkModel(_ name: String?) throws(APIError) {
        if let name, name != model.id, name != "charrnn" { throw .modelNotFound(name, served: model.id) }
    }

    func completions(_ request: Request, _ context: ServeContext) async throws -> Response {
        let body = try await readBody(request, context)
        let r = try CompletionRequest(body: body, limits: configuration.limits)
        try checkModel(r.model)
        let (ids, unknown) = vocabulary.encode(r.prompt, normalize: normalize)
        if ids.isEmpty && !unknown.isEmpty { throw APIError.unknownCharacters(unknown) }
        let seed = r.seed ?? UInt64.random(in: 0...UInt64.max)
        let options = try r.samplingOptions(vocabulary: vocabulary, normalize: normalize)   // logit_bias keys → tokens
        var g = GenerationRequest(prompt: ids, choices: r.candidates, seed: seed, options: options, maxTokens: r.maxTokens, stop: r.stop)
        g.logprobs = r.engineLogprobs; g.echo = r.echo
        let ticket = GenerationTicket(g, bufferLimit: configuration.streamBufferBytes)
        do { try engine.submit(ticket) } catch { throw APIError(error) }
        // A client that goes away (closes or half-closes its connection) cancels the ticket: its
        // rows are free before the next step, streaming or not.
        let monitor = try? await context.channel.pipeline.handler(type: DisconnectMonitor.self).get()
        monitor?.watch { ticket.cancel() }
        let id = "cmpl-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let created = Int(Date().timeIntervalSince1970)
        let promptTokens = ids.count
        let stats = context.stats
        let fingerprint = "charrnn-\(model.version)"
        if !r.stream {
            let u = await withTaskCancellationHandler { await ticket.collect() } onCancel: { ticket.cancel() }
            monitor?.unwatch()
            if u.finish.contains(.shutdown) && u.completionTokens.allSatisfy({ $0 == 0 }) { throw APIError.shutDownBeforeRunning }
            let completion = u.completionTokens.reduce(0, +)
            stats.tokens = completion
            let choices = completionChoices(r, u, vocabulary: vocabulary)   // best_of picks here
            return jsonResponse(.ok, Completion(id: id, created: created, model: model.id, choices: choices, systemFingerprint: fingerprint,
                                                seed: seed, usage: Usage(prompt: promptTokens, completion: completion)))
        }
        // Server-sent events: one event per choice with text released since the writer last ran (one
        // token when the stream keeps up; several when the writer was late), a last event per choice
        // with its finish_reason, then one with usage and [DONE] (CompletionEvents). The first event
        // also carries the seed (`addSeed`), as the non-streamed response does. The events go
        // into one reused buffer; the text is taken into a reused update (no allocation per take).
        let events = CompletionEvents(id: id, created: created, model: model.id, fingerprint: fingerprint)
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            var reported = [Bool](repeating: false, count: r.n)
            var u = ticket.makeUpdate()
            var out = [UInt8]()
            out.reserveCapacity(4096)   // grows to the largest write once, then keeps its capacity
            var buffer = ByteBufferAllocator().buffer(capacity: 4096)
            var seedSent = false
            do {
                while true {
                    await withTaskCancellationHandler { await ticket.next(into: &u) } onCancel: { ticket.cancel() }
                    out.removeAll(keepingCapacity: true)
                    for i in 0..<r.n {
                        let f = u.finish[i]
                        if u.text[i].isEmpty && (u.logprobs.isEmpty || u.logprobs[i].isEmpty) && (f == nil || reported[i]) { continue }
                        if f != nil { reported[i] = true }
                        if r.logprobs != nil {
                            events.append(index: i, text: u.text[i], finish: f, entries: u.logprobs[i], vocabulary: self.vocabulary, to: &out)
                        } else {
                            events.append(index: i, text: u.text[i], finish: f, to: &out)
                        }
                    }
                    let done = u.isDone
                    if done {
                        let completion = u.completionTokens.reduce(0, +)
                        stats.tokens = completion
                        events.appendEnd(usage: Usage(prompt: promptTokens, completion: completion),
                                         overflowed: u.finish.contains(.overflow), to: &out)
                    }
                    if !out.isEmpty && !seedSent {
                        addSeed(seed, toFirstEventIn: &out)
                        seedSent = true
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
        let evaluator = self.evaluator, engine = self.engine
        // A client that goes away stops the scoring at the next slice.
        let monitor = try? await context.channel.pipeline.handler(type: DisconnectMonitor.self).get()
        let gone = ClientGone()
        monitor?.watch { gone.set() }
        defer { monitor?.unwatch() }
        // Exactly `charrnn eval FILE` on a file holding the text, in memory (no file is written).
        // Each text is tokenized here, off the engine thread; then it is scored on the engine
        // thread `scoreSlice` predictions per engine job, and a generation step runs between two
        // jobs, so a long text does not hold up the streams.
        var data: [ScoreResult] = []
        for (i, text) in r.input.enumerated() {
            var text = text
            let enc: EncodedText
            do {
                enc = try text.withUTF8 { (u) throws(TextError) in try vocabulary.encode(bytes: u, name: "input[\(i)]", normalize: normalize) }
            } catch { throw APIError.invalid("input[\(i)]: \(error)", param: "input") }
            let begun = await engine.run { () -> Result<ScoringJob, APIError> in
                do { return .success(try evaluator.value.begin(enc, name: "input[\(i)]")) } catch {
                    return .failure(.invalid("input[\(i)]: \(error)", param: "input"))
                }
            }
            guard let begun else { throw APIError.busy }
            let job = try begun.get()
            guard let e = await Self.scoreInSlices(job, evaluator: evaluator, slice: configuration.scoreSlice,
                                                   stop: { gone.value }, run: { await engine.run($0) }) else {
                if gone.value { throw CancellationError() }
                throw APIError.busy
            }
            data.append(ScoreResult(index: i, result: e))
            context.stats.tokens += e.tokens
        }
        return jsonResponse(.ok, ScoreList(model: model.id, data: data))
    }

    /// Scores `job` a slice at a time: one engine job (`run`, i.e. `BatchEngine.run`) of `slice`
    /// predictions after another, so the engine runs a generation step between two slices.
    /// - Returns: the score; nil when a job was refused (the engine is shutting down or its job
    ///   queue is full) or `stop` became true between two slices.
    static func scoreInSlices(_ job: ScoringJob, evaluator: EngineThreadOnly<Evaluator>, slice: Int, stop: () -> Bool = { false },
                              run: (@escaping @Sendable () -> Bool) async -> Bool?) async -> EvalResult? {
        while true {
            guard let done = await run({ evaluator.value.advance(job, predictions: slice) }) else { return nil }
            if done { return job.result }
            if stop() { return nil }
        }
    }

    /// The request body, at most `maxBodyBytes` (413 beyond); a body that has not arrived within
    /// `bodyTimeout` closes the connection. (An event-loop timer, cancelled at once when the body is
    /// in: a sleeping child task per request would hold its timer, and memory, for the whole timeout.)
    func readBody(_ request: Request, _ context: ServeContext) async throws -> [UInt8] {
        let cap = configuration.maxBodyBytes
        if let l = request.headers[.contentLength].flatMap({ Int($0) }), l > cap {
            throw APIError.bodyTooLarge(length: l, limit: cap)
        }
        let channel = context.channel
        let timer = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(configuration.bodyTimeout * 1000))) {
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do { return Array(buffer: try await request.body.collect(upTo: cap)) } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(length: nil, limit: cap)
        } catch let e as HTTPParserError {
            // a malformed chunked body (bad chunk size, …): the client's fault; the connection
            // cannot be read further, so the answer closes it
            throw APIError.malformedBody(String(describing: e))
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

/// Adds `"seed":N` (an extension: the seed the request runs with) to the first event of `events`
/// (`data: {…}` then a blank line; the JSON holds no raw newline, so the first blank line ends it).
func addSeed(_ seed: UInt64, toFirstEventIn events: inout [UInt8]) {
    var i = 0
    while i + 1 < events.count && !(events[i] == 0x0A && events[i + 1] == 0x0A) { i += 1 }
    guard i + 1 < events.count, i > 0, events[i - 1] == UInt8(ascii: "}") else { return }
    events.insert(contentsOf: Array(",\"seed\":\(seed)".utf8), at: i - 1)
}

/// The server could not listen (bind or listen failed), in one line without NIO's function names.
package struct ListenError: Error, CustomStringConvertible {
    package let host: String, port: Int, errno: Int32
    package var description: String {
        let reason = String(cString: strerror(errno))
        switch errno {
        case EADDRINUSE: return "port \(port) is in use (\(reason)): another server listens on \(host):\(port); stop it, or choose --port (0 = any free port)"
        case EACCES: return "cannot listen on port \(port) (\(reason)): ports below 1024 need privileges; choose --port 1024 or above"
        case EADDRNOTAVAIL: return "cannot listen on \(host) (\(reason)): it is not an address of this machine; see --host"
        default: return "cannot listen on \(host):\(port) (\(reason))"
        }
    }
}

/// Set once the client of a request has gone (by `DisconnectMonitor`), read by its handler.
final class ClientGone: @unchecked Sendable {
    private let lock = NSLock()
    private var gone = false
    var value: Bool { lock.withLock { gone } }
    func set() { lock.withLock { gone = true } }
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
            if e.status == .notFound, let allowed = CompletionServer.allowedMethods(path: path) {
                // a route that exists, with another method
                response = errorResponse(.http(status: 405, reason: "Method Not Allowed", method: method, path: path))
                response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
            } else {
                response = errorResponse(.http(status: Int(e.status.code), reason: e.status.reasonPhrase, method: method, path: path))
            }
        } catch {
            response = errorResponse(.internalError(error))
        }
        let body = response.body
        let entry = AccessLogEntry(method: method, path: path, status: response.status.code, stats: stats, start: start)
        // the same length, so that a response with a known length keeps its Content-Length
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            do { try await body.write(writer) } catch {
                entry.write(clientGone: true)
                throw error
            }
            entry.write(clientGone: false)
        }
        return response
    }
}

/// The access-log line of one request, written once: when its response has been written, or
/// when writing it failed because the client went away (reset, closed) — also when that happened
/// before the body started, so that Hummingbird drops the response without running its body
/// (then the line is written when the response is released).
final class AccessLogEntry: @unchecked Sendable {
    let method: String, path: String, status: Int, stats: RequestStats, start: ContinuousClock.Instant
    private let lock = NSLock()
    private var written = false

    init(method: String, path: String, status: Int, stats: RequestStats, start: ContinuousClock.Instant) {
        self.method = method; self.path = path; self.status = status; self.stats = stats; self.start = start
    }

    func write(clientGone: Bool) {
        guard lock.withLock({ () -> Bool in defer { written = true }; return !written }) else { return }
        logLine(method, path, status, stats.tokens, start, note: clientGone ? " client-gone" : "")
    }

    deinit { if !written { logLine(method, path, status, stats.tokens, start, note: " client-gone") } }
}

/// `TIME METHOD PATH STATUS tokens=N ms=T[ client-gone]` on standard error (client-gone: the
/// response could not be written whole, the client had gone).
func logLine(_ method: String, _ path: String, _ status: Int, _ tokens: Int, _ start: ContinuousClock.Instant, note: String = "") {
    let ms = Double((ContinuousClock.now - start).components.attoseconds) / 1e15 + Double((ContinuousClock.now - start).components.seconds) * 1000
    let time = ISO8601DateFormatter().string(from: Date())
    let line = "\(time) \(method) \(path) \(status) tokens=\(tokens) ms=\(String(format: "%.1f", ms))\(note)\n"
    FileHandle.standardError.write(Data(line.utf8))
}

func errorResponse(_ e: APIError) -> Response {
    var headers: HTTPFields = [.contentType: "application/json"]
    if e.status == 429 { headers[.retryAfter] = "1" }
    if e.code == "malformed_body" { headers[.connection] = "close" }   // nothing more can be read from it
    return Response(status: .init(code: e.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: e.json)))
}

/// A JSON body (`APIJSON`) with its status.
func jsonResponse<T: Encodable>(_ status: HTTPResponse.Status, _ value: T) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: APIJSON.encode(value))))
}
