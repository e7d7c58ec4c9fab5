// Train/TrainingStep.swift — one optimizer step on one minibatch, the only one there is: `Trainer`
// runs it at every iteration and `charrnn bench` times it (Bench/Benchmark.swift), so a change to the
// step (a clipping rule, a precision) is made here once and bench times what train runs.
//
// The step, in order: the caller fills (x, y) for this process's block `streams` of the B streams →
// the streams whose turn it is restart from a zero state (--cold-start-every, `coldStarts`) →
// forward and backward on that block (hidden state carried in `state`, dropout masks keyed by one word
// of the run's generator) → the gradient sum over the processes (`GradientReducer`: scaled by Bᵣ/B,
// reduce-scattered in rank order; a process alone is `LocalReducer`, whose collectives are the identity,
// so its arithmetic is the single-process path bit for bit) → one exchange of the weighted losses, the
// stop requests (and rank 0's "time budget spent", --max-time) and the chunks' squared norms, added in rank order (the global loss and gradient norm,
// the same bits on every process) → when both are finite: clip and update this process's chunk of the
// parameters and moments, then every chunk goes to every process. A non-finite loss or norm leaves
// parameters and moments untouched (`StepResult.updated` is false); what to do then is the caller's.
// Nothing is allocated: x, y and the exchange buffer are sized once.
// Precision (`--precision`, issue 19) is decided here, once, for train and bench alike: in bf16 the step
// switches its model to bf16 products at construction (Model/MixedPrecision.swift) and re-rounds the
// weights' bf16 copies once per step (a process alone: in the update's own pass, block by block),
// right after the update has reached every process, so the next
// forward and backward read the updated weights (a step that did not update keeps its copies; the
// first step, or one after a restore, packs them itself). Everything the step does in float32 above
// (the gradient sum, the norm, clipping, the update) is the same code in both precisions.

import Foundation

/// What one step did.
struct StepResult {
    /// Global mean cross-entropy of the minibatch (nats per token).
    var loss: Double
    /// Global L2 norm of the gradient, before clipping.
    var norm: Float
    /// Whether the parameters were updated (false when the loss or the norm is NaN/Inf).
    var updated: Bool
    /// A stop request of some process travelled with this step's exchange (a group only; see
    /// `TrainingStep.stopBeforeNextStep`).
    var stopAgreed: Bool
    /// Some process (rank 0, the one whose clock decides --max-time) said with this step's exchange
    /// that the time budget is spent (a group only).
    var budgetSpent: Bool = false
    /// Seconds from the start of forward to the end of the update (the fill excluded).
    var seconds: Double
    /// Of those, seconds spent in the exchanges between processes.
    var communicationSeconds: Double
}

final class TrainingStep {
    let model: CharRNNModel
    let optimizer: Optimizer
    let reducer: any GradientReducer
    /// B, the streams of the global minibatch, and this process's block of them.
    let batch: Int
    let streams: Range<Int>
    /// Steps per minibatch (T); x and y hold T × Bᵣ token ids, time-major.
    let seq: Int
    let x: IntStorage, y: IntStorage
    /// The arithmetic of the model's training products.
    let precision: Precision
    /// `--cold-start-every`: each stream restarts from a zero state every this many steps (nil: never).
    let coldStartEvery: Int?
    /// (3 + 3N) doubles: this process's loss, stop flags (1: a stop request, 2: the time budget spent)
    /// and squared chunk norm, then every process's.
    private let exchange: UnsafeMutablePointer<Double>
    /// Test seam: called with the 1-based iteration and the gradient buffer after backward, before the
    /// gradient sum (the tests put a NaN there).
    var gradientFault: ((_ iteration: Int, _ grads: UnsafeMutablePointer<Float>) -> Void)?

    init(model: CharRNNModel, optimizer: Optimizer, reducer: any GradientReducer, batch: Int, seq: Int,
         precision: Precision = .fp32, coldStartEvery: Int? = nil) {
        precondition(batch >= reducer.size, "fewer streams than processes")
        precondition(coldStartEvery.map { $0 >= 1 } ?? true, "cold starts every n ≥ 1 steps")
        self.coldStartEvery = coldStartEvery
        precondition(precision == .bf16 || !model.trainsInBF16, "a model switched to bf16 training stays bf16")
        self.precision = precision
        if precision == .bf16 { model.enableBF16Training() }
        self.model = model
        self.optimizer = optimizer
        self.reducer = reducer
        self.batch = batch
        self.seq = seq
        streams = reducer.streams(of: batch)
        precondition(model.maxB >= streams.count && model.maxT >= seq, "the model's workspace is smaller than the step's block")
        x = IntStorage(count: seq * streams.count)
        y = IntStorage(count: seq * streams.count)
        exchange = .allocate(capacity: 3 + 3 * reducer.size)
    }

    deinit { exchange.deallocate() }

