// Tensor/PackedGEMM.swift — the per-step recurrent product with the weights packed once per minibatch.
//
// Each timestep multiplies a few rows (the batch) by the same recurrent weight matrix. A general
// sgemm re-packs that matrix on every call (for H = 512 that is 4 MB copied 50 times per layer
// and direction); here it is packed once per forward/backward call into panels of 32 columns,
// k-major, and a 6×32 register-tiled SIMD kernel streams it: per k, two 16-lane loads of the panel,
// six broadcasts of A, twelve fused multiply-adds into twelve accumulators.
//
//   C (m×n) = or += A (m×k, row-major) · B (k×n),   B given as packed panels.
//
// Panel p holds columns [32p, 32p+32) of B, row by row: P[p][kk][0..<32]; columns past n are zero.
// Panels for inference may hold bfloat16 instead (`WeightPrecision.bf16`: the upper half of each
// float32, rounded to nearest even): half the bytes to stream per character. Two kernels read them
// (`BF16Kernel`, chosen once per PackedPanels since their layouts differ): the portable one widens
// each bf16 back to float32 in registers (a 16-bit shift) before the same fused multiply-adds in
// float32; on a CPU with AVX512_BF16 the C kernel in CKernels rounds the input row to bf16 as well
// and multiplies bf16 pairs directly (VDPBF16PS: 32 multiply-adds per instruction, float32 sums).

import CKernels
import Foundation

/// acc += a·b: one fused multiply-add where the build CPU has FMA (CHARRNN_FMA, set by Package.swift),
/// else a multiply and an add (a fused one would become a libm call per lane).
@inline(__always)
func madd(_ acc: inout Vec, _ a: Vec, _ b: Vec) {
    #if CHARRNN_FMA
    acc.addProduct(a, b)
    #else
    acc += a * b
    #endif
}

/// How packed weights are stored: float32, or bfloat16 for the inference step (training reads float32 only).
public enum WeightPrecision: String, Sendable, CaseIterable, Codable {
    case fp32, bf16
}

/// Which code multiplies bfloat16 panels. Chosen once per `PackedPanels`, when it is made: the two
/// lay the panels out differently, and a stream's bits depend on the kernel (never on the batch).
package enum BF16Kernel: String, Sendable, CaseIterable {
    /// Swift SIMD on any CPU: columns j and j + 16 share a 32-bit word, widened to two float32
    /// vectors by a shift and a mask, then float32 fused multiply-adds.
    case portable
    /// CKernels' VDPBF16PS: k-pairs share a word; the input row is rounded to bf16 too, products
    /// are summed in float32. (Splitting x into two bf16 parts instead kept fp32's KL to within
    /// 0.1% of the portable path's, but cost 1.5–1.7× the time at 8–32 streams; rounding adds
    /// 1e-6 bits/char on the 2×512 held-out test: see README.)
    case avx512bf16

    /// Whether this CPU and build can run `avx512bf16` (a CHARRNN_PORTABLE build never does).
    package static let cpuHasAVX512BF16 = charrnn_has_avx512bf16() != 0

    /// Tests pin a kernel here (nil: `selected`'s rule). Set it only while no panels are being made.
    nonisolated(unsafe) static var forced: BF16Kernel? = nil

    /// The kernel new bf16 panels get: `avx512bf16` where the CPU has it, unless the environment
    /// has CHARRNN_PORTABLE or CHARRNN_BF16_KERNEL=portable (both read when panels are made).
    package static var selected: BF16Kernel {
        if let forced { return forced == .avx512bf16 && !cpuHasAVX512BF16 ? .portable : forced }
        let env = ProcessInfo.processInfo.environment
        if env["CHARRNN_PORTABLE"] != nil || env["CHARRNN_BF16_KERNEL"] == "portable" { return .portable }
        return cpuHasAVX512BF16 ? .avx512bf16 : .portable
    }

    /// How `charrnn bench`/`eval` name what ran.
    package var label: String { self == .portable ? "portable bf16→fp32" : "AVX512_BF16" }
}

