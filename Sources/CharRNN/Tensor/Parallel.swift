// Tensor/Parallel.swift — a tiny fork-join pool for splitting a minibatch's streams across cores.
//
// The recurrent time loop is sequential in t but independent across the B streams: row b of h[t+1]
// needs only row b of h[t]. So each core runs the whole time loop for its own slice of the batch
// (per-step GEMMs single-threaded on that slice, plus the fused gate kernel), with one join per
// layer — instead of OpenBLAS splitting every tiny per-step GEMM and synchronising 50 times.
// Each worker has its own ticket: `run(parts: n)` bumps the tickets of workers 1…n−1 only, so a
// call never touches the workers it does not need (on 64 cores a 6-part call wakes 5 threads; the
// rest stay parked), and a worker can never mistake one call's part count for another's. Workers
// spin briefly for their next ticket (cheap hand-off for back-to-back calls), then sleep on a
// semaphore. `run` allocates nothing: the work is a C function pointer plus a pointer to a context
// struct on the caller's stack (Swift closures would not do: lending a non-escaping closure to
// another thread goes through `withoutActuallyEscaping`, which heap-allocates its context).

import Foundation
import Synchronization

package final class WorkerPool: @unchecked Sendable {
    /// The process-wide pool; its width is set by `WorkerPool.configure(threads:)`.
    package static let shared = WorkerPool()

    private final class Worker: @unchecked Sendable {
        let wake = DispatchSemaphore(value: 0)
        let sleeping = Atomic<Bool>(false)
        /// Bumped by `run` each time this worker has a part to run; the worker remembers the last it ran.
        let ticket = Atomic<Int>(0)
    }

    private var workers: [Worker] = []
    private let remaining = Atomic<Int>(0)
    /// Work of one part: `(context, part)`.
    package typealias Task = @convention(c) (UnsafeRawPointer, Int) -> Void
    private nonisolated(unsafe) var task: Task? = nil
    private nonisolated(unsafe) var context: UnsafeRawPointer? = nil
    private let lock = NSLock()

    /// Number of parts `run` splits work into (1 = run inline).
    package private(set) var width = 1
    /// Whether `setWidth` has been called.
    package private(set) var configured = false

    /// Stack of each worker thread (a test makes it absurd to see a start fail).
    let stackBytes: Int

    package init() { stackBytes = 1 << 20 }
    init(stackBytes: Int) { self.stackBytes = stackBytes }

    /// Sets the number of cores used (spawns workers on first need; they live for the process).
    /// Not to be called while `run` is in progress.
    /// - Throws: `WorkerPoolError.tooManyThreads` above `Bounds.threadLimit`; `.cannotStart` when
    ///   the system refuses a thread (process table full, `ulimit -u`, memory): the pool then keeps
    ///   the width of the workers that did start, so nothing waits for a thread that never ran.
    package func setWidth(_ n: Int) throws(WorkerPoolError) {
        lock.lock(); defer { lock.unlock() }
        guard n <= Bounds.threadLimit else { throw .tooManyThreads(requested: n, limit: Bounds.threadLimit) }
        configured = true
        while workers.count < n - 1 {
            let w = Worker(), index = workers.count + 1
            let start = Unmanaged.passRetained(WorkerStart(pool: self, worker: w, index: index)).toOpaque()
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            defer { pthread_attr_destroy(&attr) }
            pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
            var rc = pthread_attr_setstacksize(&attr, stackBytes)
            var tid = pthread_t()
            if rc == 0 {
                rc = pthread_create(&tid, &attr, { raw in
                    let s = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                    s.pool.loop(s.worker, index: s.index)
                    return nil
                }, start)
            }
            if rc != 0 {
                Unmanaged<WorkerStart>.fromOpaque(start).release()
                width = workers.count + 1
                throw .cannotStart(requested: n, started: workers.count + 1, code: rc)
            }
            workers.append(w)
        }
        width = max(1, n)
    }

    private final class WorkerStart {
        let pool: WorkerPool, worker: Worker, index: Int
        init(pool: WorkerPool, worker: Worker, index: Int) { self.pool = pool; self.worker = worker; self.index = index }
    }

    /// Calls task(context, part) for part in 0..<parts, part 0 on the calling thread and the others
    /// on workers; returns when all are done. parts ≤ width. `context` must stay valid for the call.
    package func run(parts n: Int, context: UnsafeRawPointer, _ work: Task) {
        precondition(n >= 1 && n <= width, "parts must be in 1...width")
        if n == 1 { work(context, 0); return }
        task = work
        self.context = context
        remaining.store(n - 1, ordering: .relaxed)
        for k in 0..<(n - 1) {
            let worker = workers[k]
            worker.ticket.add(1, ordering: .sequentiallyConsistent)   // publishes task and context
            if worker.sleeping.exchange(false, ordering: .sequentiallyConsistent) { worker.wake.signal() }
        }
        work(context, 0)
        let waitStart = Profiler.now()
        while remaining.load(ordering: .acquiring) != 0 { spinPause() }
        Profiler.add(.poolWait, since: waitStart)
        task = nil
        self.context = nil
    }

    /// `run` with a context value: its address (on the caller's stack) is what `work` receives;
    /// read it back with `ctx.load(as: C.self)`.
    @inline(__always)
    package func run<C>(parts n: Int, with value: C, _ work: Task) {
        withUnsafePointer(to: value) { run(parts: n, context: UnsafeRawPointer($0), work) }
    }

    private func loop(_ w: Worker, index: Int) {
        var seen = 0
        while true {
            // wait for the next ticket: spin a little, then sleep
            var spins = 0
            var t = w.ticket.load(ordering: .acquiring)
            while t == seen {
                spins += 1
                if spins < 20_000 { spinPause() } else {
                    // Dekker-style hand-shake with `run`: publish "sleeping" and re-read the ticket
                    // with full fences (a release store followed by an acquire load may be reordered,
                    // which would lose the wake-up).
                    _ = w.sleeping.exchange(true, ordering: .sequentiallyConsistent)
                    t = w.ticket.load(ordering: .sequentiallyConsistent)
                    if t != seen {
                        // work arrived meanwhile: undo the sleep flag, or consume the wake-up already sent
                        if !w.sleeping.exchange(false, ordering: .sequentiallyConsistent) { w.wake.wait() }
                        break
                    }
                    w.wake.wait()
                    spins = 0
                }
                t = w.ticket.load(ordering: .acquiring)
            }
            // `run` bumps a ticket only for a part it then waits for, so t is exactly one ahead
            seen = t
            task!(context!, index)
            remaining.subtract(1, ordering: .releasing)
        }
    }
}

