// Sample/BatchEngine.swift — continuous batching: many generation requests share one batched step.
//
// The engine is a driver of the GenerationLoop (which `charrnn sample` drives too): each request (a
// `GenerationTicket`) joins the loop as n rows, choice i with stream index i, so choice i of a
// request with seed S draws with `Xoshiro256(seed: GenerationLoop.streamSeed(S, stream: i))` and its text
// equals `charrnn sample --prime P --seed S --num-samples n` with the same options, however many
// other requests are in flight. Prompt feeding, the start token, the draw and stop strings are the
// loop's; the engine owns what serving adds: a bounded queue (first come, first served), rows that
// leave when their request is cancelled, overflows its buffer or the shutdown grace ends, each
// row's released text handed to its ticket, jobs run between steps, and the thread.
// Every iteration advances all active rows by exactly one `CharRNNModel.step` (see the loop for how
// idle rows cost nothing). Nothing is allocated per iteration: the loop's buffers and the tickets'
// output buffers are allocated up front (a ticket's stop filters on the submitting thread).
// With `logprobs`, each row's `TokenLogprob` entries travel with its text, under the same lock, into
// buffers the ticket reserves up front (one entry per prompt token and token drawn).
// Threading: one engine thread owns the loop and the model (they are not thread-safe); other
// threads only `submit`, `cancel`, read a ticket's output, or queue a job (`perform`) to run
// between steps.

import Foundation
import Synchronization

/// What to generate.
package struct GenerationRequest: Sendable {
    /// Prompt token ids (empty: start as `charrnn sample` does without --prime).
    package var prompt: [Int32]
    /// Independent completions (rows), n ≥ 1.
    package var choices: Int
    /// Choice i draws with `Xoshiro256(seed: GenerationLoop.streamSeed(seed, stream: i))`.
    package var seed: UInt64
    package var options: SamplingOptions
    /// Tokens to draw per choice at most (≥ 0).
    package var maxTokens: Int
    /// Stop strings (see `StopFilter`).
    package var stop: [String]
    /// nil, or record each token's log p and this many (0...5) alternatives (`TokenLogprob`).
    package var logprobs: Int? = nil
    /// Each choice gives out the prompt (and, with `logprobs`, its scores) before its completion.
    package var echo = false

    package init(prompt: [Int32], choices: Int = 1, seed: UInt64, options: SamplingOptions, maxTokens: Int, stop: [String] = []) {
        self.prompt = prompt; self.choices = choices; self.seed = seed; self.options = options
        self.maxTokens = maxTokens; self.stop = stop
    }
}