/// B (k × n) packed for `packedGemm`. Sized once for the largest (k, n) it will hold.
package final class PackedPanels: @unchecked Sendable {
    package private(set) var k = 0
    package private(set) var n = 0
    let maxK: Int, maxN: Int
    package let precision: WeightPrecision
    /// For bf16 panels, the kernel that reads them (and so their layout); nil for float32.
    package let kernel: BF16Kernel?
    let storage: Storage

    package init(maxK: Int, maxN: Int, precision: WeightPrecision = .fp32) {
        self.maxK = maxK; self.maxN = maxN; self.precision = precision
        let panels = (maxN + 31) / 32
        if precision == .fp32 {
            kernel = nil
            storage = Storage(count: maxK * panels * 32)
        } else {
            // the C kernel converts its input rows in a fixed stack buffer: k up to charrnn_bf16_max_k()
            let k = BF16Kernel.selected
            kernel = k == .avx512bf16 && maxK > charrnn_bf16_max_k() ? .portable : k
            // ⌈k/2⌉ pair rows of 32 words per panel (the portable layout needs k/2 of them)
            storage = Storage(count: (maxK + 1) / 2 * panels * 32)
        }
    }

    /// Number of 32-column panels.
    package var panels: Int { (n + 31) / 32 }

    /// Packs B[kk][j] = src[j·ld + kk] (src holds Bᵀ row-major, e.g. W_hh (G×H) for B = W_hhᵀ).
    package func packTransposed(_ src: UnsafePointer<Float>, k: Int, n: Int, ld: Int) {
        packAll(PackJob(src: src, dst: UnsafeMutableRawPointer(storage.ptr), k: k, n: n, ld: ld, transposed: true, kernel: kernel, parts: 0))
    }

    /// Packs B[kk][j] = src[kk·ld + j] (src holds B row-major, e.g. W_hh (G×H) for B = W_hh).
    package func pack(_ src: UnsafePointer<Float>, k: Int, n: Int, ld: Int) {
        packAll(PackJob(src: src, dst: UnsafeMutableRawPointer(storage.ptr), k: k, n: n, ld: ld, transposed: false, kernel: kernel, parts: 0))
    }

    private func packAll(_ job: PackJob) {
        precondition(job.k <= maxK && job.n <= maxN)
        k = job.k; n = job.n
        let pool = WorkerPool.shared
        var j = job
        j.parts = min(pool.width, panels)
        pool.run(parts: j.parts, with: j) { $0.assumingMemoryBound(to: PackJob.self).pointee.run(part: $1) }
    }
}

/// Packing of panels [lo, hi) of one part.
private struct PackJob {
    let src: UnsafePointer<Float>, dst: UnsafeMutableRawPointer, k: Int, n: Int, ld: Int, transposed: Bool, kernel: BF16Kernel?
    var parts: Int

    /// B[kk][j0 + jj] of the source.
    @inline(__always) func element(_ kk: Int, _ j: Int) -> Float { transposed ? src[j * ld + kk] : src[kk * ld + j] }

    func run(part: Int) {
        let panels = (n + 31) / 32
        for p in slice(panels, part: part, of: parts) {
            let j0 = p * 32, w = min(32, n - j0)
            if kernel == .avx512bf16 {
                // k-pair q of column jj in one word: B[2q][jj] low, B[2q+1][jj] high (0 past k or w)
                let K2 = (k + 1) / 2
                let d0 = dst.assumingMemoryBound(to: UInt32.self) + p * K2 * 32
                for q in 0..<K2 {
                    for jj in 0..<32 {
                        let even = jj < w ? bfloat16(element(2 * q, j0 + jj)) : 0
                        let odd = jj < w && 2 * q + 1 < k ? bfloat16(element(2 * q + 1, j0 + jj)) : 0
                        d0[q * 32 + jj] = UInt32(even) | UInt32(odd) << 16
                    }
                }
                continue
            }
            if kernel == .portable {
                // columns jj and jj + 16 share a 32-bit word (low half, high half): a shift and a mask
                // widen a row into two float vectors without a shuffle (BF16Row.load)
                let d0 = dst.assumingMemoryBound(to: UInt16.self) + p * k * 32
                for kk in 0..<k {
                    for jj in 0..<32 {
                        let slot = jj < 16 ? 2 * jj : 2 * (jj - 16) + 1
                        d0[kk * 32 + slot] = jj < w ? bfloat16(element(kk, j0 + jj)) : 0
                    }
                }
                continue
            }
            let d0 = dst.assumingMemoryBound(to: Float.self) + p * k * 32
            if transposed {
                for jj in 0..<32 {
                    if jj < w {
                        let s = src + (j0 + jj) * ld
                        for kk in 0..<k { d0[kk * 32 + jj] = s[kk] }
                    } else {
                        for kk in 0..<k { d0[kk * 32 + jj] = 0 }
                    }
                }
            } else {
                for kk in 0..<k {
                    let d = d0 + kk * 32
                    d.update(from: src + kk * ld + j0, count: w)
                    if w < 32 { (d + w).update(repeating: 0, count: 32 - w) }
                }
            }
        }
    }
}

