// Tensor/BF16GEMM.swift — the bfloat16 matrix products of mixed-precision training (issue 19), with
// float32 sums: the operands rounded once into packed pair-word buffers allocated up front, the three
// product shapes of a training step, the run-time choice of kernel, and a peak probe of that kernel.
//
//   forward, recurrent, decoder   C (m×n) = or += A (m×k) · Wᵀ   W (n×k) packed by `packTransposed`
//   input gradient                C (m×n) = or += A (m×k) · W    W (k×n) packed by `pack`
//   weight gradient               C (m×n) = or += Aᵀ · B         A (k×m), B (k×n), k = the many rows
//
// Layouts (shared by every kernel, see CKernels.h): a "pair word" holds bf16(x[2q]) low and
// bf16(x[2q+1]) high, ⌈k/2⌉ per row (an odd k pads with 0). `BF16Operand` holds the left operand
// in the row layout (word q of row i at i·ld + q) or, for Aᵀ, the pair layout (blocks of 48 rows,
// word q of row i at ⌊i/48⌋·48·K2 + q·48 + i mod 48, so a register tile reads consecutive words);
// `BF16Panels` holds the right operand in 32-column panels (per k-pair, 32 words).
//
// Guarantees:
// - Rounding is float32 → bf16 to nearest even exactly as VCVTNE2PS2BF16 does it (NaN stays NaN
//   with the quiet bit set, overflow becomes ±Inf, float32 subnormals become ±0), in both paths.
// - Each element of C is one float32 chain over the k-pairs in order, the high product of a pair
//   then the low one (VDPBF16PS's order), stored or added to C once. A bf16 product is exact in
//   float32, so the portable path (widening to float32) gives the same bits as VDPBF16PS except where
//   VDPBF16PS flushes a subnormal product or partial sum to zero.
// - Bits do not depend on m, on tiling, or on the number of threads (work is split over panels or
//   over rows, never over k): same inputs and kernel ⇒ the same C, bit for bit.
// - Nothing here allocates after the operand buffers are made (pool jobs are stack structs).

import CKernels
import Foundation

/// What the CPU and OS offer for AMX-BF16 tiles.
package enum AMXState: Int, Sendable {
    /// No AMX-BF16 (or no AMX-TILE) in CPUID.
    case absent = 0
    /// The CPU has it but the OS does not enable the tile state or refuses this process the tile data.
    case refusedByOS = 1
    /// The CPU has it and this process may use the tiles.
    case usable = 2

    /// This CPU and process (asks Linux for the tile data once when the CPU has AMX).
    package static let current = AMXState(rawValue: Int(charrnn_amx_bf16_state())) ?? .absent

    /// The decision from raw CPUID.(7,0).EDX, XCR0 and the arch_prctl answer (tests check every case).
    static func decide(cpuid7EDX: UInt32, xcr0: UInt64, permissionGranted: Bool) -> AMXState {
        AMXState(rawValue: Int(charrnn_amx_bf16_decide(cpuid7EDX, xcr0, permissionGranted ? 1 : 0))) ?? .absent
    }
}

