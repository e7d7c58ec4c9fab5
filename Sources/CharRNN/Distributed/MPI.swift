// Distributed/MPI.swift — Open MPI, loaded at run time only in a process that mpirun started.
//
// No header or library is needed to build charrnn, and nothing of MPI is touched without mpirun: the
// process is an MPI rank when `OMPI_COMM_WORLD_SIZE` is set (mpirun sets it for every rank), and only
// then is libmpi.so.40 opened with dlopen (RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's
// symbols against it) and the functions below looked up with dlsym. Open MPI's handles are not
// integers but the addresses of predefined globals (mpi.h: `#define MPI_COMM_WORLD
// OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)`, i.e. `&ompi_mpi_comm_world`), so dlsym of
// the global's name *is* the handle. This binds Open MPI's ABI (what the issue asks for), not MPICH's.
// Errors: the world communicator keeps MPI_ERRORS_ARE_FATAL, so a failed call ends the whole job.
// All calls are made from the main thread (MPI_THREAD_FUNNELED). Counts are C ints: `Int32(_:)` traps
// on a count over 2³¹ − 1 instead of wrapping.
// Bounded waits: a peer whose link goes silent (packets dropped, no reset) would leave a blocking
// collective waiting for TCP's retransmission timeout, many minutes. So the collectives are started
// non-blocking (MPI_Iallgather, MPI_Ialltoallv, MPI_Iallgatherv; same data movement, so the same bytes)
// and completed by polling MPI_Test, which also drives Open MPI's progress, as a blocking call would;
// a wait gives up after `limit` seconds of silence and returns false, leaving the caller to report
// and MPI_Abort. Silence is counted from the polls: a gap between two polls longer than 1 s (this
// process stopped, the machine suspended) counts as 1 s, so only time this process spent waiting
// counts. The poll spins (yielding the CPU on every round, as Open MPI does when oversubscribed) and,
// after 1 s of waiting, sleeps 1 ms between rounds.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Open MPI could not be loaded or started.
package struct MPIError: Error, CustomStringConvertible {
    package let message: String
    package var description: String { message }
}

