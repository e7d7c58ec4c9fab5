// Train/Trainer.swift — the training loop: truncated BPTT over char-rnn's minibatch layout.
//
// Per iteration: one `TrainingStep` (Train/TrainingStep.swift) on train minibatch k = iteration mod
// ntrain (hidden state carried from the previous minibatch, not back-propagated through): forward,
// backward, the gradient sum over the processes, global norm, clip, update; a NaN/Inf loss or norm
// stops the run (or, with --skip-nonfinite, skips the update). The learning rate of each iteration is
// the schedule's (Train/Schedule.swift; by default char-rnn's: at each epoch end, after --lr-decay-after
// epochs, it is multiplied by --lr-decay). Every --eval-every iterations, at each
// epoch end and at the last iteration: validation over the val split's first `valBatches`
// minibatches (--val-tokens; the whole split by default on small corpora; state reset at its start and
// carried across its minibatches, as char-rnn's eval_split), then the run folder's latest
// checkpoint and, when the val loss improved, its best checkpoint are written atomically (`RunFolder`).
// Nothing is allocated in the loop except the CSV line.
// Planned stops (issue 20): with --patience, each validation that does not lower the best val loss by
// --min-delta adds one to `RunProgress.sinceImprovement` (a checkpointed count; an improving one resets
// it); when it reaches the patience the run stops after that validation's save, and a run resumed in
// that state trains nothing until its patience allows it. With --max-time (`maxTime`), the step after
// which this run's time is spent is validated and saved, and the run stops there. Both mark their
// loss row's `event` and are reported in `TrainSummary.plannedStop`.
// Cold starts (--cold-start-every N) are the step's (`TrainingStep.coldStarts`): the streams whose turn
// it is restart from a zero state before it.
// There is always a reducer (Distributed/Reducers.swift): a process alone has `LocalReducer`, a group of
// one whose collectives are the identity, and runs the same code as each rank of an mpirun job. This
// process computes its block `streams` of the B streams on `localState` (all of them, alone); the
// validation loss is weighted and summed the same way as the training loss; a stop request on any rank
// stops all after the same iteration. Before each save the carried state of all B streams and the
// optimizer moments are gathered (`trainState`, `optimizer`) and the weights hashes compared (alone:
// copies of itself); rank 0 alone writes the loss log and checkpoints. The model's activations and
// workspaces (and x, y) are sized for this process's block, not for all B.

import Foundation

/// What the trainer reports as it goes.
public enum TrainEvent {
    case iteration(it: Int, total: Int, epoch: Double, loss: Double, lr: Float, tokensPerSec: Double, elapsed: Double)
    case validation(it: Int, epoch: Double, valLoss: Double, improved: Bool, seconds: Double)
    case saved(path: String)
    /// --skip-nonfinite skipped the update of iteration `it`; `total` skipped so far.
    case skipped(it: Int, loss: Double, gradNorm: Float, total: Int)
}

/// How a `Trainer.run` ended.
public struct TrainSummary: Sendable {
    /// Iterations done (the run's count, resumed ones included).
    public var iterations: Int
    /// The last iteration's train loss (nats per token).
    public var lastTrainLoss: Double
    /// The last validation loss, if any.
    public var lastValLoss: Double?
    /// The lowest validation loss (the one `best.safetensors` holds).
    public var bestValLoss: Double?
    /// The run folder.
    public var runDir: String
    /// Stopped by a stop request (`shouldStop`) before the last iteration; `latest.safetensors` holds where.
    public var interrupted: Bool
    /// Steps whose update was skipped because the loss or gradient was NaN/Inf (`skipNonFinite`).
    public var skippedSteps: Int = 0
    /// A planned stop before the last iteration (--patience, --max-time); nil when the run reached its
    /// last iteration, was interrupted, or had nothing left to train.
    public var plannedStop: PlannedStop? = nil
    /// The iteration this `run` started from (a resume's checkpoint; 0 for a new run).
    public var startIteration: Int = 0
}