/// Which code runs the bf16 training products. All read the same packed layouts, so the choice can
/// change between calls without repacking.
package enum BF16GEMMKernel: String, Sendable, CaseIterable {
    /// Swift SIMD on any CPU: bf16 widened to float32 in registers, float32 multiply-adds.
    case portable
    /// CKernels' VDPBF16PS: 32 bf16 multiply-adds per instruction into float32.
    case avx512bf16
    /// AMX-BF16 tiles. No AMX machine was available when this was written, so there is no AMX
    /// kernel: the slot is chosen on an AMX CPU whose OS grants the tiles, and it runs `avx512bf16`
    /// (see `runs`). An AMX kernel must be written and tested on such a machine before `runs` changes.
    case amx

    /// Whether this CPU and build can run `avx512bf16` (a CHARRNN_PORTABLE build never does).
    package static let cpuHasAVX512BF16 = charrnn_has_avx512bf16() != 0

    /// The rule of `detected`, from the facts (tests check it without the hardware).
    static func choose(avx512bf16: Bool, amx: AMXState, environment: [String: String]) -> BF16GEMMKernel {
        if environment["CHARRNN_PORTABLE"] != nil || environment["CHARRNN_BF16_KERNEL"] == "portable" || !avx512bf16 {
            return .portable
        }
        if environment["CHARRNN_BF16_KERNEL"] == "avx512bf16" { return .avx512bf16 }
        return amx == .usable ? .amx : .avx512bf16
    }

    /// The best this CPU offers, decided once (CHARRNN_PORTABLE or CHARRNN_BF16_KERNEL=portable
    /// force the portable path, CHARRNN_BF16_KERNEL=avx512bf16 rules out AMX).
    package static let detected = choose(avx512bf16: cpuHasAVX512BF16, amx: AMXState.current,
                                        environment: ProcessInfo.processInfo.environment)

    /// Tests pin a kernel here (nil: `detected`). A kernel the CPU lacks falls back to `portable`.
    nonisolated(unsafe) static var forced: BF16GEMMKernel? = nil

    /// The kernel the products use now.
    package static var selected: BF16GEMMKernel {
        guard let forced else { return detected }
        return forced != .portable && !cpuHasAVX512BF16 ? .portable : forced
    }

    /// The code that actually runs: `amx` runs `avx512bf16` until an AMX kernel exists.
    package var runs: BF16GEMMKernel { self == .amx ? .avx512bf16 : self }

    /// How `charrnn bench` names what ran.
    package var label: String {
        switch self {
        case .portable: return "portable bf16→fp32"
        case .avx512bf16: return "AVX512_BF16"
        case .amx: return "AMX-BF16 slot (runs AVX512_BF16)"
        }
    }
}

