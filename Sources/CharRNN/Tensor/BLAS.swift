// Tensor/BLAS.swift — the only file that talks to OpenBLAS.
//
// Row-major wrappers with labelled Int arguments; conversion to Int32 happens here only
// (Swift's Int32(_:) traps on overflow where C would wrap silently).

import CKernels
import COpenBLAS
import Foundation

/// Whether an operand of `gemm` is used as stored or transposed.
package enum Transpose: Sendable {
    case noTrans, trans
    @inline(__always) var cblas: CBLAS_TRANSPOSE { self == .noTrans ? CblasNoTrans : CblasTrans }
}

/// C (m×n) = alpha · op(A) (m×k) · op(B) (k×n) + beta · C, all row-major.
/// Writes C (=) when beta is 0, accumulates (+=) when beta is 1.
@inline(__always)
package func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS would scale C by beta; keep the semantics explicit.
        if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas, Int32(m), Int32(n), Int32(k), alpha,
                a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// y (len m or n) = alpha · op(A) · x + beta · y, A row-major m×n.
@inline(__always)
package func gemv(_ trans: Transpose, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                 x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
    cblas_sgemv(CblasRowMajor, trans.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
}

/// Euclidean norm of n floats (one BLAS call).
@inline(__always)
package func nrm2(n: Int, x: UnsafePointer<Float>) -> Float {
    n == 0 ? 0 : cblas_snrm2(Int32(n), x, 1)
}

/// x *= alpha (n floats).
@inline(__always)
package func scal(n: Int, alpha: Float, x: UnsafeMutablePointer<Float>) {
    if n > 0 { cblas_sscal(Int32(n), alpha, x, 1) }
}

/// y += alpha · x (n floats).
@inline(__always)
package func axpy(n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    if n > 0 { cblas_saxpy(Int32(n), alpha, x, 1, y, 1) }
}

extension WorkerPool {
    /// Sets how many cores charrnn uses, process-wide: the width of `WorkerPool.shared`, which splits
    /// big GEMMs into row or column blocks (`pgemm`) and the recurrent time loop by batch streams.
    /// OpenBLAS itself is pinned to one thread, so that one scheduler owns the cores and tiny per-step
    /// GEMMs never pay for OpenBLAS's thread hand-offs.
    /// - Parameter threads: cores to use; 0 means all of them. More than `availableCores` uses
    ///   `availableCores`: a worker beyond the cores only takes turns with another on one core, and
    ///   the pool's joins then wait for the scheduler (the CLI says so in one line).
    /// Not to be called while the pool runs work.
    /// - Throws: `WorkerPoolError` (more than `Bounds.threadLimit`, or a thread that cannot start).
    package static func configure(threads: Int) throws(WorkerPoolError) {
        openblas_set_num_threads(1)
        guard threads <= Bounds.threadLimit else { throw .tooManyThreads(requested: threads, limit: Bounds.threadLimit) }
        try shared.setWidth(width(forThreads: threads))
    }

    /// The pool width `configure(threads:)` sets: `threads` bounded by the available cores, all of them for 0.
    package static func width(forThreads threads: Int) -> Int {
        threads > 0 ? min(threads, availableCores) : availableCores
    }

    /// Cores this process may run on: its CPU affinity mask (`taskset`, cgroup cpusets), never more
    /// than Foundation's active processor count (which also follows a cgroup CPU quota), at least 1.
    package static var availableCores: Int {
        let active = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let mask = Int(charrnn_affinity_cores())
        return mask > 0 ? min(mask, active) : active
    }

    /// One core unless `configure(threads:)` was called (library default: deterministic and quiet).
    package static func configureIfNeeded() {
        if !shared.configured { try? configure(threads: 1) }  // width 1 starts no thread
    }
}

/// Lets OpenBLAS use its own `threads` threads for the duration of `body` (the sgemm peak
/// measurement of `bench`); it is single-threaded again afterwards.
package func withOpenBLASThreads<R>(_ threads: Int, _ body: () -> R) -> R {
    openblas_set_num_threads(Int32(max(1, threads)))
    defer { openblas_set_num_threads(1) }
    return body()
}

// MARK: - Parallel GEMM / GEMV over the worker pool

/// `gemm` split across the pool: along m (rows of C) when m ≥ n, else along n. Each part is one
/// single-threaded sgemm on a block of C; no element is summed across parts, and the partition is
/// fixed for a given number of cores, so results are reproducible run to run.
package func pgemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    let pool = WorkerPool.shared
    let parts = min(pool.width, max(1, max(m, n) / 16))
    if parts == 1 || Double(m) * Double(n) * Double(k) < 2e5 {
        gemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        return
    }
    let job = GemmJob(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                      beta: beta, c: c, ldc: ldc, parts: parts)
    pool.run(parts: parts, with: job) { $0.assumingMemoryBound(to: GemmJob.self).pointee.run(part: $1) }
}

private struct GemmJob {
    let transA: Transpose, transB: Transpose, m: Int, n: Int, k: Int, alpha: Float
    let a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int
    let beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, parts: Int

    func run(part p: Int) {
        if m >= n {
            let r = slice(m, part: p, of: parts)
            let ap = transA == .noTrans ? a + r.lowerBound * lda : a + r.lowerBound
            gemm(transA, transB, m: r.count, n: n, k: k, alpha: alpha, a: ap, lda: lda, b: b, ldb: ldb,
                 beta: beta, c: c + r.lowerBound * ldc, ldc: ldc)
        } else {
            let r = slice(n, part: p, of: parts)
            let bp = transB == .noTrans ? b + r.lowerBound : b + r.lowerBound * ldb
            gemm(transA, transB, m: m, n: r.count, k: k, alpha: alpha, a: a, lda: lda, b: bp, ldb: ldb,
                 beta: beta, c: c + r.lowerBound, ldc: ldc)
        }
    }
}

/// y = alpha · Aᵀ · x + beta · y for A row-major (m×n), split over the n outputs (column sums).
package func pgemvTrans(m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                       x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
    let pool = WorkerPool.shared
    let parts = min(pool.width, max(1, n / 64))
    if parts == 1 || m * n < 100_000 {
        gemv(.trans, m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: y)
        return
    }
    pool.run(parts: parts, with: GemvJob(m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: y, parts: parts)) {
        $0.assumingMemoryBound(to: GemvJob.self).pointee.run(part: $1)
    }
}

private struct GemvJob {
    let m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int
    let x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>, parts: Int

    func run(part p: Int) {
        let r = slice(n, part: p, of: parts)
        gemv(.trans, m: m, n: r.count, alpha: alpha, a: a + r.lowerBound, lda: lda, x: x, beta: beta, y: y + r.lowerBound)
    }
}