    /// --cold-start-every n: zeroes the carried state of each of this process's streams (global index b)
    /// whose turn it is before 1-based `iteration`, (iteration + b) mod n = 0, so a stream restarts
    /// every n steps and about B/n of them do at each one: the model learns the zero state that
    /// sampling, eval and serving begin from (README, Cold starts). A function of the iteration and
    /// the global stream index only: the same streams restart alone or under mpirun, and after a resume.
    static func coldStarts(_ state: RecurrentState, streams: Range<Int>, iteration: Int, every n: Int) {
        for j in 0..<state.batch where (iteration + streams.lowerBound + j) % n == 0 { state.reset(stream: j) }
    }

    /// Whether to stop before the next step, given this process's request `poll`. A process alone
    /// answers its own request at once. In a group a request travels with a step's exchange (asking
    /// costs no collective of its own), so the ranks stop together after the step in flight: `agreed`
    /// is the last step's `StepResult.stopAgreed` (or a validation's).
    func stopBeforeNextStep(agreed: Bool, poll: () -> Bool) -> Bool {
        reducer.size == 1 ? poll() : agreed
    }

    /// One step on the minibatch that `fill` writes into (x, y) (time-major, T × Bᵣ, for the block
    /// `streams`). `iteration` is the 1-based number of this step (the watchdog's phase and the fault
    /// seam); `rng` gives the dropout key (one word per step, when the model has dropout); `stopRequested`
    /// is polled once, for the exchange, in a group only, and so is `budgetSpent` (--max-time).
    func run(iteration: Int, state: RecurrentState, rng: inout Xoshiro256, lr: Float, clipMode: ClipMode, clip: Float,
             stopRequested: () -> Bool, budgetSpent: () -> Bool = { false },
             fill: (_ x: UnsafeMutablePointer<Int32>, _ y: UnsafeMutablePointer<Int32>, _ streams: Range<Int>) -> Void) -> StepResult {
        let n = model.layout.count, Br = streams.count
        reducer.enter(.step(iteration: iteration))
        fill(x.ptr, y.ptr, streams)
        if let n = coldStartEvery { TrainingStep.coldStarts(state, streams: streams, iteration: iteration, every: n) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        // the dropout masks of this block's rows are the whole batch's rows of these streams
        let draw = DropoutDraw(key: model.config.dropout > 0 ? rng.next() : 0, firstStream: streams.lowerBound)
        let local = model.trainStep(x: x.ptr, y: y.ptr, T: seq, B: Br, state: state, dropout: draw)
        gradientFault?(iteration, model.grads.ptr)
        let c0 = DispatchTime.now().uptimeNanoseconds
        let w = Double(Br) / Double(batch)
        if Br != batch { scal(n: n, alpha: Float(w), x: model.grads.ptr) }
        exchange[2] = reducer.reduceScatterGradient(model.grads.ptr, count: n)
        exchange[0] = local * w
        exchange[1] = reducer.size > 1 ? (stopRequested() ? 1 : 0) + (budgetSpent() ? 2 : 0) : 0
        reducer.gather(exchange, count: 3, into: exchange + 3)
        var loss = 0.0, squares = 0.0, stop = false, spent = false
        for r in 0..<reducer.size {                                      // in rank order
            loss += exchange[3 + 3 * r]
            let flags = exchange[4 + 3 * r]
            if flags == 1 || flags == 3 { stop = true }
            if flags >= 2 { spent = true }
            squares += exchange[5 + 3 * r]
        }
        // one process: √(x²) of a float x is x again (x² is exact in Double), the single-process norm
        let norm = Float(squares.squareRoot())
        var comm = DispatchTime.now().uptimeNanoseconds - c0
        let updated = loss.isFinite && norm.isFinite
        if updated && precision == .bf16 && reducer.size == 1 {
            // a process alone: the update rounds each block of the weights into the bf16 copies as it goes
            let probe = Profiler.start()
            GradientClip.apply(model.grads.ptr, count: n, mode: clipMode, clip: clip, norm: norm)
            model.updateAndPackBF16(optimizer: optimizer, lr: lr)
            Profiler.stop(.optimizer, probe)
        } else if updated {
            let probe = Profiler.start()
            optimizer.clipAndStep(params: model.params.ptr, grads: model.grads.ptr, norm: norm, mode: clipMode, clip: clip,
                                  lr: lr, range: reducer.chunk(of: n))
            Profiler.stop(.optimizer, probe)
            let c2 = DispatchTime.now().uptimeNanoseconds
            reducer.allgatherChunks(model.params.ptr, count: n)
            comm += DispatchTime.now().uptimeNanoseconds - c2
            // the weights every process now has, rounded once for the next step's products
            if precision == .bf16 {
                let pack = Profiler.start()
                model.packBF16Weights()
                Profiler.stop(.bf16WeightPack, pack)
            }
        }
        return StepResult(loss: loss, norm: norm, updated: updated, stopAgreed: stop, budgetSpent: spent,
                          seconds: Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9,
                          communicationSeconds: Double(comm) / 1e9)
    }
}