/// The left operand A (m × k) rounded to bf16 pair words. Sized once for the largest it will hold.
package final class BF16Operand: @unchecked Sendable {
    package enum Layout: Sendable { case rows, pairs }
    package let maxRows: Int, maxK: Int
    package private(set) var rows = 0
    package private(set) var k = 0
    package private(set) var layout = Layout.rows
    /// Words between rows (row layout) or between blocks of 48 rows (pair layout: 48·⌈k/2⌉).
    package private(set) var ld = 0
    let storage: Storage

    package init(maxRows: Int, maxK: Int) {
        precondition(maxRows >= 0 && maxK >= 0)
        self.maxRows = maxRows; self.maxK = maxK
        let k2 = (maxK + 1) / 2
        storage = Storage(count: max(maxRows * paddedLD(k2), k2 * pairBlocks(maxRows) * pairBlock))
    }

    var words: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(storage.ptr).assumingMemoryBound(to: UInt32.self) }
    /// Word q of row i is at words[⌊i/blockRows⌋·blockStride + (i mod blockRows)·rowStride + q·pairStride].
    var rowStride: Int { layout == .rows ? ld : 1 }
    var pairStride: Int { layout == .rows ? 1 : pairBlock }
    var blockRows: Int { layout == .rows ? Int.max : pairBlock }
    var blockStride: Int { layout == .rows ? 0 : ld }

    /// A = a (rows × k, row-major, lda), in the row layout.
    package func round(_ a: UnsafePointer<Float>, rows: Int, k: Int, lda: Int) {
        precondition(rows <= maxRows && k <= maxK && (rows == 0 || lda >= k))
        self.rows = rows; self.k = k; layout = .rows; ld = paddedLD((k + 1) / 2)
        runPack(PackJob(op: .rows, src: a, k: k, count: rows, ld: lda, dst: words, ldd: ld, parts: 0,
                        kernel: BF16GEMMKernel.selected.runs), units: rows)
    }

    /// Sets the row layout for `rows` × k without rounding anything: the rows are then rounded part
    /// by part with `roundRows`, each part on its own thread (the per-step recurrent products, whose
    /// time loop runs one batch slice per core). Call it before the pool splits the work.
    package func prepare(rows: Int, k: Int) {
        precondition(rows <= maxRows && k <= maxK)
        self.rows = rows; self.k = k; layout = .rows; ld = paddedLD((k + 1) / 2)
    }

    /// Rounds rows `r` of a (row-major, lda; a points at row 0) into the same rows of this operand, on
    /// the calling thread; the shape is the one `prepare` set. Parts may round disjoint ranges at once.
    package func roundRows(_ r: Range<Int>, from a: UnsafePointer<Float>, lda: Int) {
        precondition(layout == .rows && r.lowerBound >= 0 && r.upperBound <= rows && (r.isEmpty || lda >= k))
        PackJob(op: .rows, src: a + r.lowerBound * lda, k: k, count: r.count, ld: lda, dst: words + r.lowerBound * ld,
                ldd: ld, parts: 1, kernel: BF16GEMMKernel.selected.runs).run(part: 0)
    }

    /// A = aᵀ with a (k × rows, row-major, lda), in the pair layout (the weight gradient's left
    /// operand: a = the gate gradients, k = the minibatch's rows). With `columnSums`, the same pass
    /// also writes columnSums[i] = Σ a[r][i] over r < k for i < rows: the bias gradient of the layer
    /// whose gradient a is, one float32 chain per column from 0 in row order (so its bits do not
    /// depend on the number of threads), read while a passes instead of in a pass of its own.
    /// With `scatter`, the same pass also adds each row r of a into row ids[r] of the table (rows ×
    /// `rows` floats; ids checked by the caller): a one-hot input's dW_ihᵀ, rows in order, so the
    /// bits are those of the float32 path's scatter.
    package func roundTransposed(_ a: UnsafePointer<Float>, k: Int, rows: Int, lda: Int,
                                 columnSums: UnsafeMutablePointer<Float>? = nil,
                                 scatter: (ids: UnsafePointer<Int32>, table: UnsafeMutablePointer<Float>)? = nil) {
        runPack(transposedJob(a, k: k, rows: rows, lda: lda, columnSums: columnSums, scatter: scatter), units: (rows + 15) / 16)
    }

    /// Sets the pair layout for `roundTransposed` and returns its job (not run).
    fileprivate func transposedJob(_ a: UnsafePointer<Float>, k: Int, rows: Int, lda: Int, columnSums: UnsafeMutablePointer<Float>?,
                                   scatter: (ids: UnsafePointer<Int32>, table: UnsafeMutablePointer<Float>)?) -> PackJob {
        precondition(rows <= maxRows && k <= maxK && (k == 0 || lda >= rows))
        self.rows = rows; self.k = k; layout = .pairs; ld = pairBlock * ((k + 1) / 2)
        return PackJob(op: .pairs, src: a, k: k, count: rows, ld: lda, dst: words, ldd: ld, parts: 0,
                       kernel: BF16GEMMKernel.selected.runs, sums: columnSums, ids: scatter?.ids, table: scatter?.table)
    }
}