package final class MPI: @unchecked Sendable {
    /// Whether mpirun started this process (the only case in which MPI is loaded).
    package static var launchedByMPIRun: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    package let rank: Int
    package let size: Int

    package typealias Handle = UnsafeMutableRawPointer
    typealias InitThreadFn = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutablePointer<Int32>) -> Int32
    typealias CommIntFn = @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    typealias BcastFn = @convention(c) (UnsafeMutableRawPointer, Int32, Handle, Int32, Handle) -> Int32
    typealias IbarrierFn = @convention(c) (Handle, RequestOut) -> Int32
    typealias AbortFn = @convention(c) (Handle, Int32) -> Int32
    typealias VoidFn = @convention(c) () -> Int32
    /// MPI_Request is `struct ompi_request_t *` in Open MPI.
    typealias Request = UnsafeMutableRawPointer?
    typealias RequestOut = UnsafeMutablePointer<Request>
    typealias IallgatherFn = @convention(c) (UnsafeRawPointer, Int32, Handle, UnsafeMutableRawPointer, Int32, Handle, Handle, RequestOut) -> Int32
    typealias IallgathervFn = @convention(c) (UnsafeRawPointer, Int32, Handle, UnsafeMutableRawPointer, UnsafePointer<Int32>,
                                              UnsafePointer<Int32>, Handle, Handle, RequestOut) -> Int32
    typealias IalltoallvFn = @convention(c) (UnsafeRawPointer, UnsafePointer<Int32>, UnsafePointer<Int32>, Handle,
                                             UnsafeMutableRawPointer, UnsafePointer<Int32>, UnsafePointer<Int32>, Handle,
                                             Handle, RequestOut) -> Int32
    /// MPI_Test(request, flag, status); status MPI_STATUS_IGNORE is NULL.
    typealias TestFn = @convention(c) (RequestOut, UnsafeMutablePointer<Int32>, UnsafeMutableRawPointer?) -> Int32

    let bcastFn: BcastFn
    let ibarrierFn: IbarrierFn, abortFn: AbortFn, finalizeFn: VoidFn
    let iallgatherFn: IallgatherFn, iallgathervFn: IallgathervFn, ialltoallvFn: IalltoallvFn, testFn: TestFn
    /// Open MPI's MPI_IN_PLACE (mpi.h: `#define MPI_IN_PLACE ((void *) 1)`).
    static var inPlace: UnsafeRawPointer { UnsafeRawPointer(bitPattern: 1)! }
    /// MPI_COMM_WORLD, MPI_FLOAT, MPI_BYTE.
    let world: Handle, float: Handle, byte: Handle
    private var finalized = false

    /// Opens libmpi and calls MPI_Init_thread(FUNNELED).
    /// - Throws: `MPIError` when libmpi or one of its symbols cannot be found.
    package init() throws {
        let names = ["libmpi.so.40", "libmpi.so", "libmpi.dylib"]
        guard let lib = names.lazy.compactMap({ dlopen($0, RTLD_NOW | RTLD_GLOBAL) }).first else {
            throw MPIError(message: "started by mpirun, but Open MPI's libmpi.so.40 cannot be loaded (\(String(cString: dlerror()))); install it: apt-get install openmpi-bin libopenmpi-dev")
        }
        func sym(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let p = dlsym(lib, name) else { throw MPIError(message: "libmpi has no symbol \(name): charrnn needs Open MPI (4.x or later)") }
            return p
        }
        func fn<F>(_ name: String, _: F.Type) throws -> F { unsafeBitCast(try sym(name), to: F.self) }
        let initThread = try fn("MPI_Init_thread", InitThreadFn.self)
        let commRank = try fn("MPI_Comm_rank", CommIntFn.self), commSize = try fn("MPI_Comm_size", CommIntFn.self)
        bcastFn = try fn("MPI_Bcast", BcastFn.self)
        ibarrierFn = try fn("MPI_Ibarrier", IbarrierFn.self)
        abortFn = try fn("MPI_Abort", AbortFn.self)
        finalizeFn = try fn("MPI_Finalize", VoidFn.self)
        iallgatherFn = try fn("MPI_Iallgather", IallgatherFn.self)
        iallgathervFn = try fn("MPI_Iallgatherv", IallgathervFn.self)
        ialltoallvFn = try fn("MPI_Ialltoallv", IalltoallvFn.self)
        testFn = try fn("MPI_Test", TestFn.self)
        world = try sym("ompi_mpi_comm_world")
        float = try sym("ompi_mpi_float")
        byte = try sym("ompi_mpi_byte")
        var provided: Int32 = 0
        _ = initThread(nil, nil, 1 /* MPI_THREAD_FUNNELED */, &provided)
        var r: Int32 = 0, s: Int32 = 0
        _ = commRank(world, &r); _ = commSize(world, &s)
        rank = Int(r); size = Int(s)
    }

    // MARK: - Collectives (all ranks call each, in the same order)
    // Each returns false when `limit` seconds (> 0; 0 = no limit) of silence passed before it completed;
    // the job must then be aborted (the operation is still pending and its buffers in use).

    /// MPI_Allgather of `count` floats from each rank: recv (size · count) in rank order.
    package func allgather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>, limit: Double) -> Bool {
        var q: Request = nil
        _ = iallgatherFn(send, Int32(count), float, recv, Int32(count), float, world, &q)
        return wait(&q, limit: limit)
    }

    /// MPI_Allgather of `count` bytes from each rank.
    package func allgatherBytes(_ send: UnsafeRawPointer, count: Int, into recv: UnsafeMutableRawPointer, limit: Double) -> Bool {
        var q: Request = nil
        _ = iallgatherFn(send, Int32(count), byte, recv, Int32(count), byte, world, &q)
        return wait(&q, limit: limit)
    }

    /// MPI_Alltoallv of floats: `sendCounts[j]` floats at `sendDisplacements[j]` of `send` go to rank j;
    /// rank j's land at `recvDisplacements[j]` of `recv` (`recvCounts[j]` floats). The four arrays are
    /// read until completion.
    package func alltoallv(_ send: UnsafePointer<Float>, counts sendCounts: UnsafePointer<Int32>, displacements sendDisplacements: UnsafePointer<Int32>,
                          into recv: UnsafeMutablePointer<Float>, counts recvCounts: UnsafePointer<Int32>,
                          displacements recvDisplacements: UnsafePointer<Int32>, limit: Double) -> Bool {
        var q: Request = nil
        _ = ialltoallvFn(send, sendCounts, sendDisplacements, float, recv, recvCounts, recvDisplacements, float, world, &q)
        return wait(&q, limit: limit)
    }

    /// MPI_Allgatherv in place (MPI_IN_PLACE): rank j's `counts[j]` floats at `displacements[j]` of
    /// `buffer` are copied to the same place on every rank.
    package func allgathervInPlace(_ buffer: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>,
                                  limit: Double) -> Bool {
        var q: Request = nil
        _ = iallgathervFn(MPI.inPlace, 0, float, buffer, counts, displacements, float, world, &q)
        return wait(&q, limit: limit)
    }

    /// MPI_Allgatherv of floats: rank j's `counts[j]` floats land at `displacements[j]` of `recv`.
    package func allgatherv(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>,
                           counts: [Int32], displacements: [Int32], limit: Double) -> Bool {
        allgatherv(UnsafeRawPointer(send), count: count, type: float, into: UnsafeMutableRawPointer(recv),
                   counts: counts, displacements: displacements, limit: limit)
    }

    /// MPI_Allgatherv of bytes.
    package func allgathervBytes(_ send: UnsafeRawPointer, count: Int, into recv: UnsafeMutableRawPointer,
                                counts: [Int32], displacements: [Int32], limit: Double) -> Bool {
        allgatherv(send, count: count, type: byte, into: recv, counts: counts, displacements: displacements, limit: limit)
    }

    /// MPI_Iallgatherv of `type` elements, waited for with the watchdog's limit.
    private func allgatherv(_ send: UnsafeRawPointer, count: Int, type: Handle, into recv: UnsafeMutableRawPointer,
                            counts: [Int32], displacements: [Int32], limit: Double) -> Bool {
        // the count and displacement arrays are read until completion: pointers valid over the wait
        counts.withUnsafeBufferPointer { c in
            displacements.withUnsafeBufferPointer { d in
                var q: Request = nil
                _ = iallgathervFn(send, Int32(count), type, recv, c.baseAddress!, d.baseAddress!, type, world, &q)
                return wait(&q, limit: limit)
            }
        }
    }

    /// Polls MPI_Test until `request` completes (true) or `limit` seconds of silence pass (false).
    func wait(_ request: inout Request, limit: Double) -> Bool {
        var done: Int32 = 0
        _ = testFn(&request, &done, nil)
        if done != 0 { return true }
        let budget = limit > 0 ? UInt64(limit * 1e9) : UInt64.max
        var waited: UInt64 = 0, last = MPI.monotonicNanoseconds()
        while true {
            _ = testFn(&request, &done, nil)
            if done != 0 { return true }
            let now = MPI.monotonicNanoseconds()
            waited &+= min(now &- last, 1_000_000_000)     // a longer gap: this process was not running
            last = now
            if waited >= budget { return false }
            if waited >= 1_000_000_000 { usleep(1000) } else { sched_yield() }
        }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }

    /// MPI_Bcast of `count` bytes from `root`.
    package func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int) {
        _ = bcastFn(buffer, Int32(count), byte, Int32(root), world)
    }

    /// MPI_Ibarrier, waited for with the watchdog's limit.
    package func barrier(limit: Double) -> Bool {
        var q: Request = nil
        _ = ibarrierFn(world, &q)
        return wait(&q, limit: limit)
    }

    /// MPI_Abort: ends every rank of the job with `code`.
    package func abort(code: Int32) -> Never {
        _ = abortFn(world, code)
        exit(code)
    }

    /// MPI_Finalize (once).
    package func finalize() {
        guard !finalized else { return }
        finalized = true
        _ = finalizeFn()
    }
}
