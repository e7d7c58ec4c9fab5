// Sample/BatchEngine.swift — continuous batching: many generation requests share one batched step.
//
// Legend: R active rows (≤ maxStreams), V vocabulary.
// Each request (a `GenerationTicket`) takes n rows. A row first feeds its prompt, one token per step
// (an empty prompt feeds a newline, as `charrnn sample` without --prime does; a vocabulary without
// one starts from the uniform distribution), then per step draws a token from its row of log p
// with its own generator and feeds it. Every iteration advances all R active rows by exactly one
// `CharRNNModel.step`. Rows join (state reset) and leave (done, stop string, max tokens, cancelled,
// buffer overflow) between steps. Row i of a request with seed S draws with
// `Xoshiro256(seed: Sampler.seed(S, stream: i))` and the model's step gives a row the same bits
// whatever the batch, so a request's text equals `charrnn sample --prime P --seed S
// --num-samples n` with the same options, however many other requests are in flight.
// Idle rows cost nothing: active rows are kept contiguous (a leaving row's slot takes the last
// row's state via `copyStream`, one row of h and c per layer), and the step runs on the first R
// streams of one preallocated state of maxStreams (`CharRNNModel.step(rows:)`), so rows joining
// or leaving move no other row's state. Nothing is allocated per iteration: the state, tokens,
// log-probs, the drawer, rows and the tickets' output buffers are all allocated up front.
// Threading: one engine thread owns the model (it is not thread-safe); other threads only
// `submit`, `cancel`, read a ticket's output, or queue a job (`perform`) to run between steps.

import Foundation
import Synchronization

/// Why a choice ended.
public enum FinishReason: String, Sendable, Equatable {
    /// max tokens were drawn.
    case length
    /// A stop string was generated (the text ends before it).
    case stop
    /// The request was cancelled (client gone).
    case cancelled
    /// The reader fell behind by more than the ticket's buffer.
    case overflow
    /// The engine shut down first.
    case shutdown
}

/// What to generate.
public struct GenerationRequest: Sendable {
    /// Prompt token ids (empty: start as `charrnn sample` does without --prime).
    public var prompt: [Int32]
    /// Independent completions (rows), n ≥ 1.
    public var choices: Int
    /// Choice i draws with `Xoshiro256(seed: Sampler.seed(seed, stream: i))`.
    public var seed: UInt64
    public var options: SamplingOptions
    /// Tokens to draw per choice at most (≥ 0).
    public var maxTokens: Int
    /// Stop strings (see `StopFilter`).
    public var stop: [String]

    public init(prompt: [Int32], choices: Int = 1, seed: UInt64, options: SamplingOptions, maxTokens: Int, stop: [String] = []) {
        self.prompt = prompt; self.choices = choices; self.seed = seed; self.options = options
        self.maxTokens = maxTokens; self.stop = stop
    }
}

/// One request in the engine: its released text per choice, filled by the engine thread and taken
/// by the consumer. Thread-safe.
public final class GenerationTicket: @unchecked Sendable {
    public let request: GenerationRequest
    /// Bytes a choice may have released but not yet taken; beyond it the request is dropped (`overflow`).
    public let bufferLimit: Int

    /// What the consumer gets: text released since the last take, and the state of each choice.
    public struct Update: Sendable {
        /// Per choice: UTF-8 released since the last update (always whole scalars).
        public var text: [[UInt8]]
        /// Per choice: why it ended, nil while running.
        public var finish: [FinishReason?]
        /// Per choice: tokens drawn so far.
        public var completionTokens: [Int]
        /// Every choice ended (nothing more will come).
        public var isDone: Bool { finish.allSatisfy { $0 != nil } }
    }

    private let lock = NSLock()
    private var output: [[UInt8]]
    private var finish: [FinishReason?]
    private var drawn: [Int]
    private var fresh = false          // something new since the last take
    private var waiter: CheckedContinuation<Void, Never>?
    private var wakeOnText = true      // false while `collect` waits: text wakes it only when half a buffer is full
    private var cancelReason: FinishReason?

    // Engine-thread only.
    var filters: [StopFilter]
    var feed: [Int32] = []
    var rowsLeft = 0