/// The right operand B (k × n) rounded to bf16 and packed in 32-column panels. Sized once.
package final class BF16Panels: @unchecked Sendable {
    package let maxK: Int, maxN: Int
    package private(set) var k = 0
    package private(set) var n = 0
    let storage: Storage

    package init(maxK: Int, maxN: Int) {
        precondition(maxK >= 0 && maxN >= 0)
        self.maxK = maxK; self.maxN = maxN
        storage = Storage(count: (maxK + 1) / 2 * ((maxN + 31) / 32) * 32)
    }

    /// Number of 32-column panels.
    package var panels: Int { (n + 31) / 32 }
    var words: UnsafeMutablePointer<UInt32> { UnsafeMutableRawPointer(storage.ptr).assumingMemoryBound(to: UInt32.self) }

    /// B = wᵀ with w (n × k, row-major, ldw): a weight matrix for x·Wᵀ (W_ih, W_hh, the decoder).
    package func packTransposed(_ w: UnsafePointer<Float>, k: Int, n: Int, ldw: Int) {
        pack(w, k: k, n: n, ld: ldw, transposed: true)
    }

    /// B = b (k × n, row-major, ldb): W for dgates·W, or the activations of a weight gradient.
    package func pack(_ b: UnsafePointer<Float>, k: Int, n: Int, ldb: Int) {
        pack(b, k: k, n: n, ld: ldb, transposed: false)
    }

    private func pack(_ src: UnsafePointer<Float>, k: Int, n: Int, ld: Int, transposed: Bool) {
        runPack(packJob(src, k: k, n: n, ld: ld, transposed: transposed), units: panels)
    }

    /// Sets the shape for `pack`/`packTransposed` and returns its job (not run).
    fileprivate func packJob(_ src: UnsafePointer<Float>, k: Int, n: Int, ld: Int, transposed: Bool) -> PackJob {
        precondition(k <= maxK && n <= maxN && (transposed ? (n == 0 || ld >= k) : (k == 0 || ld >= n)))
        self.k = k; self.n = n
        return PackJob(op: transposed ? .panelsTransposed : .panels, src: src, k: k, count: n, ld: ld, dst: words,
                       ldd: 0, parts: 0, kernel: BF16GEMMKernel.selected.runs)
    }

    /// Sets the shape (k × n) without packing: the panels are then filled piece by piece on the
    /// threads of a caller's pool job (`packTransposedPanel`, `packPairs`). Call it before the job.
    package func prepare(k: Int, n: Int) {
        precondition(k <= maxK && n <= maxN)
        self.k = k; self.n = n
    }

    /// Panel p of B = wᵀ (w (n × k), ldw; the shape `prepare` set): rows [32p, 32p + 32) of w, on the
    /// calling thread — the words `packTransposed` writes there.
    package func packTransposedPanel(_ p: Int, from w: UnsafePointer<Float>, ldw: Int) {
        precondition(p >= 0 && p < panels && ldw >= k)
        PackJob(op: .panelsTransposed, src: w, k: k, count: n, ld: ldw, dst: words, ldd: 0, parts: 1,
                kernel: BF16GEMMKernel.selected.runs).panels(p..<(p + 1))
    }

    /// k-pairs `q` (rows 2q, 2q + 1 of B = b (k × n), ldb; the shape `prepare` set) of every panel,
    /// on the calling thread — the words `pack` writes there.
    package func packPairs(_ q: Range<Int>, from b: UnsafePointer<Float>, ldb: Int) {
        precondition(q.lowerBound >= 0 && q.upperBound <= (k + 1) / 2 && ldb >= n)
        if q.isEmpty { return }
        let job = PackJob(op: .panels, src: b, k: k, count: n, ld: ldb, dst: words, ldd: 0, parts: 1,
                          kernel: BF16GEMMKernel.selected.runs)
        if job.kernel == .avx512bf16 {
            charrnn_bf16_pack_panel_pairs(b, k, n, ldb, words, q.lowerBound, q.upperBound)
        } else {
            job.portablePanels(0..<panels, pairs: q)
        }
    }
}

/// Words between the rows (or k-pairs) of a `BF16Operand` holding x words each: a whole number of
/// 64-byte lines plus one, so rows are never a multiple of 4 KB apart (the 12 rows a register tile
/// reads would share one L1 set: k = 2048 ran markedly slower unpadded on Zen 4).
@inline(__always) func paddedLD(_ x: Int) -> Int { (x + 15) / 16 * 16 + 16 }

/// Rows per block of the pair layout (CKernels.h's CHARRNN_BF16_PAIR_BLOCK).
let pairBlock = Int(CHARRNN_BF16_PAIR_BLOCK)
@inline(__always) func pairBlocks(_ rows: Int) -> Int { (rows + pairBlock - 1) / pairBlock }