/// Why a run stopped before its last iteration although nobody asked it to.
public enum PlannedStop: Sendable, Equatable {
    /// `--patience` validations in a row did not improve the best val loss by `--min-delta` (this run,
    /// or the run resumed, which then trains nothing).
    case patience
    /// `--max-time` was spent (after a validation and a save at the iteration where it ran out).
    case maxTime
}

/// The training loop of one run: one `TrainingStep` per iteration, validation, checkpoints, stop requests.
public final class Trainer {
    package let corpus: Corpus
    package let batches: Batches
    package let model: CharRNNModel
    package let optimizer: Optimizer
    /// The carried state of all B streams (what checkpoints hold; gathered before each save when data-parallel).
    package let trainState: RecurrentState
    /// Validation state of this process's streams.
    package let evalState: RecurrentState
    /// The processes this one trains with (`LocalReducer` alone) and its block of the B streams.
    package let reducer: any GradientReducer
    package var streams: Range<Int> { step.streams }
    /// The one optimizer step (also what `charrnn bench` times).
    let step: TrainingStep
    /// The carried state of `streams` (trainState itself when alone).
    let localState: RecurrentState
    package internal(set) var meta: CheckpointMeta
    /// The run folder (checkpoints and loss.csv).
    public let runDir: String
    package let totalIterations: Int
    /// Rank 0's (or the single process's); nil on the other ranks.
    var log: LossLog?
    /// A group: a stop request seen by any rank in the last step's or validation's exchange.
    var stopAgreed = false
    /// (2 + 2N) doubles for the validation's and the save's exchanges, allocated once.
    let exchange: UnsafeMutablePointer<Double>
    /// Polled once per iteration and before each validation minibatch; when it returns true the
    /// trainer saves latest (without finishing or repeating a validation) and stops.
    public var shouldStop: () -> Bool = { false }
    /// The last `validate()` was cut short by `shouldStop`.
    package private(set) var validationInterrupted = false
    /// --skip-nonfinite: a step whose loss or gradient norm is NaN/Inf is skipped (no update, the
    /// carried state is reset) instead of stopping the run; `maxConsecutiveSkips` in a row still stop it.
    package var skipNonFinite = false
    package var maxConsecutiveSkips = 10
    /// Steps skipped so far in this process.
    public private(set) var skippedSteps = 0
    /// `--max-time`: seconds of this `run` (from its start; loading excluded) after which the run stops
    /// cleanly: validates at the iteration where it ran out, saves best and latest, reports
    /// `.maxTime`. Data-parallel: rank 0's clock decides, and the decision travels with the step's
    /// exchange, so every rank stops after the same step (another rank's value is not read).
    public var maxTime: Double? = nil
    /// Test seam: called with the 1-based iteration and the gradient buffer after backward, before the
    /// gradient sum (a NaN there tests the divergence handling).
    package var gradientFault: ((_ iteration: Int, _ grads: UnsafeMutablePointer<Float>) -> Void)? {
        get { step.gradientFault } set { step.gradientFault = newValue }
    }
    /// Test seam: called before each checkpoint write, by the process that writes (a slow disk, for
    /// the data-parallel watchdog's test).
    package var saveFault: (() -> Void)?

    package var folder: RunFolder { RunFolder(runDir) }
    /// Where the run stopped: `<run>/latest.safetensors`.
    public var latestPath: String { folder.latest }
    /// The lowest validation loss so far: `<run>/best.safetensors`.
    public var bestPath: String { folder.best }