    /// - Parameters:
    ///   - request: what to generate.
    ///   - bufferLimit: bytes per choice the reader may lag behind before the request is dropped.
    public init(_ request: GenerationRequest, bufferLimit: Int = 1 << 16) {
        precondition(request.choices >= 1 && request.maxTokens >= 0 && bufferLimit >= 64)
        self.request = request; self.bufferLimit = bufferLimit
        let n = request.choices
        output = (0..<n).map { _ in var a = [UInt8](); a.reserveCapacity(bufferLimit); return a }
        finish = Array(repeating: nil, count: n)
        drawn = Array(repeating: 0, count: n)
        // one filter each: copies of one would share (copy-on-write) a held buffer, and the first
        // write would allocate inside the step loop
        filters = (0..<n).map { _ in StopFilter(stops: request.stop) }
    }

    /// Asks the engine to drop the request; its rows are freed before the next step.
    public func cancel() { cancel(reason: .cancelled) }

    /// The reason the request was cancelled, if it was.
    public var cancelled: FinishReason? { lock.withLock { cancelReason } }

    /// An empty update for `take(into:)`: one buffer per choice of `bufferLimit` bytes' capacity.
    public func makeUpdate() -> Update {
        Update(text: (0..<request.choices).map { _ in var a = [UInt8](); a.reserveCapacity(bufferLimit); return a },
               finish: Array(repeating: nil, count: request.choices), completionTokens: Array(repeating: 0, count: request.choices))
    }

    /// Moves the text released since the last take into `u` (made by `makeUpdate`), replacing what
    /// it held, and copies each choice's state; false (and `u`'s text emptied) when nothing changed.
    /// Both sides' buffers keep their capacity, so a take allocates nothing.
    public func take(into u: inout Update) -> Bool {
        precondition(u.text.count == request.choices && u.finish.count == request.choices && u.completionTokens.count == request.choices)
        for i in u.text.indices { u.text[i].removeAll(keepingCapacity: true) }
        lock.lock(); defer { lock.unlock() }
        guard fresh else { return false }
        fresh = false
        for i in output.indices {
            u.text[i].append(contentsOf: output[i])   // both have bufferLimit bytes' capacity: no allocation
            output[i].removeAll(keepingCapacity: true)
            u.finish[i] = finish[i]
            u.completionTokens[i] = drawn[i]
        }
        return true
    }

    /// Waits until there is something new, then takes it into `u` (see `take(into:)`).
    public func next(into u: inout Update) async {
        while !take(into: &u) { await wait() }
    }

    private func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = lock.withLock { () -> Bool in
                if fresh { return true }
                waiter = c
                return false
            }
            if now { c.resume() }
        }
    }

    /// Takes the text released since the last call; nil when nothing changed.
    public func take() -> Update? {
        lock.withLock {
            guard fresh else { return nil }
            fresh = false
            let u = Update(text: output, finish: finish, completionTokens: drawn)
            for i in output.indices { output[i].removeAll(keepingCapacity: true) }
            return u
        }
    }

    /// Each choice's finish reason and tokens drawn so far, without taking any text.
    public var progress: Update { lock.withLock { Update(text: [], finish: finish, completionTokens: drawn) } }

    /// Waits until there is something new, then takes it.
    public func next() async -> Update {
        while true {
            if let u = take() { return u }
            await wait()
        }
    }

    /// Waits for the end and returns every choice's whole text. Released text does not wake the
    /// waiting task for every token, only when a choice's buffer is half full (and at the end).
    public func collect() async -> Update {
        lock.withLock { wakeOnText = false }
        var all = makeUpdate(), u = makeUpdate()
        while true {
            await next(into: &u)
            for i in u.text.indices { all.text[i] += u.text[i] }
            all.finish = u.finish; all.completionTokens = u.completionTokens
            if u.isDone { return all }
        }
    }

    // MARK: Engine side

    func cancel(reason: FinishReason) {
        let w = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            if cancelReason == nil { cancelReason = reason }
            let w = waiter; waiter = nil; return w
        }
        w?.resume()
    }

    /// Appends released bytes of `choice`; false when that would pass `bufferLimit`.
    func append(_ choice: Int, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if bytes.isEmpty { return true }
        let (ok, w) = lock.withLock { () -> (Bool, CheckedContinuation<Void, Never>?) in
            if output[choice].count + bytes.count > bufferLimit { return (false, nil) }
            output[choice].append(contentsOf: bytes)
            fresh = true
            if !wakeOnText && output[choice].count < bufferLimit / 2 { return (true, nil) }
            let w = waiter; waiter = nil
            return (true, w)
        }
        w?.resume()
        return ok
    }

    func finish(_ choice: Int, _ reason: FinishReason, drawn n: Int) {
        let w = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            if finish[choice] == nil { finish[choice] = reason }
            drawn[choice] = n
            fresh = true
            let w = waiter; waiter = nil
            return w
        }
        w?.resume()
    }

    func finishAll(_ reason: FinishReason) {
        for c in 0..<request.choices { finish(c, reason, drawn: 0) }
    }
}