/// The bfloat16 of `x` as VCVTNE2PS2BF16 rounds it: nearest even; NaN keeps sign and top payload
/// with the quiet bit set; a float32 subnormal becomes a zero of its sign.
@inline(__always)
package func bf16RNE(_ x: Float) -> UInt16 {
    let b = x.bitPattern
    if x.isNaN { return UInt16(b >> 16) | 0x40 }
    if x.isSubnormal { return UInt16(b >> 16) & 0x8000 }
    return UInt16((b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
}

/// The pair word of x[2q] (low) and x[2q+1] (high).
@inline(__always) func pairWord(_ even: Float, _ odd: Float) -> UInt32 {
    UInt32(bf16RNE(even)) | UInt32(bf16RNE(odd)) << 16
}

// MARK: - Packing (split across the pool: rows, k-pairs or panels)

private struct PackJob {
    enum Op { case rows, pairs, panels, panelsTransposed }
    let op: Op
    let src: UnsafePointer<Float>
    /// k, and the other dimension (rows of A, columns n of B)
    let k: Int, count: Int, ld: Int
    let dst: UnsafeMutablePointer<UInt32>, ldd: Int
    var parts: Int
    let kernel: BF16GEMMKernel
    /// .pairs only: where the column sums go, and the scatter of the rows by id (nil: none).
    var sums: UnsafeMutablePointer<Float>? = nil
    var ids: UnsafePointer<Int32>? = nil
    var table: UnsafeMutablePointer<Float>? = nil

    func run(part: Int) {
        let k2 = (k + 1) / 2
        switch op {
        case .rows:
            let r = slice(count, part: part, of: parts)
            if kernel == .avx512bf16 {
                charrnn_bf16_round_rows(src + r.lowerBound * ld, r.count, k, ld, dst + r.lowerBound * ldd, ldd)
                return
            }
            for i in r {
                let x = src + i * ld, d = dst + i * ldd
                for q in 0..<k2 { d[q] = pairWord(x[2 * q], 2 * q + 1 < k ? x[2 * q + 1] : 0) }
            }
        case .pairs:
            // split over columns of src in units of 16 (a unit never straddles a 48-row block), every
            // k-pair in order, so each column sum is one chain whatever the split
            let u = slice((count + 15) / 16, part: part, of: parts)
            let r = (u.lowerBound * 16)..<min(count, u.upperBound * 16)
            if r.isEmpty { return }
            if kernel == .avx512bf16 {
                charrnn_bf16_round_pairs(src, k, count, ld, dst, r.lowerBound, r.upperBound, sums, ids, table)
                return
            }
            if let sums { for i in r { sums[i] = 0 } }
            for q in 0..<k2 {
                let e = src + 2 * q * ld, hasOdd = 2 * q + 1 < k
                for i in r {
                    dst[i / pairBlock * ldd + q * pairBlock + i % pairBlock] = pairWord(e[i], hasOdd ? e[ld + i] : 0)
                    if let sums { sums[i] = hasOdd ? (sums[i] + e[i]) + e[ld + i] : sums[i] + e[i] }
                }
                if let ids, let table {
                    let te = table + Int(ids[2 * q]) * count
                    for i in r { te[i] += e[i] }
                    if hasOdd {
                        let to = table + Int(ids[2 * q + 1]) * count
                        for i in r { to[i] += e[ld + i] }
                    }
                }
            }
        case .panels, .panelsTransposed:
            panels(slice((count + 31) / 32, part: part, of: parts))
        }
    }

    /// Panels `r` of B, on the calling thread.
    func panels(_ r: Range<Int>) {
        if kernel == .avx512bf16 {
            charrnn_bf16_pack_panels(src, k, count, ld, op == .panelsTransposed ? 1 : 0, dst, r.lowerBound, r.upperBound)
        } else {
            portablePanels(r, pairs: 0..<((k + 1) / 2))
        }
    }

    /// k-pairs `q` of panels `r` of B, on the calling thread, without CKernels.
    func portablePanels(_ r: Range<Int>, pairs: Range<Int>) {
        let k2 = (k + 1) / 2
        let transposed = op == .panelsTransposed
        @inline(__always) func element(_ kk: Int, _ j: Int) -> Float {
            kk >= k ? 0 : transposed ? src[j * ld + kk] : src[kk * ld + j]
        }
        for p in r {
            let d = dst + p * k2 * 32, j0 = p * 32, w = min(32, count - j0)
            for q in pairs {
                for jj in 0..<32 {
                    d[q * 32 + jj] = jj < w ? pairWord(element(2 * q, j0 + jj), element(2 * q + 1, j0 + jj)) : 0
                }
            }
        }
    }
}

/// Runs a pack over min(pool width, units) parts.
private func runPack(_ job: PackJob, units: Int) {
    let pool = WorkerPool.shared
    var j = job
    j.parts = max(1, min(pool.width, units))
    pool.run(parts: j.parts, with: j) { $0.assumingMemoryBound(to: PackJob.self).pointee.run(part: $1) }
}

/// The two operands of a weight gradient C = aᵀ · b rounded in one pool run, so one join instead of
/// two: `aOp.roundTransposed(a, …)` (with its column sums and scatter) and `bPanels.pack(b, …)`, each
/// split over the pool's width as alone (part i runs part i of both). The words are the same.
package func bf16RoundWeightGradientOperands(a: UnsafePointer<Float>, k: Int, m: Int, lda: Int, into aOp: BF16Operand,
                                            columnSums: UnsafeMutablePointer<Float>? = nil,
                                            scatter: (ids: UnsafePointer<Int32>, table: UnsafeMutablePointer<Float>)? = nil,
                                            b: UnsafePointer<Float>, n: Int, ldb: Int, into bPanels: BF16Panels) {
    struct Both { var a: PackJob, b: PackJob }
    let pool = WorkerPool.shared, parts = pool.width
    var both = Both(a: aOp.transposedJob(a, k: k, rows: m, lda: lda, columnSums: columnSums, scatter: scatter),
                    b: bPanels.packJob(b, k: k, n: n, ld: ldb, transposed: false))
    both.a.parts = parts; both.b.parts = parts
    pool.run(parts: parts, with: both) {
        let j = $0.assumingMemoryBound(to: Both.self).pointee
        j.a.run(part: $1); j.b.run(part: $1)
    }
}

// MARK: - Products

/// C (m×n) = A·B (accumulate: false) or C += A·B (accumulate: true), A and B already rounded;
/// m = a.rows, k = a.k = b.k, n = b.n, C row-major with ldc. Split across the pool's width over
/// panels (when each part gets at least two) or else over rows; the bits do not depend on the split.
package func bf16Gemm(a: BF16Operand, b: BF16Panels, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    precondition(a.k == b.k, "bf16Gemm: A has k = \(a.k), B has k = \(b.k)")
    precondition(a.rows == 0 || ldc >= b.n)
    let m = a.rows, panels = b.panels
    if m == 0 || panels == 0 { return }
    let width = WorkerPool.shared.width
    var job = GemmJob(a: a.words, rs: a.rowStride, qs: a.pairStride, bh: a.blockRows, bs: a.blockStride, rows: 0..<m,
                      panels: b.words, k: b.k, n: b.n,
                      c: c, ldc: ldc, accumulate: accumulate, kernel: BF16GEMMKernel.selected.runs, parts: 1, byPanels: true)
    if panels >= 2 * width { job.parts = width } else {
        job.byPanels = false
        job.parts = max(1, min(width, m / 12))
    }
    WorkerPool.shared.run(parts: job.parts, with: job) { $0.assumingMemoryBound(to: GemmJob.self).pointee.run(part: $1) }
}

/// Rows `r` of C (m×n) = or += A·B on the calling thread, no pool: for a pool part that owns those
/// rows (the recurrent product of one batch slice per step, A's rows rounded by `roundRows`).
/// Row i of C reads row firstRow + i of A (row layout; the backward time loop keeps every step's
/// rows). c points at row 0 of C; the bits are those `bf16Gemm` gives the same rows.
package func bf16GemmRows(_ r: Range<Int>, a: BF16Operand, firstRow: Int = 0, b: BF16Panels, c: UnsafeMutablePointer<Float>,
                         ldc: Int, accumulate: Bool) {
    precondition(a.k == b.k, "bf16GemmRows: A has k = \(a.k), B has k = \(b.k)")
    precondition(r.lowerBound >= 0 && firstRow >= 0 && r.upperBound + firstRow <= a.rows && (r.isEmpty || ldc >= b.n))
    precondition(firstRow == 0 || a.layout == .rows, "bf16GemmRows: a row offset needs the row layout")
    if r.isEmpty || b.panels == 0 { return }
    GemmJob(a: a.words + firstRow * a.ld, rs: a.rowStride, qs: a.pairStride, bh: a.blockRows, bs: a.blockStride, rows: r,
            panels: b.words, k: b.k, n: b.n, c: c, ldc: ldc, accumulate: accumulate,
            kernel: BF16GEMMKernel.selected.runs, parts: 1, byPanels: true).run(part: 0)
}

/// The forward, recurrent and decoder products (b packed by `packTransposed` from W) and the input
/// gradient (b packed by `pack` from W): C (m×n) = or += bf16(a) (m×k, row-major, lda) · B, with a
/// rounded into `scratch` first (k = b.k). (Rounding and multiplying each part's own rows in one pool
/// run, without the join between, measured no faster: each part then reads all of B.)
package func bf16Gemm(m: Int, a: UnsafePointer<Float>, lda: Int, b: BF16Panels, scratch: BF16Operand,
                     c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    scratch.round(a, rows: m, k: b.k, lda: lda)
    bf16Gemm(a: scratch, b: b, c: c, ldc: ldc, accumulate: accumulate)
}

/// The weight gradient: C (m×n) = or += bf16(a)ᵀ · bf16(b), a (k×m, lda) and b (k×n, ldb) row-major,
/// rounded into `aScratch` (pair layout) and `bScratch` (panels) first; with `columnSums`, a's column
/// sums (float32, see `BF16Operand.roundTransposed`) from the same pass.
package func bf16GemmTN(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                       aScratch: BF16Operand, bScratch: BF16Panels, c: UnsafeMutablePointer<Float>, ldc: Int,
                       accumulate: Bool, columnSums: UnsafeMutablePointer<Float>? = nil) {
    bf16RoundWeightGradientOperands(a: a, k: k, m: m, lda: lda, into: aScratch, columnSums: columnSums,
                                    b: b, n: n, ldb: ldb, into: bScratch)
    bf16Gemm(a: aScratch, b: bScratch, c: c, ldc: ldc, accumulate: accumulate)
}

private struct GemmJob {
    /// A at row 0 and its strides (word q of row i at a[⌊i/bh⌋·bs + (i mod bh)·rs + q·qs]); the rows
    /// of C to compute; c points at row 0.
    let a: UnsafePointer<UInt32>, rs: Int, qs: Int, bh: Int, bs: Int, rows: Range<Int>
    let panels: UnsafePointer<UInt32>, k: Int, n: Int
    let c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
    let kernel: BF16GEMMKernel
    var parts: Int, byPanels: Bool

    func run(part: Int) {
        let np = (n + 31) / 32
        let own = slice(rows.count, part: part, of: parts)
        let mine = byPanels ? rows : (rows.lowerBound + own.lowerBound)..<(rows.lowerBound + own.upperBound)
        let p = byPanels ? slice(np, part: part, of: parts) : 0..<np
        if mine.isEmpty || p.isEmpty { return }
        if kernel == .avx512bf16 {
            charrnn_bf16_gemm(mine.lowerBound, mine.upperBound, a, rs, qs, bh, bs, panels, k, n, p.lowerBound,
                              p.upperBound, c, ldc, accumulate ? 1 : 0)
        } else {
            portableGemm(rows: mine, a: a, rs: rs, qs: qs, bh: bh, bs: bs, panels: panels, k: k, n: n, p: p, c: c,
                         ldc: ldc, accumulate: accumulate)
        }
    }
}

/// The portable kernel: charrnn_bf16_gemm's arithmetic with each bf16 widened to float32 (a 16-bit
/// shift or a mask), four rows × one panel per tile (rows past the last alias row 0: computed,
/// never stored). madd rounds acc + (exact product) once, as VDPBF16PS's additions do.
func portableGemm(rows: Range<Int>, a: UnsafePointer<UInt32>, rs: Int, qs: Int, bh: Int, bs: Int,
                  panels: UnsafePointer<UInt32>, k: Int, n: Int, p: Range<Int>, c: UnsafeMutablePointer<Float>, ldc: Int,
                  accumulate: Bool) {
    let k2 = (k + 1) / 2
    let hiMask = SIMD16<UInt32>(repeating: 0xFFFF_0000)
    for pi in p {
        let panel = UnsafeRawPointer(panels + pi * k2 * 32)
        let w = min(32, n - pi * 32)
        @inline(__always) func rowStart(_ i: Int) -> UnsafePointer<UInt32> { a + i / bh * bs + i % bh * rs }
        var i = rows.lowerBound
        while i < rows.upperBound {
            let mr = min(4, rows.upperBound - i)
            let a0 = rowStart(i)
            let a1 = mr > 1 ? rowStart(i + 1) : a0, a2 = mr > 2 ? rowStart(i + 2) : a0, a3 = mr > 3 ? rowStart(i + 3) : a0
            var c00 = Vec(), c01 = Vec(), c10 = Vec(), c11 = Vec()
            var c20 = Vec(), c21 = Vec(), c30 = Vec(), c31 = Vec()
            var pp = panel
            var aq = 0
            for _ in 0..<k2 {
                let w0 = pp.load(as: SIMD16<UInt32>.self), w1 = (pp + 64).load(as: SIMD16<UInt32>.self)
                let h0 = unsafeBitCast(w0 & hiMask, to: Vec.self), l0 = unsafeBitCast(w0 &<< 16, to: Vec.self)
                let h1 = unsafeBitCast(w1 & hiMask, to: Vec.self), l1 = unsafeBitCast(w1 &<< 16, to: Vec.self)
                @inline(__always) func row(_ acc0: inout Vec, _ acc1: inout Vec, _ x: UInt32) {
                    let xh = Vec(repeating: Float(bitPattern: x & 0xFFFF_0000))
                    let xl = Vec(repeating: Float(bitPattern: x << 16))
                    madd(&acc0, xh, h0); madd(&acc0, xl, l0)
                    madd(&acc1, xh, h1); madd(&acc1, xl, l1)
                }
                row(&c00, &c01, a0[aq]); row(&c10, &c11, a1[aq]); row(&c20, &c21, a2[aq]); row(&c30, &c31, a3[aq])
                pp += 128; aq += qs
            }
            let cc = c + i * ldc + pi * 32
            storeTile(cc, ldc: ldc, row: 0, mr: mr, w: w, c00, c01, accumulate)
            storeTile(cc, ldc: ldc, row: 1, mr: mr, w: w, c10, c11, accumulate)
            storeTile(cc, ldc: ldc, row: 2, mr: mr, w: w, c20, c21, accumulate)
            storeTile(cc, ldc: ldc, row: 3, mr: mr, w: w, c30, c31, accumulate)
            i += 4
        }
    }
}

// MARK: - Peak probe

/// GFLOP/s of the selected kernel on an n×n×n product of pre-rounded operands (median of `reps`
/// after one warm-up), split across the pool's current width: the ceiling the training products are
/// compared with (the bf16 counterpart of `Benchmark.sgemmGFLOPS`). Allocates its own operands.
package func bf16GemmPeakGFLOPS(n: Int = 2048, reps: Int = 5) -> Double {
    let x = Storage(count: n * n), w = Storage(count: n * n), c = Storage(count: n * n)
    for i in 0..<(n * n) { x.ptr[i] = Float(i % 7) * 0.1; w.ptr[i] = Float(i % 5) * 0.1 }
    let a = BF16Operand(maxRows: n, maxK: n), b = BF16Panels(maxK: n, maxN: n)
    a.round(x.ptr, rows: n, k: n, lda: n)
    b.packTransposed(w.ptr, k: n, n: n, ldw: n)
    var times: [Double] = []
    for r in 0...max(1, reps) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        bf16Gemm(a: a, b: b, c: c.ptr, ldc: n, accumulate: false)
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        if r > 0 { times.append(dt) }
    }
    times.sort()
    return 2 * pow(Double(n), 3) / times[times.count / 2] / 1e9
}
