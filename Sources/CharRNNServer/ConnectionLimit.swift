// CharRNNServer/ConnectionLimit.swift — keeps the server's open connections below its
// file-descriptor limit, so that it stays reachable when clients hold connections open.
//
// Why: every connection is a descriptor. Clients that open connections and send half their
// headers (or nothing) hold theirs until the idle timeout; once the process reaches RLIMIT_NOFILE,
// accept(2) fails with EMFILE, the pending connections (a /health probe among them) wait in the
// kernel's backlog, and the listening socket stays readable, so the event loop keeps waking for
// an accept that cannot succeed (NIO's AcceptBackoffHandler only delays the retries).
// What: `ConnectionLimit` counts the open connections against a cap measured at start —
// RLIMIT_NOFILE's soft limit minus the descriptors already open minus a margin — and when a new
// connection would exceed it, closes one to make room: the longest-open connection that has not
// sent a request head (idle, or stuck in its headers), else the longest-open one still sending
// its request body, else (every connection has a request being answered) the new one. Accept
// therefore never meets EMFILE through connections alone, and a new client is always served.
// One `ConnectionLimit.Slot` per connection (an additional channel handler, after the HTTPTypes
// conversion) reports its state.

import Foundation
import NIOCore
import NIOHTTPTypes

/// The open connections and the cap (see the file header).
final class ConnectionLimit: @unchecked Sendable {
    /// What a connection is doing, in the order in which connections are given up.
    enum State: Int { case idle = 0, readingRequest = 1, answering = 2 }

    private let lock = NSLock()
    private var _cap: Int
    private var connections: [ObjectIdentifier: (channel: any Channel, state: State, since: UInt64)] = [:]
    private var counter: UInt64 = 0
    /// Connections closed to make room (for tests and the log).
    private(set) var evicted = 0

    /// Connections open at most (≥ 1); set once the server listens (`measuredCap`).
    var cap: Int {
        get { lock.withLock { _cap } }
        set { lock.withLock { _cap = max(1, newValue) } }
    }

    init(cap: Int = Int.max / 2) { _cap = max(1, cap) }

    /// The cap for this process: the soft RLIMIT_NOFILE minus the descriptors open now minus
    /// `margin` (for files, the accept in progress, and what the runtime opens later).
    static func measuredCap(margin: Int = 32) -> Int {
        var r = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r) == 0, r.rlim_cur != rlim_t.max else { return Int.max / 2 }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 64
        return max(1, Int(clamping: r.rlim_cur) - open - margin)
    }

    var count: Int { lock.withLock { connections.count } }

    /// A connection opened; closes one (perhaps this one) when the cap is exceeded.
    func opened(_ channel: any Channel) {
        let victim: (any Channel)? = lock.withLock {
            counter += 1
            connections[ObjectIdentifier(channel)] = (channel, .idle, counter)
            guard connections.count > _cap else { return nil }
            let others = connections.filter { $0.key != ObjectIdentifier(channel) }
            let pick = others.filter { $0.value.state != .answering }
                .min { ($0.value.state.rawValue, $0.value.since) < ($1.value.state.rawValue, $1.value.since) }
            let v = pick?.value.channel ?? channel
            connections[ObjectIdentifier(v)] = nil
            evicted += 1
            return v
        }
        victim?.close(promise: nil)
    }

    func set(_ channel: any Channel, _ state: State) {
        lock.withLock {
            let id = ObjectIdentifier(channel)
            if connections[id] != nil { connections[id]!.state = state }
        }
    }

    func closed(_ channel: any Channel) { _ = lock.withLock { connections.removeValue(forKey: ObjectIdentifier(channel)) } }

    /// Reports one connection's state to its `ConnectionLimit`.
    final class Slot: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
        typealias InboundIn = HTTPRequestPart
        typealias InboundOut = HTTPRequestPart
        typealias OutboundIn = HTTPResponsePart
        typealias OutboundOut = HTTPResponsePart
        let limit: ConnectionLimit
        init(_ limit: ConnectionLimit) { self.limit = limit }

        func handlerAdded(context: ChannelHandlerContext) { limit.opened(context.channel) }
        func handlerRemoved(context: ChannelHandlerContext) { limit.closed(context.channel) }
        func channelInactive(context: ChannelHandlerContext) {
            limit.closed(context.channel)
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head: limit.set(context.channel, .readingRequest)
            case .end: limit.set(context.channel, .answering)
            case .body: break
            }
            context.fireChannelRead(data)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if case .end = unwrapOutboundIn(data) { limit.set(context.channel, .idle) }
            context.write(data, promise: promise)
        }
    }
}
