// Distributed/Reducers.swift — data-parallel training: what a process of an N-process run shares.
//
// Dims: B streams, Bᵣ = streams of rank r, P parameters, N processes (ranks), c = ⌈P/N⌉.
// The global minibatch is the single-process one (char-rnn's B streams); rank r computes the
// contiguous block `streams(r)` = [⌊rB/N⌋, ⌊(r+1)B/N⌋) (uneven blocks allowed). Each rank's model
// gives the gradient of the mean over its T·Bᵣ rows; scaled by Bᵣ/B and summed over the ranks it is the
// gradient of the global mean, and the same weighting gives the global loss.
// Deterministic sum: MPI_Allreduce may combine partial sums in any order (the algorithm depends on
// sizes and topology), so no reduction happens inside MPI. A reduce-scatter by hand
// (`reduceScatterInRankOrder`): the gradient buffer is cut into N chunks of c floats (the last one
// shorter), MPI_Alltoallv hands chunk j of every rank to rank j, and rank j adds its N copies in rank
// order ((g₀ + g₁) + g₂) + … The update is sharded as well (ZeRO stage 1: the optimizer state stays
// whole on every rank, its update does not): rank j takes the squared norm of its reduced chunk, the
// ranks exchange those N numbers with the loss and add them in rank order (the global norm, the same
// bits everywhere), and rank j clips and steps only its chunk of the parameters and moments. One
// in-place MPI_Allgatherv (`allgatherChunks`) then hands every rank's updated parameter chunk to all,
// so every rank holds the same bytes. Each rank sends 2·(N−1)·c·4 bytes per iteration (what a ring
// allreduce sends), computes 1/N of the optimizer step instead of all of it, and the result depends
// on N only, not on MPI's algorithm choices. The moments of the other ranks' chunks are gathered
// only when a checkpoint is written (`Trainer.gatherForSave`).
// Watchdog (`MPIReducer.timeout`, CHARRNN_MPI_TIMEOUT): every collective waits at most `timeout`
// seconds of silence (Distributed/MPI.swift), then the rank prints one line naming itself, the peer it
// waited for and the phase (`CollectivePhase`), and calls MPI_Abort, which ends the job: a link that
// drops packets without a reset would otherwise block the ranks for TCP's retransmission timeout. The
// limit applies where all ranks do the same work and so arrive together: the training step (their
// blocks differ by one stream at most), validation (synchronised at every minibatch), the gathering
// before a save. Two waits are for work of one rank alone, and get `unevenTimeout` (40 × timeout):
// start-up (each rank loads the corpus and builds its model at its own pace) and, on ranks other than
// 0, the wait while rank 0 writes the checkpoint (`checkpointWritten`). Rank 0 itself waits there with
// the short limit once its write is done, so a link that died during the write still ends the job
// within `timeout` of the write's end.

import Foundation

/// What data-parallel training needs from the other processes. Every method is collective: all ranks
/// call it, in the same order. A process alone trains with `LocalReducer`, a group of one.
package protocol GradientReducer: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Reduce-scatter in rank order: afterwards `buffer[chunk(of: count)]` holds the elementwise sum
    /// over the ranks of that chunk, added in rank order (the same bits on whichever rank adds them);
    /// the rest of `buffer` is left as it was.
    func reduceScatterInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// Rank j's `chunk(of: count, rank: j)` of `buffer` copied into the same place on every rank.
    func allgatherChunks(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// `values` of every rank (all ranks give the same count), rank 0's first.
    func gather(_ values: [Double]) -> [Double]
    /// Byte strings of every rank (any lengths), in rank order.
    func gatherBytes(_ bytes: [UInt8]) -> [[UInt8]]
    /// Rows of a (B, H)-style buffer: rank j's `counts[j]` floats (its block, in rank order) gathered
    /// into `full` on every rank; `local` is this rank's block.
    func gatherBlocks(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, counts: [Int])
    /// `count` doubles of every rank into `out` (size · count), rank 0's first, without allocating.
    func gather(_ values: UnsafePointer<Double>, count: Int, into out: UnsafeMutablePointer<Double>)
    /// What the following collectives belong to (the watchdog's limit and message). Not collective.
    func enter(_ phase: CollectivePhase)
}

