// Tensor/MPI.swift — Open MPI, loaded at run time only in a process that mpirun started.
//
// No header or library is needed to build charrnn, and nothing of MPI is touched without mpirun: the
// process is an MPI rank when `OMPI_COMM_WORLD_SIZE` is set (mpirun sets it for every rank), and only
// then is libmpi.so.40 opened with dlopen (RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's
// symbols against it) and the nine functions below looked up with dlsym. Open MPI's handles are not
// integers but the addresses of predefined globals (mpi.h: `#define MPI_COMM_WORLD
// OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)`, i.e. `&ompi_mpi_comm_world`), so dlsym of
// the global's name *is* the handle. This binds Open MPI's ABI (what the issue asks for), not MPICH's.
// Errors: the world communicator keeps MPI_ERRORS_ARE_FATAL, so a failed call ends the whole job.
// All calls are made from the main thread (MPI_THREAD_FUNNELED). Counts are C ints: `Int32(_:)` traps
// on a count over 2³¹ − 1 instead of wrapping.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Open MPI could not be loaded or started.
public struct MPIError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

public final class MPI: @unchecked Sendable {
    /// Whether mpirun started this process (the only case in which MPI is loaded).
    public static var launchedByMPIRun: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    public let rank: Int
    public let size: Int

    public typealias Handle = UnsafeMutableRawPointer
    typealias InitThreadFn = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutablePointer<Int32>) -> Int32
    typealias CommIntFn = @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    typealias AllgatherFn = @convention(c) (UnsafeRawPointer, Int32, Handle, UnsafeMutableRawPointer, Int32, Handle, Handle) -> Int32
    typealias AlltoallFn = AllgatherFn
    typealias AllgathervFn = @convention(c) (UnsafeRawPointer, Int32, Handle, UnsafeMutableRawPointer, UnsafePointer<Int32>,
                                             UnsafePointer<Int32>, Handle, Handle) -> Int32
    typealias BcastFn = @convention(c) (UnsafeMutableRawPointer, Int32, Handle, Int32, Handle) -> Int32
    typealias CommFn = @convention(c) (Handle) -> Int32
    typealias AbortFn = @convention(c) (Handle, Int32) -> Int32
    typealias VoidFn = @convention(c) () -> Int32

    let allgatherFn: AllgatherFn, alltoallFn: AlltoallFn, allgathervFn: AllgathervFn, bcastFn: BcastFn
    let barrierFn: CommFn, abortFn: AbortFn, finalizeFn: VoidFn
    /// MPI_COMM_WORLD, MPI_FLOAT, MPI_BYTE.
    let world: Handle, float: Handle, byte: Handle
    private var finalized = false

    /// Opens libmpi and calls MPI_Init_thread(FUNNELED).
    /// - Throws: `MPIError` when libmpi or one of its symbols cannot be found.
    public init() throws {
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
        allgatherFn = try fn("MPI_Allgather", AllgatherFn.self)
        alltoallFn = try fn("MPI_Alltoall", AlltoallFn.self)
        allgathervFn = try fn("MPI_Allgatherv", AllgathervFn.self)
        bcastFn = try fn("MPI_Bcast", BcastFn.self)
        barrierFn = try fn("MPI_Barrier", CommFn.self)
        abortFn = try fn("MPI_Abort", AbortFn.self)
        finalizeFn = try fn("MPI_Finalize", VoidFn.self)
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

    /// MPI_Allgather of `count` floats from each rank: recv (size · count) in rank order.
    public func allgather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>) {
        _ = allgatherFn(send, Int32(count), float, recv, Int32(count), float, world)
    }

    /// MPI_Allgather of `count` bytes from each rank.
    public func allgatherBytes(_ send: UnsafeRawPointer, count: Int, into recv: UnsafeMutableRawPointer) {
        _ = allgatherFn(send, Int32(count), byte, recv, Int32(count), byte, world)
    }

    /// MPI_Alltoall: block j (`count` floats) of `send` goes to rank j; block j of `recv` came from rank j.
    public func alltoall(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>) {
        _ = alltoallFn(send, Int32(count), float, recv, Int32(count), float, world)
    }

    /// MPI_Allgatherv of floats: rank j's `counts[j]` floats land at `displacements[j]` of `recv`.
    public func allgatherv(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>,
                           counts: [Int32], displacements: [Int32]) {
        _ = allgathervFn(send, Int32(count), float, recv, counts, displacements, float, world)
    }

    /// MPI_Allgatherv of bytes.
    public func allgathervBytes(_ send: UnsafeRawPointer, count: Int, into recv: UnsafeMutableRawPointer,
                                counts: [Int32], displacements: [Int32]) {
        _ = allgathervFn(send, Int32(count), byte, recv, counts, displacements, byte, world)
    }

    /// MPI_Bcast of `count` bytes from `root`.
    public func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int) {
        _ = bcastFn(buffer, Int32(count), byte, Int32(root), world)
    }

    public func barrier() { _ = barrierFn(world) }

    /// MPI_Abort: ends every rank of the job with `code`.
    public func abort(code: Int32) -> Never {
        _ = abortFn(world, code)
        exit(code)
    }

    /// MPI_Finalize (once).
    public func finalize() {
        guard !finalized else { return }
        finalized = true
        _ = finalizeFn()
    }
}
