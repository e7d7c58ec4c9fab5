// CharRNNServer/HTTP1Conformance.swift — what HTTP/1.x asks of a server that Hummingbird 2's HTTP/1
// channel leaves out, done in one channel handler between NIO's HTTP/1 decoder and Hummingbird's
// converter to HTTPTypes (`HTTP1ToHTTPServerCodec`, which drops the request's version and always
// answers HTTP/1.1). Installed on each connection by `HTTP1Conformance.Installer`, one of the
// channel's additional handlers.
//
// Guarantees
// - HTTP/1.0: the response says HTTP/1.0 and is never chunked (NIO's encoder frames a 1.0 body by
//   its Content-Length, or by closing the connection when it has none, as a stream has not). The
//   connection is closed after the response unless the client asked for keep-alive and the
//   response has a Content-Length; a request without keep-alive gets `Connection: close` added,
//   so Hummingbird stops reading after it.
// - `Expect: 100-continue` (HTTP/1.1): answered with `100 Continue` at once when the declared body
//   fits `maxBody` (or no length is declared), so clients that wait for it do not stall; when it
//   does not fit, no 100 is sent and the handler answers 413 without the body.
// - A final response carrying `Connection: close` (e.g. the 400 for a malformed chunked body)
//   closes the connection once it is written.

import Foundation
import NIOCore
import NIOHTTP1

final class HTTP1Conformance: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let maxBody: Int
    /// Version and keep-alive of each request not yet answered, oldest first (a client may
    /// pipeline requests; Hummingbird answers them in order).
    private var pending: [(version: HTTPVersion, keepAlive: Bool)] = []
    private var closeAfterResponse = false

    init(maxBody: Int) { self.maxBody = maxBody }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        let keepAlive = head.isKeepAlive
        pending.append((head.version, keepAlive))
        if head.version == .http1_0 && !keepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
        if head.version != .http1_0, head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
            let length = head.headers["content-length"].first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            if length.map({ $0 <= maxBody }) ?? true {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
            head.headers.remove(name: "expect")
        }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            let (version, keepAlive) = pending.isEmpty ? (HTTPVersion.http1_1, true) : pending.removeFirst()
            closeAfterResponse = false
            if version == .http1_0 {
                head.version = .http1_0
                if keepAlive && head.headers.contains(name: "content-length") {
                    head.headers.replaceOrAdd(name: "connection", value: "keep-alive")
                } else {
                    head.headers.replaceOrAdd(name: "connection", value: "close")
                }
            }
            if head.headers["connection"].contains(where: { $0.lowercased() == "close" }) { closeAfterResponse = true }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end where closeAfterResponse:
            closeAfterResponse = false
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            context.write(data, promise: written)
        default:
            context.write(data, promise: promise)
        }
    }

    /// Puts an `HTTP1Conformance` right after the connection's HTTP/1 decoder when it is added (as
    /// one of Hummingbird's additional channel handlers, which come after the converter).
    final class Installer: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = NIOAny
        let maxBody: Int
        init(maxBody: Int) { self.maxBody = maxBody }

        func handlerAdded(context: ChannelHandlerContext) {
            let ops = context.pipeline.syncOperations
            guard let decoder = try? ops.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) else {
                preconditionFailure("HTTP1Conformance: no HTTP/1 request decoder in the pipeline")
            }
            try? ops.addHandler(HTTP1Conformance(maxBody: maxBody), position: .after(decoder))
        }
    }
}