/// What the ranks are doing when they exchange.
package enum CollectivePhase: Sendable, Equatable {
    /// Start-up: loading the corpus, building the model, comparing the ranks (uneven work).
    case setup
    /// The exchanges of training iteration `iteration` (1-based).
    case step(iteration: Int)
    /// The validation at `iteration`.
    case validation(iteration: Int)
    /// Gathering the carried state and the weights hashes for the checkpoint of `iteration`.
    case checkpoint(iteration: Int)
    /// After rank 0 wrote the checkpoint of `iteration` (the other ranks wait for the write).
    case checkpointWritten(iteration: Int)
    /// The meeting before MPI_Finalize (which has no time limit of its own); rank 0 may arrive late
    /// (bench: it alone samples and times sgemm).
    case end
}

extension GradientReducer {
    /// Rank r's block of `B` streams: [⌊rB/N⌋, ⌊(r+1)B/N⌋).
    package func streams(of B: Int, rank r: Int? = nil) -> Range<Int> {
        let r = r ?? rank
        return (r * B / size)..<((r + 1) * B / size)
    }

    /// Rank r's chunk of a `count`-float buffer in the sharded update: [r·c, (r+1)·c) ∩ [0, count),
    /// c = ⌈count/N⌉ (the last chunks may be shorter, or empty when count < N).
    package func chunk(of count: Int, rank r: Int? = nil) -> Range<Int> {
        let c = (count + size - 1) / size, r = r ?? rank
        return min(r * c, count)..<min((r + 1) * c, count)
    }

    /// Bytes each rank sends per training iteration for `parameters` floats: (N−1) chunks in the
    /// reduce-scatter and (N−1) in the allgather.
    package func bytesSentPerIteration(parameters: Int) -> Int { 2 * (size - 1) * ((parameters + size - 1) / size) * 4 }

    /// The gradient's reduce-scatter; returns the squared norm of this rank's reduced chunk (the
    /// global norm is the square root of these added over the ranks in rank order; with one rank it
    /// is the single process's norm again: x² of a float is exact in Double).
    package func reduceScatterGradient(_ grads: UnsafeMutablePointer<Float>, count: Int) -> Double {
        reduceScatterInRankOrder(grads, count: count)
        let mine = chunk(of: count)
        let part = Double(GradientClip.norm(grads + mine.lowerBound, count: mine.count))
        return part * part
    }

    package func gather(_ values: UnsafePointer<Double>, count: Int, into out: UnsafeMutablePointer<Double>) {
        let all = gather(Array(UnsafeBufferPointer(start: values, count: count)))
        out.update(from: all, count: all.count)
    }

    package func enter(_ phase: CollectivePhase) {}

    /// Rank 0's string, on every rank.
    package func broadcast(_ s: String) -> String {
        String(decoding: gatherBytes(Array(s.utf8))[0], as: UTF8.self)
    }
}

/// A process alone: a group of one, every collective the identity (nothing is sent, nothing allocated
/// in the per-step calls), so the trainer's one code path is the single-process arithmetic bit for bit.
package final class LocalReducer: GradientReducer, @unchecked Sendable {
    package init() {}
    package var rank: Int { 0 }
    package var size: Int { 1 }
    package func reduceScatterInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    package func allgatherChunks(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    package func gather(_ values: [Double]) -> [Double] { values }
    package func gatherBytes(_ bytes: [UInt8]) -> [[UInt8]] { [bytes] }
    package func gatherBlocks(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, counts: [Int]) {
        if UnsafePointer(full) != local { full.update(from: local, count: counts[0]) }
    }
    package func gather(_ values: UnsafePointer<Double>, count: Int, into out: UnsafeMutablePointer<Double>) {
        out.update(from: values, count: count)
    }
}

/// Why a data-parallel run cannot start or go on. `description` is the one line the CLI prints.
package enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// Fewer streams than processes: some rank would have none.
    case tooFewStreams(batch: Int, ranks: Int)
    /// Rank `rank` differs from rank 0 in `what` (config keys, vocabulary, corpus or weights).
    case mismatch(rank: Int, what: String)
    /// The weights differ between ranks at `iteration` (a bug or a broken node: the steps were not identical).
    case weightsDiverged(iteration: Int, ranks: [Int])

    package var description: String {
        switch self {
        case let .tooFewStreams(b, n):
            return "\(Setting.batch) \(b) gives fewer streams than the \(n) processes; use \(Setting.batch) \(n) or more, or fewer processes"
        case let .mismatch(rank, what):
            return "rank \(rank) differs from rank 0: \(what); every process must run the same command on the same corpus"
        case let .weightsDiverged(it, ranks):
            return "at iteration \(it) the weights of rank\(ranks.count == 1 ? "" : "s") \(ranks.map(String.init).joined(separator: ", ")) differ from rank 0's; stopping before a checkpoint is written"
        }
    }
}