    /// A new run: initialises the model from `train.seed`.
    /// - Throws: `TrainError.config`, `.nothingToLearn`, `TextError.tooSmall` (layout), `CheckpointError`
    ///   (run folder), `LossLogError`.
    package init(corpus: Corpus, corpusInfo: CorpusInfo, model modelConfig: ModelConfig, train: TrainConfig, runDir: String,
                reducer: any GradientReducer = LocalReducer()) throws {
        if let p = train.problem ?? modelConfig.problem { throw TrainError.config(p) }
        if corpus.vocabulary.count < 2 && corpus.vocabulary.unknownID != nil {
            throw TrainError.everythingUnknown(file: corpusInfo.path, distinct: corpus.stats.distinctTokens, minCount: train.minCount ?? 1)
        }
        if corpus.vocabulary.count < 2 {
            throw TrainError.nothingToLearn(file: corpusInfo.path, token: corpus.vocabulary.tokens.first.map { $0.debugDescription })
        }
        self.corpus = corpus
        batches = try Batches(tokenCount: corpus.count, batch: train.batch, seq: train.seq,
                              trainFrac: train.trainFrac, valFrac: train.valFrac, file: corpusInfo.path)
        trainState = RecurrentState(config: modelConfig, batch: train.batch)
        let streams: Range<Int>
        (streams, localState, evalState) = try Trainer.share(trainState, config: modelConfig, reducer: reducer)
        self.reducer = reducer
        // activations and workspaces for this process's block of streams only
        model = CharRNNModel(config: modelConfig, maxT: train.seq, maxB: streams.count)
        optimizer = Optimizer(kind: train.optim, count: model.layout.count)
        step = TrainingStep(model: model, optimizer: optimizer, reducer: reducer, batch: train.batch, seq: train.seq,
                            precision: train.stepPrecision, coldStartEvery: train.coldStartEvery)
        var progress = RunProgress()
        progress.rng = Xoshiro256(seed: train.seed)
        progress.lr = train.lr
        model.initialize(rng: &progress.rng)
        meta = CheckpointMeta(model: modelConfig, train: train, vocabulary: corpus.vocabulary, corpus: corpusInfo,
                              progress: progress, trainBatches: batches.ntrain)
        meta.extra[VocabCounts.key] = VocabCounts.encode(corpus.tokenCounts())
        self.runDir = runDir
        totalIterations = try Trainer.total(train, ntrain: batches.ntrain)
        exchange = .allocate(capacity: 2 + 2 * reducer.size)
        // rank 0 alone writes the run folder: another rank's own --out gets no empty folder
        if reducer.rank == 0 { try Trainer.makeDirectory(runDir) }
        log = reducer.rank == 0 ? try LossLog(path: RunFolder(runDir).lossLog, keepThrough: nil) : nil
    }