/// The bfloat16 nearest to `x` (ties to even): the upper 16 bits of its float32 after rounding.
@inline(__always)
func bfloat16(_ x: Float) -> UInt16 {
    let b = x.bitPattern
    if x.isNaN { return UInt16(b >> 16) | 0x40 }          // stays a NaN
    return UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
}

/// The float32 value of a bfloat16.
@inline(__always)
func float(bfloat16 h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

// MARK: - Panel rows of either precision (the inference kernels are generic over them)

/// One k-row of a 32-column panel: its byte stride and how to load it as two float vectors.
protocol PanelRow {
    static var stride: Int { get }
    static func load(_ p: UnsafeRawPointer) -> (Vec, Vec)
}

enum FP32Row: PanelRow {
    static var stride: Int { 128 }
    @inline(__always) static func load(_ p: UnsafeRawPointer) -> (Vec, Vec) { (p.load(as: Vec.self), (p + 64).load(as: Vec.self)) }
}

enum BF16Row: PanelRow {
    static var stride: Int { 64 }
    /// Word i holds column i (low 16 bits) and column i + 16 (high 16 bits); a bfloat16 in the high
    /// half of a 32-bit word is already that float.
    @inline(__always) static func load(_ p: UnsafeRawPointer) -> (Vec, Vec) {
        let w = p.load(as: SIMD16<UInt32>.self)
        return (unsafeBitCast(w &<< 16, to: Vec.self), unsafeBitCast(w & 0xFFFF_0000, to: Vec.self))
    }
}

/// C (m×n) = A·B (accumulate: false) or C += A·B (accumulate: true), with B packed.
/// A is row-major (m×k) with leading dimension lda; C row-major with ldc.
package func packedGemm(m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedPanels,
                       c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    precondition(b.precision == .fp32, "training products read float32 panels")
    let k = b.k, n = b.n, P = UnsafePointer(b.storage.ptr)
    // Row tiles of 6 (the last may hold 3–5 rows); a remainder of 1–2 rows uses the one-row kernel.
    let tiles = m / 6 + (m % 6 >= 3 ? 1 : 0)
    let sixRowsEnd = min(m, tiles * 6)
    // Panels outer, row tiles inner: one 32-column panel (k × 128 bytes) stays in L1 while every
    // row tile streams past it.
    for p in 0..<b.panels {
        let panel = P + p * k * 32
        let w = min(32, n - p * 32)
        var i = 0
        while i < sixRowsEnd {
            let mr = min(6, m - i)
            // rows past mr alias row 0: computed, never stored
            let a0 = a + i * lda
            let a1 = mr > 1 ? a0 + lda : a0, a2 = mr > 2 ? a0 + 2 * lda : a0
            let a3 = mr > 3 ? a0 + 3 * lda : a0, a4 = mr > 4 ? a0 + 4 * lda : a0, a5 = mr > 5 ? a0 + 5 * lda : a0
            var c00 = Vec(), c01 = Vec(), c10 = Vec(), c11 = Vec(), c20 = Vec(), c21 = Vec()
            var c30 = Vec(), c31 = Vec(), c40 = Vec(), c41 = Vec(), c50 = Vec(), c51 = Vec()
            var pp = UnsafeRawPointer(panel)
            for kk in 0..<k {
                let b0 = pp.load(as: Vec.self), b1 = (pp + 64).load(as: Vec.self)
                var s = Vec(repeating: a0[kk]); madd(&c00, s, b0); madd(&c01, s, b1)
                s = Vec(repeating: a1[kk]); madd(&c10, s, b0); madd(&c11, s, b1)
                s = Vec(repeating: a2[kk]); madd(&c20, s, b0); madd(&c21, s, b1)
                s = Vec(repeating: a3[kk]); madd(&c30, s, b0); madd(&c31, s, b1)
                s = Vec(repeating: a4[kk]); madd(&c40, s, b0); madd(&c41, s, b1)
                s = Vec(repeating: a5[kk]); madd(&c50, s, b0); madd(&c51, s, b1)
                pp += 128
            }
            let cc = c + i * ldc + p * 32
            storeTile(cc, ldc: ldc, row: 0, mr: mr, w: w, c00, c01, accumulate)
            storeTile(cc, ldc: ldc, row: 1, mr: mr, w: w, c10, c11, accumulate)
            storeTile(cc, ldc: ldc, row: 2, mr: mr, w: w, c20, c21, accumulate)
            storeTile(cc, ldc: ldc, row: 3, mr: mr, w: w, c30, c31, accumulate)
            storeTile(cc, ldc: ldc, row: 4, mr: mr, w: w, c40, c41, accumulate)
            storeTile(cc, ldc: ldc, row: 5, mr: mr, w: w, c50, c51, accumulate)
            i += 6
        }
        // a short tail (1–2 rows): one row at a time instead of a mostly idle 6-row tile
        for r in sixRowsEnd..<m {
            packedGemmRow(a: a + r * lda, b: b, c: c + r * ldc, accumulate: accumulate, panels: p..<(p + 1))
        }
    }
}

/// One row of C: c (n) = or += a (k) · B, over all panels or the given panel range (columns
/// [32·lo, 32·hi)). Also the batch-1 product of the sampler, split by panels across cores.
package func packedGemmRow(a: UnsafePointer<Float>, b: PackedPanels, c: UnsafeMutablePointer<Float>, accumulate: Bool,
                          panels: Range<Int>? = nil) {
    let r = panels ?? 0..<b.panels
    switch b.kernel {
    case nil: rowKernel(FP32Row.self, a: a, b: b, c: c, accumulate: accumulate, panels: r)
    case .portable: rowKernel(BF16Row.self, a: a, b: b, c: c, accumulate: accumulate, panels: r)
    case .avx512bf16:
        charrnn_bf16_gemm_rows(1, a, b.k, b.storage.ptr, b.k, b.n, r.lowerBound, r.upperBound, c, b.n, accumulate ? 1 : 0)
    }
}

@inline(__always)
private func rowKernel<R: PanelRow>(_: R.Type, a: UnsafePointer<Float>, b: PackedPanels, c: UnsafeMutablePointer<Float>,
                                    accumulate: Bool, panels: Range<Int>) {
    let k = b.k, n = b.n, P = UnsafeRawPointer(b.storage.ptr)
    for p in panels {
        var x0 = Vec(), x1 = Vec(), y0 = Vec(), y1 = Vec()
        var pp = P + p * k * R.stride
        var kk = 0
        while kk + 1 < k {   // two k at a time: four independent accumulators
            let s0 = Vec(repeating: a[kk]), s1 = Vec(repeating: a[kk + 1])
            let (b0, b1) = R.load(pp), (b2, b3) = R.load(pp + R.stride)
            madd(&x0, s0, b0); madd(&x1, s0, b1)
            madd(&y0, s1, b2); madd(&y1, s1, b3)
            pp += 2 * R.stride; kk += 2
        }
        if kk < k {
            let s0 = Vec(repeating: a[kk])
            let (b0, b1) = R.load(pp)
            madd(&x0, s0, b0); madd(&x1, s0, b1)
        }
        storeTile(c + p * 32, ldc: 0, row: 0, mr: 1, w: min(32, n - p * 32), x0 + y0, x1 + y1, accumulate)
    }
}

/// Rows of C for the inference step: c (m×n) = or += a (m×k) · B over all panels or `panels`, each row
/// computed with exactly the arithmetic of `packedGemmRow` (even k into one accumulator, odd k into
/// another, summed at the end), so a row gets the same bits whether it is alone or one of many.
/// Six rows (then three, then one) share each pass over a panel: 24 accumulators, and per two k
/// four panel loads for 24 fused multiply-adds, so the panel is read once per six streams.
package func packedGemmRows(m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedPanels, c: UnsafeMutablePointer<Float>,
                           ldc: Int, accumulate: Bool, panels: Range<Int>? = nil) {
    let r = panels ?? 0..<b.panels
    switch b.kernel {
    case nil: rowsKernel(FP32Row.self, m: m, a: a, lda: lda, b: b, c: c, ldc: ldc, accumulate: accumulate, panels: r)
    case .portable: rowsKernel(BF16Row.self, m: m, a: a, lda: lda, b: b, c: c, ldc: ldc, accumulate: accumulate, panels: r)
    case .avx512bf16:
        charrnn_bf16_gemm_rows(m, a, lda, b.storage.ptr, b.k, b.n, r.lowerBound, r.upperBound, c, ldc, accumulate ? 1 : 0)
    }
}

@inline(__always)
private func rowsKernel<R: PanelRow>(_: R.Type, m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedPanels, c: UnsafeMutablePointer<Float>,
                                     ldc: Int, accumulate: Bool, panels: Range<Int>) {
    let k = b.k, n = b.n, P = UnsafeRawPointer(b.storage.ptr)
    for p in panels {
        let w = min(32, n - p * 32)
        let panel = P + p * k * R.stride
        var i = 0
        while i + 6 <= m {
            rowsTile6(R.self, a: a + i * lda, lda: lda, panel: panel, k: k, c: c + i * ldc + p * 32, ldc: ldc, w: w, accumulate: accumulate)
            i += 6
        }
        while i + 3 <= m {
            rowsTile3(R.self, a: a + i * lda, lda: lda, panel: panel, k: k, c: c + i * ldc + p * 32, ldc: ldc, w: w, accumulate: accumulate)
            i += 3
        }
        for r in i..<m {
            rowKernel(R.self, a: a + r * lda, b: b, c: c + r * ldc, accumulate: accumulate, panels: p..<(p + 1))
        }
    }
}

/// Six rows of `packedGemmRows` over one panel.
@inline(__always)
private func rowsTile6<R: PanelRow>(_: R.Type, a a0: UnsafePointer<Float>, lda: Int, panel: UnsafeRawPointer, k: Int,
                                    c cc: UnsafeMutablePointer<Float>, ldc: Int, w: Int, accumulate: Bool) {
    let a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda
    var x00 = Vec(), x01 = Vec(), y00 = Vec(), y01 = Vec()
    var x10 = Vec(), x11 = Vec(), y10 = Vec(), y11 = Vec()
    var x20 = Vec(), x21 = Vec(), y20 = Vec(), y21 = Vec()
    var x30 = Vec(), x31 = Vec(), y30 = Vec(), y31 = Vec()
    var x40 = Vec(), x41 = Vec(), y40 = Vec(), y41 = Vec()
    var x50 = Vec(), x51 = Vec(), y50 = Vec(), y51 = Vec()
    var pp = panel
    var kk = 0
    while kk + 1 < k {
        let (b0, b1) = R.load(pp), (b2, b3) = R.load(pp + R.stride)
        var s0 = Vec(repeating: a0[kk]), s1 = Vec(repeating: a0[kk + 1])
        madd(&x00, s0, b0); madd(&x01, s0, b1); madd(&y00, s1, b2); madd(&y01, s1, b3)
        s0 = Vec(repeating: a1[kk]); s1 = Vec(repeating: a1[kk + 1])
        madd(&x10, s0, b0); madd(&x11, s0, b1); madd(&y10, s1, b2); madd(&y11, s1, b3)
        s0 = Vec(repeating: a2[kk]); s1 = Vec(repeating: a2[kk + 1])
        madd(&x20, s0, b0); madd(&x21, s0, b1); madd(&y20, s1, b2); madd(&y21, s1, b3)
        s0 = Vec(repeating: a3[kk]); s1 = Vec(repeating: a3[kk + 1])
        madd(&x30, s0, b0); madd(&x31, s0, b1); madd(&y30, s1, b2); madd(&y31, s1, b3)
        s0 = Vec(repeating: a4[kk]); s1 = Vec(repeating: a4[kk + 1])
        madd(&x40, s0, b0); madd(&x41, s0, b1); madd(&y40, s1, b2); madd(&y41, s1, b3)
        s0 = Vec(repeating: a5[kk]); s1 = Vec(repeating: a5[kk + 1])
        madd(&x50, s0, b0); madd(&x51, s0, b1); madd(&y50, s1, b2); madd(&y51, s1, b3)
        pp += 2 * R.stride; kk += 2
    }
    if kk < k {
        let (b0, b1) = R.load(pp)
        var s0 = Vec(repeating: a0[kk]); madd(&x00, s0, b0); madd(&x01, s0, b1)
        s0 = Vec(repeating: a1[kk]); madd(&x10, s0, b0); madd(&x11, s0, b1)
        s0 = Vec(repeating: a2[kk]); madd(&x20, s0, b0); madd(&x21, s0, b1)
        s0 = Vec(repeating: a3[kk]); madd(&x30, s0, b0); madd(&x31, s0, b1)
        s0 = Vec(repeating: a4[kk]); madd(&x40, s0, b0); madd(&x41, s0, b1)
        s0 = Vec(repeating: a5[kk]); madd(&x50, s0, b0); madd(&x51, s0, b1)
    }
    storeTile(cc, ldc: ldc, row: 0, mr: 6, w: w, x00 + y00, x01 + y01, accumulate)
    storeTile(cc, ldc: ldc, row: 1, mr: 6, w: w, x10 + y10, x11 + y11, accumulate)
    storeTile(cc, ldc: ldc, row: 2, mr: 6, w: w, x20 + y20, x21 + y21, accumulate)
    storeTile(cc, ldc: ldc, row: 3, mr: 6, w: w, x30 + y30, x31 + y31, accumulate)
    storeTile(cc, ldc: ldc, row: 4, mr: 6, w: w, x40 + y40, x41 + y41, accumulate)
    storeTile(cc, ldc: ldc, row: 5, mr: 6, w: w, x50 + y50, x51 + y51, accumulate)
}

/// Three rows of `packedGemmRows` over one panel.
@inline(__always)
private func rowsTile3<R: PanelRow>(_: R.Type, a a0: UnsafePointer<Float>, lda: Int, panel: UnsafeRawPointer, k: Int,
                                    c cc: UnsafeMutablePointer<Float>, ldc: Int, w: Int, accumulate: Bool) {
    let a1 = a0 + lda, a2 = a1 + lda
    var x00 = Vec(), x01 = Vec(), y00 = Vec(), y01 = Vec()
    var x10 = Vec(), x11 = Vec(), y10 = Vec(), y11 = Vec()
    var x20 = Vec(), x21 = Vec(), y20 = Vec(), y21 = Vec()
    var pp = panel
    var kk = 0
    while kk + 1 < k {
        let (b0, b1) = R.load(pp), (b2, b3) = R.load(pp + R.stride)
        var s0 = Vec(repeating: a0[kk]), s1 = Vec(repeating: a0[kk + 1])
        madd(&x00, s0, b0); madd(&x01, s0, b1); madd(&y00, s1, b2); madd(&y01, s1, b3)
        s0 = Vec(repeating: a1[kk]); s1 = Vec(repeating: a1[kk + 1])
        madd(&x10, s0, b0); madd(&x11, s0, b1); madd(&y10, s1, b2); madd(&y11, s1, b3)
        s0 = Vec(repeating: a2[kk]); s1 = Vec(repeating: a2[kk + 1])
        madd(&x20, s0, b0); madd(&x21, s0, b1); madd(&y20, s1, b2); madd(&y21, s1, b3)
        pp += 2 * R.stride; kk += 2
    }
    if kk < k {
        let (b0, b1) = R.load(pp)
        var s0 = Vec(repeating: a0[kk]); madd(&x00, s0, b0); madd(&x01, s0, b1)
        s0 = Vec(repeating: a1[kk]); madd(&x10, s0, b0); madd(&x11, s0, b1)
        s0 = Vec(repeating: a2[kk]); madd(&x20, s0, b0); madd(&x21, s0, b1)
    }
    storeTile(cc, ldc: ldc, row: 0, mr: 3, w: w, x00 + y00, x01 + y01, accumulate)
    storeTile(cc, ldc: ldc, row: 1, mr: 3, w: w, x10 + y10, x11 + y11, accumulate)
    storeTile(cc, ldc: ldc, row: 2, mr: 3, w: w, x20 + y20, x21 + y21, accumulate)
}

/// Writes (or adds) one row of a 32-wide tile; only the first w columns when the panel is partial.
@inline(__always)
func storeTile(_ cc: UnsafeMutablePointer<Float>, ldc: Int, row: Int, mr: Int, w: Int,
               _ x0: Vec, _ x1: Vec, _ accumulate: Bool) {
    guard row < mr else { return }
    let q = cc + row * ldc
    if w == 32 {
        let r = UnsafeMutableRawPointer(q)
        if accumulate {
            r.storeBytes(of: r.loadUnaligned(as: Vec.self) + x0, as: Vec.self)
            (r + 64).storeBytes(of: (r + 64).loadUnaligned(as: Vec.self) + x1, as: Vec.self)
        } else {
            r.storeBytes(of: x0, as: Vec.self)
            (r + 64).storeBytes(of: x1, as: Vec.self)
        }
    } else {
        for j in 0..<w {
            let v = j < 16 ? x0[j] : x1[j - 16]
            q[j] = accumulate ? q[j] + v : v
        }
    }
}