/// FNV-1a over 64-bit words of a float buffer: equal buffers, equal hashes (a check, not a MAC).
package func weightsHash(_ p: UnsafePointer<Float>, count: Int) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    let raw = UnsafeRawPointer(p)
    var i = 0
    while i + 2 <= count {
        h = (h ^ raw.loadUnaligned(fromByteOffset: i * 4, as: UInt64.self)) &* 0x0000_0100_0000_01B3
        i += 2
    }
    if i < count { h = (h ^ UInt64(p[i].bitPattern)) &* 0x0000_0100_0000_01B3 }
    return h
}

/// The reducer over Open MPI's world communicator.
package final class MPIReducer: GradientReducer, @unchecked Sendable {
    package let mpi: MPI
    package var rank: Int { mpi.rank }
    package var size: Int { mpi.size }
    /// Seconds of silence after which a collective gives up and the job is aborted (0: never), and the
    /// allowance of the waits for one rank's work (start-up, rank 0's checkpoint write).
    package let timeout: Double
    package var unevenTimeout: Double { 40 * timeout }
    package static let defaultTimeout = 15.0
    package static let timeoutVariable = "CHARRNN_MPI_TIMEOUT"
    package private(set) var phase = CollectivePhase.setup

    package init(_ mpi: MPI, timeout: Double = MPIReducer.defaultTimeout) { self.mpi = mpi; self.timeout = timeout }

    /// The reducer when mpirun started this process, else nil (MPI is not touched). The watchdog's
    /// limit is CHARRNN_MPI_TIMEOUT (seconds, 0 = none) when set, else `defaultTimeout`.
    /// - Throws: `MPIError` when mpirun started it but Open MPI cannot be loaded, or the variable is not
    ///   a number of seconds.
    package static func launchedByMPIRun() throws -> MPIReducer? {
        guard MPI.launchedByMPIRun else { return nil }
        let timeout = try parseTimeout(ProcessInfo.processInfo.environment[timeoutVariable])
        return MPIReducer(try MPI(), timeout: timeout)
    }

    /// CHARRNN_MPI_TIMEOUT's value: nil → `defaultTimeout`; else seconds in [0, 86400].
    package static func parseTimeout(_ text: String?) throws -> Double {
        guard let text else { return defaultTimeout }
        guard let v = Double(text.trimmingCharacters(in: .whitespaces)), v >= 0, v <= 86_400 else {
            throw MPIError(message: "\(timeoutVariable)=\(text) is not a number of seconds between 0 (no limit) and 86400")
        }
        return v
    }

    package func enter(_ phase: CollectivePhase) { self.phase = phase }

    /// The ranks meet (a watched MPI_Ibarrier: a silent peer ends the job instead of leaving this one
    /// in MPI_Finalize for ever), then MPI_Finalize. Only where every rank ends the same way.
    package func finish() {
        enter(.end)
        if !mpi.barrier(limit: limit) { silent("the end of the run") }
        mpi.finalize()
    }

    /// The limit of a wait in the current phase on this rank.
    var limit: Double {
        switch phase {
        case .setup: return unevenTimeout
        case .checkpointWritten, .end: return rank == 0 ? timeout : unevenTimeout
        default: return timeout
        }
    }

    /// A wait of `operation` ran out of time: one line on stderr, then MPI_Abort ends the job.
    func silent(_ operation: String) -> Never {
        let peer = size == 2 ? "rank \(1 - rank)" : "one of the other \(size - 1) ranks"
        let what: String
        switch phase {
        case .setup: what = "the start-up exchange (loading the corpus, comparing the ranks)"
        case let .step(it): what = "\(operation) (iteration \(it))"
        case let .validation(it): what = "the validation (iteration \(it))"
        case let .checkpoint(it): what = "the checkpoint exchange (iteration \(it))"
        case let .checkpointWritten(it): what = rank == 0 ? "the checkpoint exchange (iteration \(it))" : "the wait for rank 0's checkpoint (iteration \(it))"
        case .end: what = "the end of the run"
        }
        let s = String(format: "%g", limit)
        let line = "rank \(rank): error: no reply from \(peer) for \(s) s in \(what); stopping the job (\(Self.timeoutVariable) sets the limit)\n"
        // on a line of its own: rank 0's progress line (ended by "\r", not "\n") may be on the terminal
        FileHandle.standardError.write(Data(("\n" + line).utf8))
        mpi.abort(code: 1)
    }

    /// The counts and displacements of the chunks of a `count`-float buffer (made once per count, so
    /// the step allocates nothing): every rank's chunk counts and offsets, and this rank's chunk count
    /// N times with the offsets j·c of the receive buffer.
    private final class ChunkPlan {
        let count: Int, c: Int
        let counts: UnsafeMutablePointer<Int32>, offsets: UnsafeMutablePointer<Int32>
        let mine: UnsafeMutablePointer<Int32>, slots: UnsafeMutablePointer<Int32>
        init(count: Int, group: MPIReducer) {
            let N = group.size
            self.count = count
            c = (count + N - 1) / N
            counts = .allocate(capacity: N); offsets = .allocate(capacity: N)
            mine = .allocate(capacity: N); slots = .allocate(capacity: N)
            let own = group.chunk(of: count)
            for j in 0..<N {
                let r = group.chunk(of: count, rank: j)
                counts[j] = Int32(r.count); offsets[j] = Int32(r.lowerBound)
                mine[j] = Int32(own.count); slots[j] = Int32(j * c)
            }
        }
        deinit { counts.deallocate(); offsets.deallocate(); mine.deallocate(); slots.deallocate() }
    }
    private var plan: ChunkPlan?
    /// N·c floats: chunk `rank` of every rank, rank j's at j·c.
    private var recv: Storage?

    private func plan(for count: Int) -> ChunkPlan {
        if let plan, plan.count == count { return plan }
        let p = ChunkPlan(count: count, group: self)
        plan = p
        if (recv?.count ?? 0) < size * p.c { recv = Storage(count: size * p.c) }
        return p
    }

    package func reduceScatterInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        let N = size
        guard N > 1 else { return }
        let p = plan(for: count), r = recv!.ptr
        if !mpi.alltoallv(buffer, counts: p.counts, displacements: p.offsets, into: r, counts: p.mine, displacements: p.slots, limit: limit) {
            silent("the gradient sum")
        }
        let own = chunk(of: count), mine = buffer + own.lowerBound
        mine.update(from: r, count: own.count)                         // rank 0's copy (this rank's own is at `rank`·c)
        for j in 1..<N {
            let rj = r + j * p.c
            for i in 0..<own.count { mine[i] += rj[i] }                // ((g₀ + g₁) + g₂) + … in rank order
        }
    }

    package func allgatherChunks(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        guard size > 1 else { return }
        let p = plan(for: count)
        if !mpi.allgathervInPlace(buffer, counts: p.counts, displacements: p.offsets, limit: limit) { silent("the parameter exchange") }
    }

    package func gather(_ values: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: values.count * size)
        values.withUnsafeBytes { v in
            out.withUnsafeMutableBytes { o in
                if !mpi.allgatherBytes(v.baseAddress!, count: v.count, into: o.baseAddress!, limit: limit) { silent("the loss exchange") }
            }
        }
        return out
    }

    package func gather(_ values: UnsafePointer<Double>, count: Int, into out: UnsafeMutablePointer<Double>) {
        if !mpi.allgatherBytes(values, count: count * 8, into: out, limit: limit) { silent("the loss exchange") }
    }

    package func gatherBytes(_ bytes: [UInt8]) -> [[UInt8]] {
        let lengths = gather([Double(bytes.count)]).map { Int($0) }
        var displacements: [Int32] = [], at = 0
        for n in lengths { displacements.append(Int32(at)); at += n }
        var out = [UInt8](repeating: 0, count: max(1, at))
        let b = bytes.isEmpty ? [0] : bytes
        b.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { o in
                if !mpi.allgathervBytes(s.baseAddress!, count: bytes.count, into: o.baseAddress!,
                                        counts: lengths.map { Int32($0) }, displacements: displacements, limit: limit) {
                    silent("the exchange")
                }
            }
        }
        return lengths.indices.map { Array(out[Int(displacements[$0])..<(Int(displacements[$0]) + lengths[$0])]) }
    }

    package func gatherBlocks(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, counts: [Int]) {
        var displacements: [Int32] = [], at = 0
        for n in counts { displacements.append(Int32(at)); at += n }
        if !mpi.allgatherv(local, count: counts[rank], into: full, counts: counts.map { Int32($0) }, displacements: displacements, limit: limit) {
            silent("the state exchange")
        }
    }
}
