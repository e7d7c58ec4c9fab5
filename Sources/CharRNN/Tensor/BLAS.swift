// Tensor/BLAS.swift — the only file that talks to OpenBLAS.
//
// Row-major wrappers with labelled Int arguments; conversion to Int32 happens here only
// (Swift's Int32(_:) traps on overflow where C would wrap silently).

import COpenBLAS

/// Whether an operand of `gemm` is used as stored or transposed.
public enum Transpose: Sendable {
    case noTrans, trans
    @inline(__always) var cblas: CBLAS_TRANSPOSE { self == .noTrans ? CblasNoTrans : CblasTrans }
}

/// C (m×n) = alpha · op(A) (m×k) · op(B) (k×n) + beta · C, all row-major.
/// Writes C (=) when beta is 0, accumulates (+=) when beta is 1.
@inline(__always)
public func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1,
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
public func gemv(_ trans: Transpose, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                 x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
    cblas_sgemv(CblasRowMajor, trans.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
}

/// Euclidean norm of n floats (one BLAS call).
@inline(__always)
public func nrm2(n: Int, x: UnsafePointer<Float>) -> Float {
    n == 0 ? 0 : cblas_snrm2(Int32(n), x, 1)
}

/// x *= alpha (n floats).
@inline(__always)
public func scal(n: Int, alpha: Float, x: UnsafeMutablePointer<Float>) {
    if n > 0 { cblas_sscal(Int32(n), alpha, x, 1) }
}

/// y += alpha · x (n floats).
@inline(__always)
public func axpy(n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
    if n > 0 { cblas_saxpy(Int32(n), alpha, x, 1, y, 1) }
}

/// OpenBLAS worker threads (process-wide).
public enum BLASThreads {
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    public static var current: Int { Int(openblas_get_num_threads()) }
}
