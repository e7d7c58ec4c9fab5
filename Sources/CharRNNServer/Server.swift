// CharRNNServer/Server.swift — the HTTP layer of `charrnn serve` on Hummingbird 2.
//
// Routes (`makeRouter`): GET / (the web page), GET /health, GET /v1/models, POST /v1/completions
// (OpenAI completions, with server-sent events when `stream` is true), POST /v1/score. What goes over
// the wire — request decoding, limits, the error object, every response body and streamed event — is
// the CharRNNAPI target's; this file is the HTTP around it. The checkpoint is loaded once (by the
// caller) and its model built once: the engine generates with it, the evaluator copies its weights.
// The model runs only on the BatchEngine's thread; handlers submit tickets and await their text
// (completions) or queue one scoring job per input text (score), between which generation steps run.
// Limits: the body is read up to `maxBodyBytes` (413 beyond), `max_tokens`, prompt size and
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
import CharRNNAPI
import Foundation
import Hummingbird
import Logging
import NIOCore
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
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                     body: .init(byteBuffer: ByteBuffer(string: webPage)))
        }
        router.get("/health") { [self] _, _ in health() }
        router.get("/v1/models") { [self] _, _ in jsonResponse(.ok, ModelList(data: [modelObject])) }
        router.get("/v1/models/:id") { [self] _, context in
            let id = context.parameters.get("id") ?? ""
            guard id == model.id else { throw APIError.modelNotFound(id, served: model.id) }
            return jsonResponse(.ok, modelObject)
        }
        router.post("/v1/completions") { [self] request, context in try await completions(request, context) }
        router.post("/v1/score") { [self] request, context in try await score(request, context) }
        return router
    }

    /// Serves until SIGINT/SIGTERM. `onListening` gets the bound port (useful with port 0).
    package func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        engine.start()
        var logger = Logger(label: "charrnn.serve")
        logger.logLevel = .error
        let app = Application(
            router: makeRouter(),
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
        // with its finish_reason, then one with usage and [DONE] (CompletionEvents). The events go
        // into one reused buffer; the text is taken into a reused update (no allocation per take).
        let events = CompletionEvents(id: id, created: created, model: model.id, fingerprint: fingerprint)
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
                        if u.text[i].isEmpty && (u.logprobs.isEmpty || u.logprobs[i].isEmpty) && (f == nil || reported[i]) { continue }
                        if f != nil { reported[i] = true }
                        if r.logprobs != nil {
                            events.append(index: i, text: u.text[i], finish: f, logprobs: CompletionLogprobs(u.logprobs[i], vocabulary: self.vocabulary), to: &out)
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
        // Exactly `charrnn eval FILE` on a file holding the text, scored in memory. One engine job per
        // text, so generation steps run between them.
        var data: [ScoreResult] = []
        for (i, text) in r.input.enumerated() {
            let result = await engine.run { () -> Result<EvalResult, APIError> in
                do { return .success(try evaluator.value.evaluate(text: text, name: "text")) } catch {
                    return .failure(.invalid("input[\(i)]: \(error)", param: "input"))
                }
            }
            guard let result else { throw APIError.busy }
            let e = try result.get()
            data.append(ScoreResult(index: i, result: e))
            context.stats.tokens += e.tokens
        }
        return jsonResponse(.ok, ScoreList(model: model.id, data: data))
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
            response = errorResponse(.http(status: Int(e.status.code), reason: e.status.reasonPhrase, method: method, path: path))
        } catch {
            response = errorResponse(.internalError(error))
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

/// A JSON body (`APIJSON`) with its status.
func jsonResponse<T: Encodable>(_ status: HTTPResponse.Status, _ value: T) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: APIJSON.encode(value))))
}