    /// Continues the run restored in `point` (its run folder), bit for bit, on `corpus`. `newCorpus`
    /// (--allow-new-corpus) accepts a different corpus, already encoded with the checkpoint's
    /// vocabulary, and records it.
    /// - Throws: `TrainError.vocabularyMismatch`, `.corpusLengthMismatch`, `TextError.tooSmall`, `LossLogError`.
    package init(resume point: ResumePoint, corpus: Corpus, newCorpus: CorpusInfo? = nil, reducer: any GradientReducer = LocalReducer()) throws {
        let checkpoint = point.checkpoint, train = point.train
        guard corpus.vocabulary == checkpoint.meta.vocabulary else {
            let (a, b) = (corpus.vocabulary.tokens, checkpoint.meta.vocabulary.tokens)
            if a.count == b.count, let i = a.indices.first(where: { Array(a[$0].utf8) != Array(b[$0].utf8) }) {
                throw TrainError.vocabularyContentMismatch(checkpoint: checkpoint.path, size: a.count, index: i,
                                                           ours: a[i].debugDescription, theirs: b[i].debugDescription)
            }
            throw TrainError.vocabularyMismatch(checkpoint: checkpoint.path, ours: corpus.vocabulary.count, theirs: checkpoint.meta.vocabulary.count)
        }
        guard corpus.count == checkpoint.meta.corpus.tokens || newCorpus != nil else {
            throw TrainError.corpusLengthMismatch(checkpoint: checkpoint.path, tokens: corpus.count, expected: checkpoint.meta.corpus.tokens)
        }
        self.corpus = corpus
        batches = try Batches(tokenCount: corpus.count, batch: train.batch, seq: train.seq,
                              trainFrac: train.trainFrac, valFrac: train.valFrac, file: checkpoint.meta.corpus.path)
        model = point.model
        optimizer = point.optimizer
        trainState = point.state
        let streams: Range<Int>
        (streams, localState, evalState) = try Trainer.share(trainState, config: model.config, reducer: reducer)
        self.reducer = reducer
        precondition(model.maxB >= streams.count, "the resume point's model is built for \(model.maxB) streams; build it with the reducer (ResumePoint(…reducer:))")
        step = TrainingStep(model: model, optimizer: optimizer, reducer: reducer, batch: train.batch, seq: train.seq,
                            precision: train.stepPrecision, coldStartEvery: train.coldStartEvery)
        meta = checkpoint.meta
        meta.train = train
        if let newCorpus {
            meta.corpus = newCorpus; meta.trainBatches = batches.ntrain
            meta.extra[VocabCounts.key] = VocabCounts.encode(corpus.tokenCounts())
        }
        runDir = parentPath(checkpoint.path)
        totalIterations = try Trainer.total(train, ntrain: batches.ntrain)
        exchange = .allocate(capacity: 2 + 2 * reducer.size)
        log = reducer.rank == 0 ? try LossLog(path: RunFolder(runDir).lossLog, keepThrough: meta.progress.iteration) : nil
    }

    /// Continues the run saved in `checkpoint` (its run folder), bit for bit: `ResumePoint` then
    /// `init(resume:corpus:newCorpus:)`. `maxIters`/`epochs` replace the stopping point when given.
    package convenience init(resume checkpoint: Checkpoint.Loaded, corpus: Corpus, maxIters: Int?, epochs: Double?, newCorpus: CorpusInfo? = nil) throws {
        try self.init(resume: ResumePoint(checkpoint, maxIters: maxIters, epochs: epochs), corpus: corpus, newCorpus: newCorpus)
    }

    deinit { exchange.deallocate() }

    /// This process's streams, their carried state (copied from `full`; `full` itself when alone) and
    /// validation state.
    static func share(_ full: RecurrentState, config: ModelConfig, reducer: any GradientReducer) throws
        -> (Range<Int>, RecurrentState, RecurrentState) {
        let B = full.batch
        guard B >= reducer.size else { throw DistributedError.tooFewStreams(batch: B, ranks: reducer.size) }
        let streams = reducer.streams(of: B)
        if streams.count == B { return (streams, full, RecurrentState(config: config, batch: B)) }
        let local = RecurrentState(config: config, batch: streams.count)
        let H = config.hidden
        for (l, f) in zip(local.h + local.c, full.h + full.c) { l.ptr.update(from: f.ptr + streams.lowerBound * H, count: streams.count * H) }
        return (streams, local, RecurrentState(config: config, batch: streams.count))
    }

    /// The run's last iteration: `maxIters`, else `epochs` × `ntrain` rounded, within `Bounds.maxIterations`.
    /// - Throws: `TrainError.config` when that is not a count of iterations this trainer can run.
    static func total(_ t: TrainConfig, ntrain: Int) throws -> Int {
        if let m = t.maxIters {
            guard m >= 1 && m <= Bounds.maxIterations else { throw TrainError.config("\(Setting.maxIters) must be between 1 and \(Bounds.maxIterations) (got \(m))") }
            return m
        }
        let n = (t.epochs * Double(ntrain)).rounded()
        guard n.isFinite, n <= Double(Bounds.maxIterations) else {
            throw TrainError.config("\(Setting.epochs) \(Bounds.show(t.epochs)) × \(ntrain) minibatches per epoch is more than \(Bounds.maxIterations) iterations; use a smaller \(Setting.epochs) or \(Setting.maxIters)")
        }
        return max(1, Int(n))
    }