/// Runs generation requests in one continuous batch (see the file header).
public final class BatchEngine: @unchecked Sendable {
    public let model: CharRNNModel
    public let vocabulary: Vocabulary
    public let maxStreams: Int
    /// Requests that may wait for rows; beyond it `submit` refuses.
    public let queueLimit: Int
    /// Least time between two batched steps of the engine thread (0 = as fast as possible): paces
    /// generation, to cap the CPU a server takes or to make streaming visible. Set before `start`.
    public var stepInterval: Double = 0

    /// Why `submit` refused a request.
    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        case queueFull(limit: Int)
        case tooManyChoices(requested: Int, max: Int)
        case shuttingDown
        case tokenOutOfRange(Int32)
        public var description: String {
            switch self {
            case let .queueFull(l): return "the server is busy: all streams are in use and \(l) requests are already waiting"
            case let .tooManyChoices(r, m): return "n = \(r) needs more streams than the server has (\(m))"
            case .shuttingDown: return "the server is shutting down"
            case let .tokenOutOfRange(t): return "token id \(t) outside the vocabulary"
            }
        }
    }

    // MARK: Shared state (under `cond`)
    private let cond = NSCondition()
    private var queue: [GenerationTicket] = []
    private var jobs: [@Sendable () -> Void] = []
    private var stopping = false
    private var deadline: ContinuousClock.Instant?
    private var started = false
    private let exited = DispatchSemaphore(value: 0)
    private let activeRows = Atomic<Int>(0)
    private let queuedRequests = Atomic<Int>(0)
    private let stepsDone = Atomic<Int>(0)

    // MARK: Engine-thread state
    private struct Row {
        var ticket: GenerationTicket
        var choice: Int
        var rng: Xoshiro256
        var fed = 0          // prompt (feed) tokens fed
        var drawn = 0        // tokens drawn
        var next: Int32 = 0  // the token this step feeds
        var done = false
        var fresh = true     // joined this iteration: state not reset yet
    }
    private var rows: [Row] = []
    private let V: Int
    private let state: InferenceState          // (maxStreams) rows 0..<R are the active rows
    private let tokens: IntStorage             // (maxStreams)
    private let logProbs: Storage              // (maxStreams, V)
    private let zeroRow: Storage               // (V) the uniform start
    private let drawer: TokenDrawer
    private let tokenBytes: [UInt8]            // every token's UTF-8, concatenated
    private let tokenOffsets: [Int]            // (V + 1) token v is tokenBytes[offsets[v]..<offsets[v+1]]
    private let startToken: Int32?             // newline, fed when the prompt is empty

    /// - Parameters:
    ///   - model: the weights (any workspace size); from now on used only by the engine thread.
    ///   - maxStreams: rows stepped together at most.
    ///   - queueLimit: requests waiting for rows at most.
    public init(model: CharRNNModel, vocabulary: Vocabulary, maxStreams: Int, queueLimit: Int) {
        precondition(vocabulary.count == model.config.vocabSize && maxStreams >= 1 && queueLimit >= 0)
        self.model = model; self.vocabulary = vocabulary; self.maxStreams = maxStreams; self.queueLimit = queueLimit
        V = model.config.vocabSize
        state = InferenceState(config: model.config, streams: maxStreams)
        tokens = IntStorage(count: maxStreams)
        logProbs = Storage(count: maxStreams * V)
        zeroRow = Storage(count: V)
        drawer = TokenDrawer(vocabSize: V, unknownID: vocabulary.unknownID)
        var bytes: [UInt8] = [], offsets = [0]
        for t in vocabulary.tokens { bytes += Array(t.utf8); offsets.append(bytes.count) }
        tokenBytes = bytes; tokenOffsets = offsets
        startToken = vocabulary.startID.map { Int32($0) }
        rows.reserveCapacity(2 * maxStreams)   // done rows stay until step 3 while new ones join
        queue.reserveCapacity(queueLimit + maxStreams + 1)
    }

    // MARK: - Public interface (any thread)

    /// Rows generating now.
    public var active: Int { activeRows.load(ordering: .relaxed) }
    /// Requests waiting for rows.
    public var queued: Int { queuedRequests.load(ordering: .relaxed) }
    /// `shutdown` was called.
    public var isShuttingDown: Bool { cond.lock(); defer { cond.unlock() }; return stopping }
    /// Batched steps run so far.
    public var steps: Int { stepsDone.load(ordering: .relaxed) }

    /// Queues `ticket`; it joins the batch as soon as it has rows.
    /// - Throws: `Refusal` when the queue is full, n is larger than maxStreams, the engine is
    ///   shutting down, or a prompt id is outside the vocabulary.
    public func submit(_ ticket: GenerationTicket) throws(Refusal) {
        let r = ticket.request
        if r.choices > maxStreams { throw .tooManyChoices(requested: r.choices, max: maxStreams) }
        if let bad = r.prompt.first(where: { $0 < 0 || Int($0) >= V }) { throw .tokenOutOfRange(bad) }
        ticket.feed = r.prompt.isEmpty ? (startToken.map { [$0] } ?? []) : r.prompt
        ticket.rowsLeft = r.choices
        cond.lock(); defer { cond.unlock() }
        if stopping { throw .shuttingDown }
        // requests that free rows will take at once, plus `queueLimit` that wait
        if queue.count >= queueLimit + max(0, maxStreams - active) { throw .queueFull(limit: queueLimit) }
        queue.append(ticket)
        queuedRequests.store(queue.count, ordering: .relaxed)
        cond.signal()
    }

    /// Runs `job` on the engine thread between two steps (for work that needs the model, such as
    /// scoring). false when the engine is shutting down or `queueLimit` jobs are waiting.
    public func perform(_ job: @escaping @Sendable () -> Void) -> Bool {
        cond.lock(); defer { cond.unlock() }
        if stopping || jobs.count >= max(1, queueLimit) { return false }
        jobs.append(job)
        cond.signal()
        return true
    }

    /// Runs `job` on the engine thread and returns its result; nil when refused (see `perform`).
    public func run<T: Sendable>(_ job: @escaping @Sendable () -> T) async -> T? {
        await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
            if !perform({ c.resume(returning: job()) }) { c.resume(returning: nil) }
        }
    }

    /// Starts the engine thread.
    public func start() {
        cond.lock(); defer { cond.unlock() }
        precondition(!started, "started twice")
        started = true
        // The thread holds the engine until its loop ends; the engine does not hold the thread
        // (that would be a cycle that outlives the loop).
        let t = Thread { [self] in loop() }
        t.name = "charrnn-engine"
        t.stackSize = 1 << 22
        t.start()
    }

    /// Stops taking requests: waiting ones end with `shutdown` at once, running ones may finish
    /// within `grace` seconds, then are cut (`shutdown`). Returns at once; see `waitUntilStopped`.
    public func shutdown(grace: Double) {
        cond.lock()
        let waiting = queue
        queue.removeAll()
        queuedRequests.store(0, ordering: .relaxed)
        stopping = true
        deadline = .now + .milliseconds(Int(max(0, grace) * 1000))
        cond.signal()
        let started = self.started
        cond.unlock()
        for t in waiting { t.finishAll(.shutdown) }
        if !started { exited.signal() }
    }

    /// Blocks until the engine thread has ended (after `shutdown`).
    public func waitUntilStopped() { exited.wait(); exited.signal() }

    // MARK: - Engine thread

    private func loop() {
        while true {
            cond.lock()
            while rows.isEmpty && queue.isEmpty && jobs.isEmpty && !stopping { cond.wait() }
            if stopping && rows.isEmpty && jobs.isEmpty { cond.unlock(); break }
            let job = jobs.isEmpty ? nil : jobs.removeFirst()
            cond.unlock()
            job?()
            let begin = ContinuousClock.now
            if iterate() > 0 && stepInterval > 0 {
                let took = (ContinuousClock.now - begin).components
                let left = stepInterval - Double(took.seconds) - Double(took.attoseconds) / 1e18
                if left > 0 { Thread.sleep(forTimeInterval: left) }
            }
        }
        exited.signal()
    }

    /// One iteration: draw or feed for every row, let requests leave and join, then one batched step.
    /// Called by the engine thread (or, without `start`, directly by tests). Returns the rows stepped.
    @discardableResult
    public func iterate() -> Int {
        let cutAll = cutDeadlinePassed()
        // 1. every row: cancelled → leaves; prompt not all fed → next prompt token; else draw.
        for i in rows.indices {
            let t = rows[i].ticket
            if cutAll || t.cancelled != nil {
                leave(i, cutAll ? .shutdown : t.cancelled ?? .cancelled)
                continue
            }
            if rows[i].fed < t.feed.count {
                rows[i].next = t.feed[rows[i].fed]
                rows[i].fed += 1
            } else {
                generate(i, from: UnsafePointer(logProbs.ptr + i * V))
            }
        }
        // 2. requests join while rows are free (first come, first served)
        if !cutAll { admit() }
        // 3. rows that left give their slot to the last row
        var i = 0
        while i < rows.count {
            if rows[i].done {
                let last = rows.count - 1
                if i != last {
                    if !rows[last].fresh { state.copyStream(last, of: state, to: i) }
                    rows.swapAt(i, last)
                }
                rows.removeLast()
            } else { i += 1 }
        }
        let R = rows.count
        activeRows.store(R, ordering: .relaxed)
        guard R > 0 else { return 0 }
        // 4. rows that joined start from zero state
        for r in 0..<R where rows[r].fresh { state.reset(stream: r); rows[r].fresh = false }
        // 5. one batched step of the R active rows (the state's other streams are not touched)
        for r in 0..<R { tokens.ptr[r] = rows[r].next }
        model.step(tokens: tokens.ptr, state: state, rows: R, logProbs: logProbs.ptr)
        stepsDone.add(1, ordering: .relaxed)
        return R
    }

    private func cutDeadlinePassed() -> Bool {
        cond.lock(); defer { cond.unlock() }
        guard stopping, let d = deadline else { return false }
        return ContinuousClock.now >= d
    }

    private func admit() {
        cond.lock()
        while let t = queue.first {
            if t.cancelled != nil {
                queue.removeFirst()
                t.finishAll(t.cancelled ?? .cancelled)
                continue
            }
            let free = maxStreams - rows.count + rows.reduce(0) { $0 + ($1.done ? 1 : 0) }
            if t.request.choices > free { break }
            queue.removeFirst()
            for c in 0..<t.request.choices {
                rows.append(Row(ticket: t, choice: c, rng: Xoshiro256(seed: Sampler.seed(t.request.seed, stream: c))))
                let i = rows.count - 1
                if t.request.maxTokens == 0 {
                    leave(i, .length)
                } else if t.feed.isEmpty {
                    // no prompt and no newline in the vocabulary: the first draw is uniform
                    generate(i, from: UnsafePointer(zeroRow.ptr))
                } else {
                    rows[i].next = t.feed[0]
                    rows[i].fed = 1
                }
            }
        }
        queuedRequests.store(queue.count, ordering: .relaxed)
        cond.unlock()
    }

    /// Draws row i's next token from `z`, releases its text, and ends the row when it is done.
    private func generate(_ i: Int, from z: UnsafePointer<Float>) {
        let t = rows[i].ticket, c = rows[i].choice
        let tok = drawer.draw(z, options: t.request.options, rng: &rows[i].rng)
        rows[i].drawn += 1
        var overflow = false
        let hitStop = tokenBytes.withUnsafeBufferPointer { all -> Bool in
            let b = UnsafeBufferPointer(rebasing: all[tokenOffsets[tok]..<tokenOffsets[tok + 1]])
            return t.filters[c].feed(b) { if !t.append(c, $0) { overflow = true } }
        }
        if overflow {
            t.cancel(reason: .overflow)
            leave(i, .overflow)
        } else if hitStop {
            leave(i, .stop)
        } else if rows[i].drawn >= t.request.maxTokens {
            t.filters[c].flush { if !t.append(c, $0) { overflow = true } }
            leave(i, overflow ? .overflow : .length)
        } else {
            rows[i].next = Int32(tok)
        }
    }

    private func leave(_ i: Int, _ reason: FinishReason) {
        rows[i].done = true
        let t = rows[i].ticket
        t.finish(rows[i].choice, reason, drawn: rows[i].drawn)
        t.rowsLeft -= 1
    }
}