/// Why the pool cannot have the width asked for.
package enum WorkerPoolError: Error, CustomStringConvertible, Equatable {
    case tooManyThreads(requested: Int, limit: Int)
    /// pthread_create failed with `code` after `started` threads (the caller's included) were running.
    case cannotStart(requested: Int, started: Int, code: Int32)

    package var description: String {
        switch self {
        case let .tooManyThreads(n, limit): return "\(Setting.threads) \(n) is more than \(limit) threads"
        case let .cannotStart(n, started, code):
            return "cannot start worker thread \(started + 1) of \(n): \(String(cString: strerror(code))) "
                + "(the process or user thread limit, ulimit -u, or memory); use a smaller \(Setting.threads)"
        }
    }
}

/// One turn of a spin-wait. It does nothing: the atomic load in each waiting loop is what keeps
/// the loop from being optimised away, and Swift reaches no PAUSE instruction without a C shim
/// (which would only ease the sibling hyper-thread and power; the pool parks after 20,000 turns).
@inline(__always) func spinPause() {}

/// Rows [start, end) of part `k` when `n` rows are split into `parts` near-equal slices.
@inline(__always)
package func slice(_ n: Int, part k: Int, of parts: Int) -> Range<Int> {
    (n * k / parts)..<(n * (k + 1) / parts)
}