/// One request in the engine: its released text per choice, filled by the engine thread and taken
/// by the consumer. Thread-safe.
package final class GenerationTicket: @unchecked Sendable {
    package let request: GenerationRequest
    /// Bytes a choice may have released but not yet taken; beyond it the request is dropped (`overflow`).
    package let bufferLimit: Int

    /// What the consumer gets: text released since the last take, and the state of each choice.
    package struct Update: Sendable {
        /// Per choice: UTF-8 released since the last update (always whole scalars).
        package var text: [[UInt8]]
        /// Per choice: why it ended, nil while running.
        package var finish: [FinishReason?]
        /// Per choice: tokens drawn so far.
        package var completionTokens: [Int]
        /// Per choice, with `logprobs`: the entries of the tokens whose text came with this update or before.
        package var logprobs: [[TokenLogprob]] = []
        /// Every choice ended (nothing more will come).
        package var isDone: Bool { finish.allSatisfy { $0 != nil } }
    }

    private let lock = NSLock()
    private var output: [[UInt8]]
    private var lpOutput: [[TokenLogprob]]       // per choice (empty without logprobs)
    private var finish: [FinishReason?]
    private var drawn: [Int]
    private var fresh = false          // something new since the last take
    private var waiter: CheckedContinuation<Void, Never>?
    private var wakeOnText = true      // false while `collect` waits: text wakes it only when half a buffer is full
    private var cancelReason: FinishReason?

    // Engine-thread only: one stop filter per choice, moved into the loop when the choice joins.
    var filters: [StopFilter]

    /// - Parameters:
    ///   - request: what to generate.
    ///   - bufferLimit: bytes per choice the reader may lag behind before the request is dropped.
    package init(_ request: GenerationRequest, bufferLimit: Int = 1 << 16) {
        precondition(request.choices >= 1 && request.maxTokens >= 0 && bufferLimit >= 64)
        self.request = request; self.bufferLimit = bufferLimit
        let n = request.choices
        output = (0..<n).map { _ in var a = [UInt8](); a.reserveCapacity(bufferLimit); return a }
        finish = Array(repeating: nil, count: n)
        drawn = Array(repeating: 0, count: n)
        // one filter each, made here on the submitting thread: copies of one would share
        // (copy-on-write) a held buffer, and the first write would allocate inside the step loop
        filters = (0..<n).map { _ in StopFilter(stops: request.stop) }
        lpOutput = (0..<n).map { _ in [] }
        for i in 0..<n { lpOutput[i].reserveCapacity(logprobsCapacity) }
    }

    /// Entries a choice may hold untaken: at most one per byte of text, and as many as the prompt and
    /// the tokens drawn (0 without logprobs).
    var logprobsCapacity: Int {
        request.logprobs == nil ? 0 : min(bufferLimit, request.prompt.count + request.maxTokens + 1)
    }

    /// Asks the engine to drop the request; its rows are freed before the next step.
    package func cancel() { cancel(reason: .cancelled) }

    /// The reason the request was cancelled, if it was.
    package var cancelled: FinishReason? { lock.withLock { cancelReason } }

    /// An empty update for `take(into:)`: one buffer per choice of `bufferLimit` bytes' capacity.
    package func makeUpdate() -> Update {
        Update(text: (0..<request.choices).map { _ in var a = [UInt8](); a.reserveCapacity(bufferLimit); return a },
               finish: Array(repeating: nil, count: request.choices), completionTokens: Array(repeating: 0, count: request.choices),
               logprobs: (0..<request.choices).map { _ in var a = [TokenLogprob](); a.reserveCapacity(logprobsCapacity); return a })
    }

    /// Moves the text released since the last take into `u` (made by `makeUpdate`), replacing what
    /// it held, and copies each choice's state; false (and `u`'s text emptied) when nothing changed.
    /// Both sides' buffers keep their capacity, so a take allocates nothing.
    package func take(into u: inout Update) -> Bool {
        precondition(u.text.count == request.choices && u.finish.count == request.choices && u.completionTokens.count == request.choices)
        for i in u.text.indices { u.text[i].removeAll(keepingCapacity: true) }
        for i in u.logprobs.indices { u.logprobs[i].removeAll(keepingCapacity: true) }
        lock.lock(); defer { lock.unlock() }
        guard fresh else { return false }
        fresh = false
        for i in output.indices {
            u.text[i].append(contentsOf: output[i])   // both have bufferLimit bytes' capacity: no allocation
            output[i].removeAll(keepingCapacity: true)
            if i < u.logprobs.count { u.logprobs[i].append(contentsOf: lpOutput[i]) }
            lpOutput[i].removeAll(keepingCapacity: true)
            u.finish[i] = finish[i]
            u.completionTokens[i] = drawn[i]
        }
        return true
    }

    /// Waits until there is something new, then takes it into `u` (see `take(into:)`).
    package func next(into u: inout Update) async {
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
    package func take() -> Update? {
        lock.withLock {
            guard fresh else { return nil }
            fresh = false
            let u = Update(text: output, finish: finish, completionTokens: drawn, logprobs: lpOutput)
            for i in output.indices { output[i].removeAll(keepingCapacity: true); lpOutput[i].removeAll(keepingCapacity: true) }
            return u
        }
    }

    /// Each choice's finish reason and tokens drawn so far, without taking any text.
    package var progress: Update { lock.withLock { Update(text: [], finish: finish, completionTokens: drawn) } }

    /// Waits until there is something new, then takes it.
    package func next() async -> Update {
        while true {
            if let u = take() { return u }
            await wait()
        }
    }

    /// Waits for the end and returns every choice's whole text. Released text does not wake the
    /// waiting task for every token, only when a choice's buffer is half full (and at the end).
    package func collect() async -> Update {
        lock.withLock { wakeOnText = false }
        var all = makeUpdate(), u = makeUpdate()
        while true {
            await next(into: &u)
            for i in u.text.indices { all.text[i] += u.text[i]; all.logprobs[i] += u.logprobs[i] }
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

    /// Appends released bytes of `choice` (and their entries); false when that would pass `bufferLimit`.
    func append(_ choice: Int, _ bytes: UnsafeBufferPointer<UInt8>, logprobs: UnsafeBufferPointer<TokenLogprob>? = nil) -> Bool {
        if bytes.isEmpty && (logprobs?.isEmpty ?? true) { return true }
        let (ok, w) = lock.withLock { () -> (Bool, CheckedContinuation<Void, Never>?) in
            if output[choice].count + bytes.count > bufferLimit { return (false, nil) }
            output[choice].append(contentsOf: bytes)
            if let logprobs { lpOutput[choice].append(contentsOf: logprobs) }
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
package final class BatchEngine: @unchecked Sendable {
    package let model: CharRNNModel
    package let vocabulary: Vocabulary
    package let maxStreams: Int
    /// Requests that may wait for rows; beyond it `submit` refuses.
    package let queueLimit: Int
    /// Least time between two batched steps of the engine thread (0 = as fast as possible): paces
    /// generation, to cap the CPU a server takes or to make streaming visible. Set before `start`.
    package var stepInterval: Double = 0

    /// Why `submit` refused a request.
    package enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        case queueFull(limit: Int)
        case tooManyChoices(requested: Int, max: Int)
        case shuttingDown
        case tokenOutOfRange(Int32)
        package var description: String {
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
    private let loop: GenerationLoop           // the rows; a row's owner is its ticket
    private let V: Int

    /// - Parameters:
    ///   - model: the weights (any workspace size); from now on used only by the engine thread.
    ///   - maxStreams: rows stepped together at most.
    ///   - queueLimit: requests waiting for rows at most.
    package init(model: CharRNNModel, vocabulary: Vocabulary, maxStreams: Int, queueLimit: Int) {
        precondition(vocabulary.count == model.config.vocabSize && maxStreams >= 1 && queueLimit >= 0)
        self.model = model; self.vocabulary = vocabulary; self.maxStreams = maxStreams; self.queueLimit = queueLimit
        V = model.config.vocabSize
        loop = GenerationLoop(model: model, vocabulary: vocabulary, maxStreams: maxStreams)
        queue.reserveCapacity(queueLimit + maxStreams + 1)
    }

    // MARK: - Public interface (any thread)

    /// Rows generating now.
    package var active: Int { activeRows.load(ordering: .relaxed) }
    /// Requests waiting for rows.
    package var queued: Int { queuedRequests.load(ordering: .relaxed) }
    /// `shutdown` was called.
    package var isShuttingDown: Bool { cond.lock(); defer { cond.unlock() }; return stopping }
    /// Batched steps run so far.
    package var steps: Int { stepsDone.load(ordering: .relaxed) }

    /// Queues `ticket`; it joins the batch as soon as it has rows.
    /// - Throws: `Refusal` when the queue is full, n is larger than maxStreams, the engine is
    ///   shutting down, or a prompt id is outside the vocabulary.
    package func submit(_ ticket: GenerationTicket) throws(Refusal) {
        let r = ticket.request
        if r.choices > maxStreams { throw .tooManyChoices(requested: r.choices, max: maxStreams) }
        if let bad = r.prompt.first(where: { $0 < 0 || Int($0) >= V }) { throw .tokenOutOfRange(bad) }
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
    package func perform(_ job: @escaping @Sendable () -> Void) -> Bool {
        cond.lock(); defer { cond.unlock() }
        if stopping || jobs.count >= max(1, queueLimit) { return false }
        jobs.append(job)
        cond.signal()
        return true
    }

    /// Runs `job` on the engine thread and returns its result; nil when refused (see `perform`).
    package func run<T: Sendable>(_ job: @escaping @Sendable () -> T) async -> T? {
        await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
            if !perform({ c.resume(returning: job()) }) { c.resume(returning: nil) }
        }
    }

    /// Starts the engine thread.
    package func start() {
        cond.lock(); defer { cond.unlock() }
        precondition(!started, "started twice")
        started = true
        // The thread holds the engine until its loop ends; the engine does not hold the thread
        // (that would be a cycle that outlives the loop).
        let t = Thread { [self] in engineLoop() }
        t.name = "charrnn-engine"
        t.stackSize = 1 << 22
        t.start()
    }

    /// Stops taking requests: waiting ones end with `shutdown` at once, running ones may finish
    /// within `grace` seconds, then are cut (`shutdown`). Returns at once; see `waitUntilStopped`.
    package func shutdown(grace: Double) {
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
    package func waitUntilStopped() { exited.wait(); exited.signal() }

    // MARK: - Engine thread

    private func engineLoop() {
        while true {
            cond.lock()
            while loop.rows == 0 && queue.isEmpty && jobs.isEmpty && !stopping { cond.wait() }
            if stopping && loop.rows == 0 && jobs.isEmpty { cond.unlock(); break }
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
    package func iterate() -> Int {
        let cutAll = cutDeadlinePassed()
        // 1. rows of cancelled requests (all rows once the grace time is over) leave
        for r in 0..<loop.rows {
            if cutAll { loop.end(r, .shutdown) } else if let why = ticket(r).cancelled { loop.end(r, why) }
        }
        // 2. every other row feeds its next prompt token or draws
        loop.advance()
        // 3. requests join while rows are free (first come, first served)
        if !cutAll { admit() }
        // 4. released text and ends go to the tickets
        deliver()
        // 5. rows that ended leave; one batched step of the others
        let R = loop.step()
        activeRows.store(R, ordering: .relaxed)
        if R > 0 { stepsDone.add(1, ordering: .relaxed) }
        return R
    }

    private func ticket(_ r: Int) -> GenerationTicket { unsafeDowncast(loop.owner(r)!, to: GenerationTicket.self) }

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
            if t.request.choices > maxStreams - loop.running { break }
            queue.removeFirst()
            let r = t.request
            for c in 0..<r.choices {
                var filter = StopFilter()
                swap(&filter, &t.filters[c])
                loop.join(prompt: r.prompt, seed: r.seed, stream: c, options: r.options, maxTokens: r.maxTokens, stop: filter, owner: t,
                          logprobs: r.logprobs, echo: r.echo)
            }
        }
        queuedRequests.store(queue.count, ordering: .relaxed)
        cond.unlock()
    }

    /// Hands every row's released text to its ticket and reports the rows that ended. A ticket
    /// whose buffer would overflow is dropped (its other rows leave with it).
    private func deliver() {
        var overflowed = false
        for r in 0..<loop.rows {
            let t = ticket(r), c = loop.stream(r)
            if overflowed && loop.ended(r) == nil, let why = t.cancelled { loop.end(r, why) }
            else if !loop.withReleased(r, { b in loop.withReleasedLogprobs(r) { t.append(c, b, logprobs: $0) } }) {
                t.cancel(reason: .overflow)
                loop.end(r, .overflow)
                overflowed = true
            }
            if let why = loop.ended(r) { t.finish(c, why, drawn: loop.drawn(r)) }
        }
    }
}