    static func makeDirectory(_ dir: String) throws {
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            throw CheckpointError(file: dir, message: "cannot create run directory: \((error as NSError).localizedDescription)")
        }
    }

    // MARK: - Validation

    /// Minibatches each validation runs: the first `valBatches` of the val split (`Batches.valBatches`
    /// for the run's `valTokens`), the same at every validation.
    package var valBatches: Int { batches.valBatches(maxTokens: meta.train.valTokens) }

    /// What a validation covers, for the set-up report.
    package var validationSummary: String {
        let m = valBatches, tokens = m * batches.batch * batches.seq, all = batches.nval * batches.batch * batches.seq
        if m == batches.nval { return "validation: the whole val split, \(tokens) tokens (\(m) minibatches)" }
        return String(format: "validation: the first %d of %d val minibatches, all %d streams: %d of %d tokens (%.1f%% of the split; \(Setting.valTokens) all for the whole split)",
                      m, batches.nval, batches.batch, tokens, all, 100 * Double(tokens) / Double(all))
    }

    /// Mean cross-entropy over the first `valBatches` minibatches of the val split (state reset at
    /// their start, carried across them): each rank's streams, weighted Bᵣ/B, summed in rank order.
    /// Before each minibatch the ranks share their stop requests (`shouldStop`, polled once per
    /// minibatch): a request on any rank cuts the validation short on all and sets
    /// `validationInterrupted` (the value returned is then not a validation loss). The exchange also
    /// keeps the ranks in step, so that none waits for more than one minibatch of another's (the
    /// watchdog's limit holds for uneven blocks and long validations).
    package func validate() -> Double {
        let T = meta.train.seq, B = meta.train.batch, Br = streams.count
        reducer.enter(.validation(iteration: meta.progress.iteration))
        evalState.reset()
        validationInterrupted = false
        let m = valBatches
        var total = 0.0
        for k in 0..<m {
            exchange[0] = shouldStop() ? 1 : 0
            reducer.gather(exchange, count: 1, into: exchange + 1)
            if (0..<reducer.size).contains(where: { exchange[1 + $0] != 0 }) {
                validationInterrupted = true; stopAgreed = true
                return .nan
            }
            batches.fill(.val, index: k, corpus: corpus, streams: streams, x: step.x.ptr, y: step.y.ptr)
            total += model.evaluate(x: step.x.ptr, y: step.y.ptr, T: T, B: Br, state: evalState) * Double(Br) / Double(B)
        }
        exchange[0] = total
        reducer.gather(exchange, count: 1, into: exchange + 1)
        total = 0
        for r in 0..<reducer.size { total += exchange[1 + r] }          // in rank order
        return total / Double(max(1, m))
    }

    // MARK: - Data-parallel

    /// Data-parallel start: every rank must run the same training and model config, vocabulary,
    /// corpus (hash and length) and start from the same weights and progress; else every rank throws
    /// the same `DistributedError.mismatch` naming the first rank and what differs. Alone there is no
    /// one to differ from, and nothing is encoded or hashed.
    package func checkAgreement() throws {
        guard reducer.size > 1 else { return }          // no work at start-up for a process alone
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        func json<T: Encodable>(_ v: T) -> String { (try? enc.encode(v)).map { String(decoding: $0, as: UTF8.self) } ?? "?" }
        let items: [(String, String)] = [
            ("training config", json(meta.train)),
            ("model config", json(meta.model)),
            ("vocabulary", json(meta.vocabulary.tokens) + (meta.vocabulary.unknownID.map { " unk \($0)" } ?? "")),
            ("corpus", "\(corpus.count) tokens, hash \(meta.corpus.hash ?? "none")"),
            ("start", "iteration \(meta.progress.iteration), weights hash \(String(weightsHash(model.params.ptr, count: model.layout.count), radix: 16))"),
        ]
        let mine = items.map { $0.1 }.joined(separator: "\u{0}")
        let all = reducer.gatherBytes(Array(mine.utf8)).map { String(decoding: $0, as: UTF8.self).components(separatedBy: "\u{0}") }
        for (r, theirs) in all.enumerated() where r > 0 {
            for (i, item) in items.enumerated() where theirs.count != items.count || theirs[i] != all[0][i] {
                let what: String
                if i == 0, let a = try? JSONSerialization.jsonObject(with: Data(all[0][0].utf8)) as? [String: Any],
                   let b = try? JSONSerialization.jsonObject(with: Data((theirs.first ?? "").utf8)) as? [String: Any] {
                    let keys = Set(a.keys).union(b.keys).sorted().filter { "\(a[$0] ?? "-")" != "\(b[$0] ?? "-")" }
                    what = "training config (" + keys.map { "\($0) \(b[$0].map { "\($0)" } ?? "-") vs \(a[$0].map { "\($0)" } ?? "-")" }.joined(separator: ", ") + ")"
                } else if theirs.count == items.count, i >= 3 {
                    what = "\(item.0) (\(theirs[i]) vs \(all[0][i]))"
                } else {
                    what = item.0
                }
                throw DistributedError.mismatch(rank: r, what: what)
            }
        }
    }

    /// Gathers the carried state of all B streams into `trainState` and compares the weights hashes.
    private func gatherForSave() throws {
        let H = model.config.hidden
        let counts = (0..<reducer.size).map { reducer.streams(of: meta.train.batch, rank: $0).count * H }
        for (l, f) in zip(localState.h + localState.c, trainState.h + trainState.c) { reducer.gatherBlocks(l.ptr, into: f.ptr, counts: counts) }
        // each rank stepped only its chunk of the moments (the sharded update)
        for m in optimizer.moments { reducer.allgatherChunks(m.ptr, count: optimizer.count) }
        let h = weightsHash(model.params.ptr, count: model.layout.count)
        let hashes = reducer.gather([Double(bitPattern: h)]).map(\.bitPattern)
        let differ = hashes.indices.filter { hashes[$0] != hashes[0] }
        if !differ.isEmpty { throw DistributedError.weightsDiverged(iteration: meta.progress.iteration, ranks: differ) }
    }

    // MARK: - Loop

    /// Trains to the run's last iteration (or a stop request), validating and saving on the way; `report` sees every event.
    public func run(report: (TrainEvent) -> Void) throws -> TrainSummary {
        let T = meta.train.seq, B = meta.train.batch, ntrain = batches.ntrain
        let train = meta.train
        var lastLoss = Double.nan
        var interrupted = false
        var savedAny = FileManager.default.fileExists(atPath: latestPath)
        let startClock = DispatchTime.now().uptimeNanoseconds
        let elapsedBefore = meta.progress.elapsed
        var rowTokens = 0
        var rowTime = 0.0
        var consecutiveSkips = 0
        let rule = LearningRate(train, total: totalIterations)
        let startIteration = meta.progress.iteration
        var planned: PlannedStop? = nil
        // --max-time, on rank 0's clock (another rank never says the budget is spent)
        let budget = reducer.rank == 0 ? maxTime : nil
        func budgetSpent() -> Bool {
            guard let budget else { return false }
            return Double(DispatchTime.now().uptimeNanoseconds - startClock) / 1e9 >= budget
        }
        while meta.progress.iteration < totalIterations {
            // a run that stopped early (this one, or the one resumed) trains on only if --patience now allows it
            if let p = train.patience, meta.progress.sinceImprovement >= p { planned = .patience; break }
            if step.stopBeforeNextStep(agreed: stopAgreed, poll: shouldStop) { interrupted = true; break }
            let k = meta.progress.iteration % ntrain
            let lrUsed = rule.rate(iteration: meta.progress.iteration, current: meta.progress.lr)
            let r = step.run(iteration: meta.progress.iteration + 1, state: localState, rng: &meta.progress.rng, lr: lrUsed,
                             clipMode: train.clipMode, clip: train.clip, stopRequested: shouldStop, budgetSpent: budgetSpent) { x, y, streams in
                batches.fill(.train, index: k, corpus: corpus, streams: streams, x: x, y: y)
            }
            stopAgreed = r.stopAgreed
            let loss = r.loss, norm = r.norm
            if !r.updated {
                guard skipNonFinite, consecutiveSkips + 1 < maxConsecutiveSkips else {
                    let last = savedAny ? latestPath : nil
                    if skipNonFinite {
                        throw TrainError.tooManyNonFiniteSteps(steps: maxConsecutiveSkips, first: meta.progress.iteration + 2 - maxConsecutiveSkips,
                                                               last: meta.progress.iteration + 1, skipped: skippedSteps + 1, checkpoint: last)
                    }
                    throw TrainError.nonFinite(iteration: meta.progress.iteration + 1, loss: loss, gradNorm: norm, checkpoint: last)
                }
                // Skip the update: parameters and moments stay as they were; the carried state may hold
                // the non-finite values, so it restarts from zero. The data cursor moves on.
                consecutiveSkips += 1; skippedSteps += 1
                localState.reset()
                meta.progress.iteration += 1
                report(.skipped(it: meta.progress.iteration, loss: loss, gradNorm: norm, total: skippedSteps))
                continue
            }
            consecutiveSkips = 0
            let dt = r.seconds
            meta.progress.iteration += 1
            meta.progress.optimizerSteps = optimizer.stepCount
            meta.progress.elapsed = elapsedBefore + Double(DispatchTime.now().uptimeNanoseconds - startClock) / 1e9
            lastLoss = loss
            rowTokens += T * B; rowTime += dt
            let it = meta.progress.iteration
            let epochEnd = it % ntrain == 0
            if epochEnd { meta.progress.lr = LearningRate.decayed(meta.progress.lr, train: train, epochs: it / ntrain) }
            let tps = Double(rowTokens) / max(rowTime, 1e-9)
            report(.iteration(it: it, total: totalIterations, epoch: meta.epoch, loss: loss, lr: lrUsed, tokensPerSec: tps,
                              elapsed: meta.progress.elapsed))
            func logRow(valLoss: Double?, event: String? = nil) {
                log?.append(iteration: it, epoch: meta.epoch, trainLoss: loss, valLoss: valLoss, lr: lrUsed, gradNorm: norm,
                           tokensPerSec: tps, elapsed: meta.progress.elapsed, event: event)
                rowTokens = 0; rowTime = 0
            }
            // alone: this process's clock now; a group: rank 0's, as it travelled with this step
            let timeUp = step.stopBeforeNextStep(agreed: r.budgetSpent, poll: budgetSpent)
            if it % train.evalEvery == 0 || epochEnd || it == totalIterations || timeUp {
                // The row goes out before the checkpoint: after a kill -9 the log may run ahead of
                // latest (resume cuts it back), but it never misses a row the checkpoint has passed.
                let early = try validateAndSave(report: report, timeUp: timeUp && it < totalIterations,
                                                beforeSaving: { logRow(valLoss: $0, event: $1) })
                savedAny = true
                if !validationInterrupted && it < totalIterations {
                    if early { planned = .patience; break }
                    if timeUp { planned = .maxTime; break }
                }
            } else if it % train.logEvery == 0 {
                logRow(valLoss: nil)
            }
        }
        if consecutiveSkips > 0 && !interrupted {
            // The last step(s) were skipped, so their validation and checkpoint did not run: do them now
            // (no loss row: the skipped steps have no train loss).
            try validateAndSave(report: report, beforeSaving: { _, _ in })
        }
        // a stop request that cut a validation short, the last iteration's included
        if validationInterrupted { interrupted = true }
        if interrupted {
            try save(improved: false)
            report(.saved(path: latestPath))
        }
        var summary = TrainSummary(iterations: meta.progress.iteration, lastTrainLoss: lastLoss, lastValLoss: meta.progress.lastValLoss,
                                   bestValLoss: meta.progress.bestValLoss, runDir: runDir, interrupted: interrupted, skippedSteps: skippedSteps)
        summary.plannedStop = interrupted ? nil : planned
        summary.startIteration = startIteration
        return summary
    }

    /// Whether the patience count of `v` against the best val loss `best` (before `v`) grows: `v` did
    /// not improve `best` by at least `minDelta` (a NaN never improves; the first validation always does).
    package static func withoutImprovement(_ v: Double, best: Double?, minDelta: Double) -> Bool {
        guard let best else { return !v.isFinite }
        return !(v < best - minDelta)
    }

    /// Validates at the current iteration, records the val loss (and the best one when it improved)
    /// and the patience count, reports `.validation`, calls `beforeSaving` with the val loss and the
    /// row's event (a planned stop: `early_stop` when the patience is spent, else `max_time` when
    /// `timeUp`), then saves and reports `.saved`. Returns whether the patience is spent.
    /// An interrupted validation records nothing and saves nothing: `beforeSaving(nil, nil)`, and the
    /// loop, seeing the stop request, saves latest once.
    @discardableResult
    private func validateAndSave(report: (TrainEvent) -> Void, timeUp: Bool = false,
                                 beforeSaving: (_ valLoss: Double?, _ event: String?) -> Void) throws -> Bool {
        let it = meta.progress.iteration
        let v0 = DispatchTime.now().uptimeNanoseconds
        let v = validate()
        if validationInterrupted { beforeSaving(nil, nil); return false }
        var spent = false
        if let p = meta.train.patience {
            let worse = Trainer.withoutImprovement(v, best: meta.progress.bestValLoss, minDelta: meta.train.minDelta ?? 0)
            meta.progress.sinceImprovement = worse ? meta.progress.sinceImprovement + 1 : 0
            spent = meta.progress.sinceImprovement >= p
        }
        let improved = meta.progress.bestValLoss.map { v < $0 } ?? true
        meta.progress.lastValLoss = v
        if improved { meta.progress.bestValLoss = v; meta.progress.bestIteration = it }
        report(.validation(it: it, epoch: meta.epoch, valLoss: v, improved: improved,
                           seconds: Double(DispatchTime.now().uptimeNanoseconds - v0) / 1e9))
        let last = it >= totalIterations
        beforeSaving(v, last ? nil : spent ? LossLog.earlyStopEvent : timeUp ? LossLog.maxTimeEvent : nil)
        try save(improved: improved)
        report(.saved(path: latestPath))
        return spent
    }

    /// Writes best (when `improved`) and then latest, each atomically, from one serialisation. Best goes first so that a
    /// kill between the two leaves latest at the previous save: the resumed run redoes this
    /// iteration and writes best again, instead of carrying a best loss whose file was never written.
    /// Data-parallel: the ranks gather the state, rank 0 writes, and all meet once more after the write
    /// (`checkpointWritten`: the other ranks' wait for the write is not a silent peer).
    func save(improved: Bool) throws {
        reducer.enter(.checkpoint(iteration: meta.progress.iteration))
        try gatherForSave()
        if reducer.rank == 0 {
            saveFault?()
            try Checkpoint.save(to: improved ? [bestPath, latestPath] : [latestPath], model: model, optimizer: optimizer,
                                state: trainState, meta: meta)
        }
        reducer.enter(.checkpointWritten(iteration: meta.progress.iteration))
        exchange[0] = 0
        reducer.gather(exchange, count: 1, into: exchange + 1)
    }
}
