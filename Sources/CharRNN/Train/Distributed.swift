// Train/Distributed.swift — data-parallel training: what a process of an N-process run shares.
//
// Dims: B streams, Bᵣ = streams of rank r, P parameters, N processes (ranks), c = ⌈P/N⌉.
// The global minibatch is the single-process one (char-rnn's B streams); rank r computes the
// contiguous block `streams(r)` = [⌊rB/N⌋, ⌊(r+1)B/N⌋) (uneven blocks allowed). Each rank's model
// gives the gradient of the mean over its T·Bᵣ rows; scaled by Bᵣ/B and summed over the ranks it is the
// gradient of the global mean, and the same weighting gives the global loss.
// Deterministic sum (`sumInRankOrder`): MPI_Allreduce may combine partial sums in any order (the
// algorithm depends on sizes and topology), so no reduction happens inside MPI. A reduce-scatter by
// hand: each rank's buffer is cut into N chunks of c floats, MPI_Alltoall hands chunk j of every rank
// to rank j, rank j adds its N chunks in rank order ((g₀ + g₁) + g₂) + …, and MPI_Allgather returns
// the reduced chunks to everyone. Every rank then holds the same bytes (clipping and the optimizer
// step see identical input), each sends 2·(N−1)·c·4 bytes per iteration (what a ring allreduce
// sends), and the result depends on N only, not on MPI's algorithm choices.

import Foundation

/// What data-parallel training needs from the other processes. Every method is collective: all ranks
/// call it, in the same order. The trainer without one (`group == nil`) is the single-process path.
public protocol GradientReducer: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `count` floats with their elementwise sum over the ranks, added in rank order; the
    /// result is bit-identical on every rank.
    func sumInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// `values` of every rank (all ranks give the same count), rank 0's first.
    func gather(_ values: [Double]) -> [Double]
    /// Byte strings of every rank (any lengths), in rank order.
    func gatherBytes(_ bytes: [UInt8]) -> [[UInt8]]
    /// Rows of a (B, H)-style buffer: rank j's `counts[j]` floats (its block, in rank order) gathered
    /// into `full` on every rank; `local` is this rank's block.
    func gatherBlocks(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, counts: [Int])
}

extension GradientReducer {
    /// Rank r's block of `B` streams: [⌊rB/N⌋, ⌊(r+1)B/N⌋).
    public func streams(of B: Int, rank r: Int? = nil) -> Range<Int> {
        let r = r ?? rank
        return (r * B / size)..<((r + 1) * B / size)
    }

    /// Whether `flag` is true on any rank.
    public func any(_ flag: Bool) -> Bool { gather([flag ? 1 : 0]).contains { $0 != 0 } }

    /// Rank 0's string, on every rank.
    public func broadcast(_ s: String) -> String {
        String(decoding: gatherBytes(Array(s.utf8))[0], as: UTF8.self)
    }
}

/// Why a data-parallel run cannot start or go on. `description` is the one line the CLI prints.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// Fewer streams than processes: some rank would have none.
    case tooFewStreams(batch: Int, ranks: Int)
    /// Rank `rank` differs from rank 0 in `what` (config keys, vocabulary, corpus or weights).
    case mismatch(rank: Int, what: String)
    /// The weights differ between ranks at `iteration` (a bug or a broken node: the steps were not identical).
    case weightsDiverged(iteration: Int, ranks: [Int])

    public var description: String {
        switch self {
        case let .tooFewStreams(b, n):
            return "--batch \(b) gives fewer streams than the \(n) processes; use --batch \(n) or more, or fewer processes"
        case let .mismatch(rank, what):
            return "rank \(rank) differs from rank 0: \(what); every process must run the same command on the same corpus"
        case let .weightsDiverged(it, ranks):
            return "at iteration \(it) the weights of rank\(ranks.count == 1 ? "" : "s") \(ranks.map(String.init).joined(separator: ", ")) differ from rank 0's; stopping before a checkpoint is written"
        }
    }
}

/// FNV-1a over 64-bit words of a float buffer: equal buffers, equal hashes (a check, not a MAC).
public func weightsHash(_ p: UnsafePointer<Float>, count: Int) -> UInt64 {
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
public final class MPIReducer: GradientReducer, @unchecked Sendable {
    public let mpi: MPI
    public var rank: Int { mpi.rank }
    public var size: Int { mpi.size }
    /// (N·c) send and receive buffers of `sumInRankOrder`, grown once to the largest count.
    private var send: Storage?, recv: Storage?
    /// Bytes this rank has sent in `sumInRankOrder` calls, and seconds spent in them.
    public private(set) var bytesSent = 0
    public private(set) var seconds = 0.0

    public init(_ mpi: MPI) { self.mpi = mpi }

    /// The reducer when mpirun started this process, else nil (MPI is not touched).
    /// - Throws: `MPIError` when mpirun started it but Open MPI cannot be loaded.
    public static func launchedByMPIRun() throws -> MPIReducer? {
        MPI.launchedByMPIRun ? MPIReducer(try MPI()) : nil
    }

    public func sumInRankOrder(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        let N = size
        guard N > 1 else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let c = (count + N - 1) / N
        if (send?.count ?? 0) < N * c { send = Storage(count: N * c); recv = Storage(count: N * c) }
        let s = send!.ptr, r = recv!.ptr
        s.update(from: buffer, count: count)
        (s + count).update(repeating: 0, count: N * c - count)       // the last chunk's padding
        mpi.alltoall(s, count: c, into: r)                             // r[j·c ..< (j+1)·c] = chunk `rank` of rank j
        let mine = s + rank * c                                        // reuse: this rank's chunk is sent back from here
        mine.update(from: r, count: c)
        for j in 1..<N {
            let rj = r + j * c
            for i in 0..<c { mine[i] += rj[i] }                        // ((g₀ + g₁) + g₂) + … in rank order
        }
        mpi.allgather(mine, count: c, into: r)
        buffer.update(from: r, count: count)
        bytesSent += 2 * (N - 1) * c * 4
        seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    public func gather(_ values: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: values.count * size)
        values.withUnsafeBytes { v in
            out.withUnsafeMutableBytes { o in mpi.allgatherBytes(v.baseAddress!, count: v.count, into: o.baseAddress!) }
        }
        return out
    }

    public func gatherBytes(_ bytes: [UInt8]) -> [[UInt8]] {
        let lengths = gather([Double(bytes.count)]).map { Int($0) }
        var displacements: [Int32] = [], at = 0
        for n in lengths { displacements.append(Int32(at)); at += n }
        var out = [UInt8](repeating: 0, count: max(1, at))
        let b = bytes.isEmpty ? [0] : bytes
        b.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { o in
                mpi.allgathervBytes(s.baseAddress!, count: bytes.count, into: o.baseAddress!,
                                    counts: lengths.map { Int32($0) }, displacements: displacements)
            }
        }
        return lengths.indices.map { Array(out[Int(displacements[$0])..<(Int(displacements[$0]) + lengths[$0])]) }
    }

    public func gatherBlocks(_ local: UnsafePointer<Float>, into full: UnsafeMutablePointer<Float>, counts: [Int]) {
        var displacements: [Int32] = [], at = 0
        for n in counts { displacements.append(Int32(at)); at += n }
        mpi.allgatherv(local, count: counts[rank], into: full, counts: counts.map { Int32($0) }, displacements: displacements)
    }
}
