// BF16GEMMTests.swift — the bf16 training products (Tensor/BF16GEMM.swift, CKernels/bf16gemm.c):
// the three shapes × (=, +=) × odd/even k × ragged m and n × 1 and 2 threads against a Double
// reference over the same bf16 values, and bit for bit against a scalar float32 chain in the kernels'
// order; float32 → bf16 rounding on ties, NaN, Inf, overflow and subnormals; the portable and
// AVX512_BF16 paths packing the same words and giving the same bits; the column sums of the pair
// rounding (and its scatter by id), the backward time loop's kept step rows, the decoder's softmax
// pass adding the bias and rounding the gradient; bits fixed across repeated calls
// and thread counts; the AMX detection and the kernel choice.

import CKernels
import Foundation
import XCTest
@testable import CharRNN

final class BF16GEMMTests: XCTestCase {
    override func tearDown() {
        BF16GEMMKernel.forced = nil
        try? WorkerPool.configure(threads: 1)
    }

    /// The kernels this machine can run.
    static var kernels: [BF16GEMMKernel] { BF16GEMMKernel.cpuHasAVX512BF16 ? [.portable, .avx512bf16] : [.portable] }

    func random(_ n: Int, seed: UInt64, scale: Float = 1) -> Storage {
        var rng = Xoshiro256(seed: seed)
        let s = Storage(count: max(1, n))
        for i in 0..<n { s.ptr[i] = (rng.nextFloat() * 2 - 1) * scale }
        return s
    }

    func widened(_ x: Float) -> Float { Float(bitPattern: UInt32(bf16RNE(x)) << 16) }

    enum Shape: CaseIterable { case nt, nn, tn }

    /// One product of `shape` with fp32 operands a, b laid out with padded leading dimensions.
    struct Case {
        let shape: Shape, m: Int, k: Int, n: Int
        let lda: Int, ldb: Int, ldc: Int
        /// A[i][kk] and B[kk][j] of the product as the fp32 operands hold them.
        func aAt(_ a: Storage, _ i: Int, _ kk: Int) -> Float { shape == .tn ? a.ptr[kk * lda + i] : a.ptr[i * lda + kk] }
        func bAt(_ b: Storage, _ kk: Int, _ j: Int) -> Float { shape == .nt ? b.ptr[j * ldb + kk] : b.ptr[kk * ldb + j] }
        var aCount: Int { shape == .tn ? k * lda : m * lda }
        var bCount: Int { shape == .nt ? n * ldb : k * ldb }
    }

    func makeCase(_ shape: Shape, _ m: Int, _ k: Int, _ n: Int) -> Case {
        switch shape {
        case .nt: return Case(shape: shape, m: m, k: k, n: n, lda: k + 3, ldb: k + 1, ldc: n + 2)
        case .nn: return Case(shape: shape, m: m, k: k, n: n, lda: k + 1, ldb: n + 5, ldc: n + 1)
        case .tn: return Case(shape: shape, m: m, k: k, n: n, lda: m + 2, ldb: n + 3, ldc: n)
        }
    }

    /// Runs the case's product through the public entry point of its shape.
    func product(_ t: Case, a: Storage, b: Storage, c: Storage, accumulate: Bool) {
        switch t.shape {
        case .nt, .nn:
            let panels = BF16Panels(maxK: t.k, maxN: t.n), scratch = BF16Operand(maxRows: t.m, maxK: t.k)
            if t.shape == .nt { panels.packTransposed(b.ptr, k: t.k, n: t.n, ldw: t.ldb) } else { panels.pack(b.ptr, k: t.k, n: t.n, ldb: t.ldb) }
            bf16Gemm(m: t.m, a: a.ptr, lda: t.lda, b: panels, scratch: scratch, c: c.ptr, ldc: t.ldc, accumulate: accumulate)
        case .tn:
            bf16GemmTN(m: t.m, n: t.n, k: t.k, a: a.ptr, lda: t.lda, b: b.ptr, ldb: t.ldb,
                       aScratch: BF16Operand(maxRows: t.m, maxK: t.k), bScratch: BF16Panels(maxK: t.k, maxN: t.n),
                       c: c.ptr, ldc: t.ldc, accumulate: accumulate)
        }
    }

    static let sizes = [(1, 1, 1), (3, 7, 5), (12, 16, 32), (13, 17, 33), (25, 64, 96), (50, 33, 70),
                        (37, 128, 65), (2, 5, 200), (100, 255, 40), (11, 2, 31), (24, 300, 64),
                        (100, 2001, 40), (400, 300, 40)]

    /// Every shape, size, accumulate and thread count on every kernel: each element within
    /// float32 summation-order error of the Double sum over the same bf16 values ((2⌈k/2⌉ + 1)·2⁻²⁴
    /// of Σ|terms|; a missing, doubled or wrong term is ~1/k of that sum, far more), and bit-equal
    /// to the scalar float32 chain in the kernels' order (per k-pair the high product, then the low,
    /// then added to C). m = 400 at k = 300 spans two row chunks of the C kernel; m = 50, 100 and 400
    /// cross the pair layout's 48-row blocks (in one thread's rows, too, where the split is by rows).
    /// Columns of C past n (the padding of ldc) must stay untouched.
    func testEveryShapeMatchesTheReferences() throws {
        for shape in Shape.allCases {
            for (m, k, n) in Self.sizes {
                let t = makeCase(shape, m, k, n)
                let a = random(t.aCount, seed: 1), b = random(t.bCount, seed: 2), start = random(m * t.ldc, seed: 3)
                // the references, once per case: A' (m × 2⌈k/2⌉) and B'ᵀ (n × 2⌈k/2⌉) widened from bf16, 0-padded
                let k2 = (k + 1) / 2
                var aw = [Float](repeating: 0, count: m * 2 * k2), bw = [Float](repeating: 0, count: n * 2 * k2)
                for i in 0..<m { for kk in 0..<k { aw[i * 2 * k2 + kk] = widened(t.aAt(a, i, kk)) } }
                for j in 0..<n { for kk in 0..<k { bw[j * 2 * k2 + kk] = widened(t.bAt(b, kk, j)) } }
                var products = [Float](repeating: 0, count: m * n), sums = [Double](repeating: 0, count: m * n)
                var mags = [Double](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n {
                        var chain: Float = 0, ref = 0.0, mag = 0.0
                        for q in 0..<k2 {
                            let lo = aw[i * 2 * k2 + 2 * q] * bw[j * 2 * k2 + 2 * q]
                            let hi = aw[i * 2 * k2 + 2 * q + 1] * bw[j * 2 * k2 + 2 * q + 1]
                            chain += hi; chain += lo
                            ref += Double(lo) + Double(hi); mag += abs(Double(lo)) + abs(Double(hi))
                        }
                        products[i * n + j] = chain; sums[i * n + j] = ref; mags[i * n + j] = mag
                    }
                }
                for threads in [1, 2] {
                    try WorkerPool.shared.setWidth(threads)
                    for kernel in Self.kernels {
                        BF16GEMMKernel.forced = kernel
                        for accumulate in [false, true] {
                            let c = Storage(count: m * t.ldc)
                            c.ptr.update(from: start.ptr, count: m * t.ldc)
                            product(t, a: a, b: b, c: c, accumulate: accumulate)
                            let what = "\(kernel) \(shape) m \(m) k \(k) n \(n) accumulate \(accumulate) threads \(threads)"
                            var worst = 0.0, mismatches = 0, padding = 0
                            for i in 0..<m {
                                for j in n..<t.ldc where c.ptr[i * t.ldc + j].bitPattern != start.ptr[i * t.ldc + j].bitPattern { padding += 1 }
                                for j in 0..<n {
                                    let c0 = start.ptr[i * t.ldc + j]
                                    var ref = sums[i * n + j], mag = mags[i * n + j], chain = products[i * n + j]
                                    if accumulate { ref += Double(c0); mag += abs(Double(c0)); chain = c0 + chain }
                                    let got = c.ptr[i * t.ldc + j]
                                    let tol = Double(2 * k2 + 1) * 0x1p-24 * mag + 1e-30
                                    worst = max(worst, abs(Double(got) - ref) / tol)
                                    if got.bitPattern != chain.bitPattern { mismatches += 1 }
                                }
                            }
                            XCTAssertLessThanOrEqual(worst, 1, what)
                            XCTAssertEqual(mismatches, 0, "elements differing from the float32 chain: \(what)")
                            XCTAssertEqual(padding, 0, "columns past n written: \(what)")
                        }
                    }
                }
            }
        }
    }

    /// The training shapes at small scale: the same bits from 1 and 2 threads and on a repeat, for the
    /// row split (few panels) and the panel split (many), on every kernel; and the same bits from the
    /// portable and AVX512_BF16 paths (no subnormal products or sums in this data, where VDPBF16PS
    /// would flush them).
    func testBitsAreFixedAcrossThreadsRepeatsAndKernels() throws {
        let cases = [makeCase(.nt, 50, 64, 256), makeCase(.nt, 250, 64, 65), makeCase(.nn, 61, 128, 64),
                     makeCase(.tn, 128, 250, 64), makeCase(.tn, 64, 99, 40)]
        for t in cases {
            let a = random(t.aCount, seed: 7), b = random(t.bCount, seed: 8), start = random(t.m * t.ldc, seed: 9)
            var results: [[UInt32]] = []
            for kernel in Self.kernels {
                BF16GEMMKernel.forced = kernel
                for threads in [1, 2, 2] {
                    try WorkerPool.shared.setWidth(threads)
                    let c = Storage(count: t.m * t.ldc)
                    c.ptr.update(from: start.ptr, count: t.m * t.ldc)
                    product(t, a: a, b: b, c: c, accumulate: true)
                    results.append(c.toArray().map(\.bitPattern))
                }
            }
            for r in results.dropFirst() { XCTAssertEqual(r, results[0], "\(t.shape) m \(t.m) k \(t.k) n \(t.n)") }
        }
    }

    /// The recurrent pattern: each pool part rounds its rows of h and multiplies them on its own
    /// thread (`roundRows` + `bf16GemmRows`); the result has the bits of one pooled `bf16Gemm`.
    func testRowPartsInsidePoolMatchThePooledProduct() throws {
        struct Job {
            let h: UnsafePointer<Float>, scratch: Unmanaged<BF16Operand>, w: Unmanaged<BF16Panels>
            let c: UnsafeMutablePointer<Float>, m: Int, k: Int, n: Int, parts: Int
        }
        let m = 50, k = 64, n = 256
        let h = random(m * k, seed: 11), w = random(n * k, seed: 12), start = random(m * n, seed: 13)
        for kernel in Self.kernels {
            BF16GEMMKernel.forced = kernel
            try WorkerPool.shared.setWidth(2)
            let panels = BF16Panels(maxK: k, maxN: n), scratch = BF16Operand(maxRows: m, maxK: k)
            panels.packTransposed(w.ptr, k: k, n: n, ldw: k)
            let whole = Storage(count: m * n), parted = Storage(count: m * n)
            whole.ptr.update(from: start.ptr, count: m * n); parted.ptr.update(from: start.ptr, count: m * n)
            bf16Gemm(m: m, a: h.ptr, lda: k, b: panels, scratch: BF16Operand(maxRows: m, maxK: k), c: whole.ptr, ldc: n, accumulate: true)
            scratch.prepare(rows: m, k: k)
            let job = Job(h: h.ptr, scratch: .passUnretained(scratch), w: .passUnretained(panels), c: parted.ptr, m: m, k: k, n: n, parts: 2)
            WorkerPool.shared.run(parts: 2, with: job) {
                let j = $0.assumingMemoryBound(to: Job.self).pointee, r = slice(j.m, part: $1, of: j.parts)
                let a = j.scratch.takeUnretainedValue()
                a.roundRows(r, from: j.h, lda: j.k)
                bf16GemmRows(r, a: a, b: j.w.takeUnretainedValue(), c: j.c, ldc: j.n, accumulate: true)
            }
            XCTAssertEqual(parted.toArray().map(\.bitPattern), whole.toArray().map(\.bitPattern), "\(kernel)")
            withExtendedLifetime((panels, scratch)) {}
        }
    }

    /// The backward pattern: the parts round step t's rows into rows t·B… of an operand that keeps
    /// all T steps and multiply from there (`firstRow`); each step has the bits of a pooled product
    /// of that step alone, and afterwards the operand holds the words of all T·B rows rounded at once
    /// (what dx then reads without rounding again).
    func testStepRowsKeptForAllStepsMatchPooledProducts() throws {
        struct Job {
            let a: UnsafePointer<Float>, scratch: Unmanaged<BF16Operand>, w: Unmanaged<BF16Panels>
            let c: UnsafeMutablePointer<Float>, t: Int, B: Int, k: Int, n: Int, parts: Int
        }
        let B = 25, T = 3, k = 70, n = 40
        let a = random(T * B * k, seed: 21), w = random(k * n, seed: 22)
        for kernel in Self.kernels {
            BF16GEMMKernel.forced = kernel
            try WorkerPool.shared.setWidth(2)
            let panels = BF16Panels(maxK: k, maxN: n), kept = BF16Operand(maxRows: T * B, maxK: k)
            panels.pack(w.ptr, k: k, n: n, ldb: n)
            kept.prepare(rows: T * B, k: k)
            for t in 0..<T {
                let whole = Storage(count: B * n), parted = Storage(count: B * n)
                bf16Gemm(m: B, a: a.ptr + t * B * k, lda: k, b: panels, scratch: BF16Operand(maxRows: B, maxK: k),
                         c: whole.ptr, ldc: n, accumulate: false)
                let job = Job(a: a.ptr, scratch: .passUnretained(kept), w: .passUnretained(panels), c: parted.ptr,
                              t: t, B: B, k: k, n: n, parts: 2)
                WorkerPool.shared.run(parts: 2, with: job) {
                    let j = $0.assumingMemoryBound(to: Job.self).pointee, r = slice(j.B, part: $1, of: j.parts)
                    let op = j.scratch.takeUnretainedValue()
                    op.roundRows((j.t * j.B + r.lowerBound)..<(j.t * j.B + r.upperBound), from: j.a, lda: j.k)
                    bf16GemmRows(r, a: op, firstRow: j.t * j.B, b: j.w.takeUnretainedValue(), c: j.c, ldc: j.n, accumulate: false)
                }
                XCTAssertEqual(parted.toArray().map(\.bitPattern), whole.toArray().map(\.bitPattern), "\(kernel) step \(t)")
            }
            let once = BF16Operand(maxRows: T * B, maxK: k)
            once.round(a.ptr, rows: T * B, k: k, lda: k)
            for i in 0..<(T * B) {
                XCTAssertEqual(Array(UnsafeBufferPointer(start: kept.words + i * kept.ld, count: (k + 1) / 2)),
                               Array(UnsafeBufferPointer(start: once.words + i * once.ld, count: (k + 1) / 2)), "\(kernel) row \(i)")
            }
            withExtendedLifetime((panels, kept, once)) {}
        }
    }

    /// The bf16 decoder's softmax pass (`softmaxCrossEntropy` with `bias` and `roundInto`): the loss
    /// and gradient have the bits of adding the bias to the logits first, and the operand holds the
    /// gradient rows rounded as `round` would, with either kernel and one or two threads.
    func testSoftmaxPassAddsTheBiasAndRoundsTheGradient() throws {
        let (N, V) = (37, 83)
        let z = random(N * V, seed: 31, scale: 4), b = random(V, seed: 32)
        let targets = (0..<N).map { Int32(($0 * 13) % V) }
        for kernel in Self.kernels {
            BF16GEMMKernel.forced = kernel
            for threads in [1, 2] {
                try WorkerPool.shared.setWidth(threads)
                let plain = Storage(count: N * V), fused = Storage(count: N * V)
                for r in 0..<N { for v in 0..<V { plain.ptr[r * V + v] = b.ptr[v] + z.ptr[r * V + v] } }
                fused.ptr.update(from: z.ptr, count: N * V)
                let op = BF16Operand(maxRows: N, maxK: V), once = BF16Operand(maxRows: N, maxK: V)
                op.prepare(rows: N, k: V)
                let (l1, l2) = targets.withUnsafeBufferPointer { t in
                    (softmaxCrossEntropy(logits: plain.ptr, targets: t.baseAddress!, rows: N, V: V, gradient: true),
                     softmaxCrossEntropy(logits: fused.ptr, targets: t.baseAddress!, rows: N, V: V, gradient: true,
                                         bias: b.ptr, roundInto: op))
                }
                let name = "\(kernel) \(threads) threads"
                XCTAssertEqual(l1.bitPattern, l2.bitPattern, name)
                XCTAssertEqual(fused.toArray().map(\.bitPattern), plain.toArray().map(\.bitPattern), name)
                once.round(plain.ptr, rows: N, k: V, lda: V)
                for r in 0..<N {
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: op.words + r * op.ld, count: (V + 1) / 2)),
                                   Array(UnsafeBufferPointer(start: once.words + r * once.ld, count: (V + 1) / 2)), "\(name) row \(r)")
                }
                withExtendedLifetime((op, once)) {}
            }
        }
    }

    /// The column sums that come with the pair rounding (the bias gradients): each is the float32
    /// chain 0 + a[0][i] + a[1][i] + … in row order, bit for bit, with either kernel and any number
    /// of threads; so is the scatter of the rows by id (rows in order); and the pair words beside
    /// them are the scalar rounding's.
    func testColumnSumsOfThePairRoundingAreOneChainInRowOrder() throws {
        for (k, m) in [(7, 5), (50, 37), (2500, 100), (1, 16), (64, 2048)] {
            let lda = m + 3
            let a = random(k * lda, seed: UInt64(k * 1000 + m), scale: 3)
            var expected = [Float](repeating: 0, count: m)
            for r in 0..<k { for i in 0..<m { expected[i] = expected[i] + a.ptr[r * lda + i] } }
            // the scatter by id (a one-hot input's dW_ihᵀ): 5 ids, rows added in order onto a start
            let ids: [Int32] = (0..<k).map { (r: Int) -> Int32 in Int32((r * 7 + r / 3) % 5) }
            let start = random(5 * m, seed: 77)
            var scattered = start.toArray()
            for r in 0..<k { for i in 0..<m { scattered[Int(ids[r]) * m + i] += a.ptr[r * lda + i] } }
            for kernel in Self.kernels {
                BF16GEMMKernel.forced = kernel
                for threads in [1, 2] {
                    try WorkerPool.shared.setWidth(threads)
                    let op = BF16Operand(maxRows: m, maxK: k), sums = Storage(count: m), table = Storage(count: 5 * m)
                    table.ptr.update(from: start.ptr, count: 5 * m)
                    ids.withUnsafeBufferPointer {
                        op.roundTransposed(a.ptr, k: k, rows: m, lda: lda, columnSums: sums.ptr, scatter: ($0.baseAddress!, table.ptr))
                    }
                    XCTAssertEqual(sums.toArray().map(\.bitPattern), expected.map(\.bitPattern), "k \(k) m \(m) \(kernel) \(threads) threads")
                    XCTAssertEqual(table.toArray().map(\.bitPattern), scattered.map(\.bitPattern), "k \(k) m \(m) \(kernel) \(threads) threads: scatter")
                    var got: [UInt32] = [], want: [UInt32] = []
                    for q in 0..<((k + 1) / 2) {
                        for i in 0..<m {
                            got.append(op.words[i / pairBlock * op.ld + q * pairBlock + i % pairBlock])
                            want.append(pairWord(a.ptr[2 * q * lda + i], 2 * q + 1 < k ? a.ptr[(2 * q + 1) * lda + i] : 0))
                        }
                    }
                    XCTAssertEqual(got, want, "k \(k) m \(m) \(kernel) \(threads) threads: pair words")
                    withExtendedLifetime(op) {}
                }
            }
        }
    }

    /// float32 → bf16 on the edge cases, in the Swift rounding and in CKernels (where the CPU has
    /// AVX512_BF16), and both equal on a million random bit patterns (every class of float).
    func testRoundingToNearestEvenOnEdgeCases() {
        let table: [(UInt32, UInt16)] = [
            (0x3F80_0000, 0x3F80),   // 1
            (0x3F80_8000, 0x3F80),   // tie, even below: down
            (0x3F81_8000, 0x3F82),   // tie, odd below: up
            (0x3F80_8001, 0x3F81),   // just past the tie: up
            (0x3F80_7FFF, 0x3F80),   // just under the tie: down
            (0xBF81_8000, 0xBF82),   // negative tie: away from zero to even
            (0x7F7F_FFFF, 0x7F80),   // largest float rounds to +Inf
            (0xFF7F_8000, 0xFF80),   // negative tie at the top: -Inf
            (0x7F7F_7FFF, 0x7F7F),   // largest bf16
            (0x7F80_0000, 0x7F80), (0xFF80_0000, 0xFF80),                 // ±Inf
            (0x7FC0_0000, 0x7FC0), (0xFFC0_0001, 0xFFC0),                 // quiet NaNs
            (0x7F80_0001, 0x7FC0), (0x7FBF_FFFF, 0x7FFF), (0xFF80_0001, 0xFFC0),  // signalling NaNs: quieted, not Inf
            (0x0000_0001, 0x0000), (0x007F_FFFF, 0x0000), (0x8000_0001, 0x8000), (0x807F_FFFF, 0x8000),  // subnormals: ±0
            (0x0080_0000, 0x0080),   // smallest normal
            (0x00FF_8000, 0x0100),   // tie into the next binade
            (0x0000_0000, 0x0000), (0x8000_0000, 0x8000),
        ]
        for (bits, want) in table {
            XCTAssertEqual(bf16RNE(Float(bitPattern: bits)), want, String(bits, radix: 16))
        }
        guard BF16GEMMKernel.cpuHasAVX512BF16 else { return }
        var src = table.map { Float(bitPattern: $0.0) }
        var rng = Xoshiro256(seed: 42)
        for _ in 0..<1_000_000 { src.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        var out = [UInt16](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { charrnn_bf16_round(s.baseAddress!, s.count, $0.baseAddress!) } }
        for (i, x) in src.enumerated() where out[i] != bf16RNE(x) {
            XCTFail("\(String(x.bitPattern, radix: 16)): AVX512_BF16 \(String(out[i], radix: 16)), Swift \(String(bf16RNE(x), radix: 16))")
            break
        }
    }

    /// Both paths pack every layout into the same words, edge values included, with odd k, ragged
    /// n and padding words zero.
    func testBothPathsPackTheSameWords() throws {
        guard BF16GEMMKernel.cpuHasAVX512BF16 else { throw XCTSkip("no AVX512_BF16 kernel here (the CPU lacks it, or a CHARRNN_PORTABLE build)") }
        let specials: [Float] = [.nan, -.infinity, .infinity, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 1),
                                 -Float(bitPattern: 0x7F_FFFF), .greatestFiniteMagnitude, Float(bitPattern: 0x3F81_8000), -0.0]
        for (rows, k, n) in [(5, 7, 33), (16, 32, 64), (3, 1, 1), (13, 45, 100)] {
            let src = random(max(rows, n, k) * (max(rows, n, k) + 4), seed: 5)
            for (i, s) in specials.enumerated() { src.ptr[i * 7 % src.count] = s }
            let ld = max(rows, n, k) + 4
            var words: [[UInt32]] = []
            for kernel in [BF16GEMMKernel.portable, .avx512bf16] {
                BF16GEMMKernel.forced = kernel
                let op = BF16Operand(maxRows: max(rows, n), maxK: k), p = BF16Panels(maxK: k, maxN: n)
                var w: [UInt32] = []
                func grab(_ count: Int, _ ptr: UnsafeMutablePointer<UInt32>) { w += Array(UnsafeBufferPointer(start: ptr, count: count)) }
                op.round(src.ptr, rows: rows, k: k, lda: ld)
                for i in 0..<rows { grab((k + 1) / 2, op.words + i * op.ld) }
                op.roundTransposed(src.ptr, k: k, rows: rows, lda: ld)
                for q in 0..<((k + 1) / 2) {   // word q of each row, in the pair layout's 48-row blocks
                    for i in 0..<rows { grab(1, op.words + i / 48 * op.ld + q * 48 + i % 48) }
                }
                p.pack(src.ptr, k: k, n: n, ldb: ld)
                grab(p.panels * ((k + 1) / 2) * 32, p.words)
                p.packTransposed(src.ptr, k: k, n: n, ldw: ld)
                grab(p.panels * ((k + 1) / 2) * 32, p.words)
                words.append(w)
            }
            XCTAssertEqual(words[0], words[1], "rows \(rows) k \(k) n \(n)")
        }
    }

    /// The panel layout of CKernels.h, word by word, for a small B with odd k and a ragged panel.
    func testPanelLayout() {
        let k = 3, n = 34
        let b = Storage(count: k * n)
        for kk in 0..<k { for j in 0..<n { b.ptr[kk * n + j] = Float(kk * 100 + j) } }
        for kernel in Self.kernels {
            BF16GEMMKernel.forced = kernel
            let p = BF16Panels(maxK: k, maxN: n)
            p.pack(b.ptr, k: k, n: n, ldb: n)
            for panel in 0..<2 {
                for q in 0..<2 {
                    for jj in 0..<32 {
                        let j = panel * 32 + jj
                        let want: UInt32 = j < n ? pairWord(b.ptr[2 * q * n + j], 2 * q + 1 < k ? b.ptr[(2 * q + 1) * n + j] : 0) : 0
                        XCTAssertEqual(p.words[panel * 2 * 32 + q * 32 + jj], want, "\(kernel) panel \(panel) q \(q) column \(jj)")
                    }
                }
            }
        }
    }

    /// k = 0 writes zeros (or leaves C), and empty m or n touch nothing.
    func testEmptyProducts() {
        for kernel in Self.kernels {
            BF16GEMMKernel.forced = kernel
            let a = random(8, seed: 1), c = random(12, seed: 2), before = c.toArray()
            let p = BF16Panels(maxK: 4, maxN: 4), op = BF16Operand(maxRows: 3, maxK: 4)
            p.packTransposed(a.ptr, k: 0, n: 4, ldw: 1)
            bf16Gemm(m: 3, a: a.ptr, lda: 1, b: p, scratch: op, c: c.ptr, ldc: 4, accumulate: true)
            XCTAssertEqual(c.toArray(), before)
            bf16Gemm(m: 3, a: a.ptr, lda: 1, b: p, scratch: op, c: c.ptr, ldc: 4, accumulate: false)
            XCTAssertEqual(c.toArray(), [Float](repeating: 0, count: 12))
            c.load(before)
            bf16Gemm(m: 0, a: a.ptr, lda: 4, b: p, scratch: op, c: c.ptr, ldc: 4, accumulate: false)
            p.packTransposed(a.ptr, k: 4, n: 0, ldw: 4)
            bf16Gemm(m: 3, a: a.ptr, lda: 4, b: p, scratch: op, c: c.ptr, ldc: 4, accumulate: false)
            XCTAssertEqual(c.toArray(), before)
        }
    }

    /// The AMX decision from its facts, this machine's answer against /proc/cpuinfo, and the
    /// kernel rule: portable when asked or when AVX512_BF16 is missing, the AMX slot only when the OS
    /// grants the tiles, and the slot running AVX512_BF16 (there is no AMX kernel yet).
    func testAMXDetectionAndKernelChoice() throws {
        let bf16 = UInt32(1) << 22, tile = UInt32(1) << 24, xcr = UInt64(3) << 17
        XCTAssertEqual(AMXState.decide(cpuid7EDX: 0, xcr0: xcr, permissionGranted: true), .absent)
        XCTAssertEqual(AMXState.decide(cpuid7EDX: bf16, xcr0: xcr, permissionGranted: true), .absent)   // no AMX-TILE
        XCTAssertEqual(AMXState.decide(cpuid7EDX: tile, xcr0: xcr, permissionGranted: true), .absent)
        XCTAssertEqual(AMXState.decide(cpuid7EDX: bf16 | tile, xcr0: 0, permissionGranted: true), .refusedByOS)
        XCTAssertEqual(AMXState.decide(cpuid7EDX: bf16 | tile, xcr0: UInt64(1) << 17, permissionGranted: true), .refusedByOS)
        XCTAssertEqual(AMXState.decide(cpuid7EDX: bf16 | tile, xcr0: xcr, permissionGranted: false), .refusedByOS)
        XCTAssertEqual(AMXState.decide(cpuid7EDX: bf16 | tile, xcr0: xcr | 0xE7, permissionGranted: true), .usable)

        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        // a CHARRNN_PORTABLE build (charrnn_bf16_max_k() == 0) detects nothing
        let native = charrnn_bf16_max_k() > 0
        if !flags.isEmpty && native {
            XCTAssertEqual(AMXState.current != .absent, flags.contains("amx_bf16") && flags.contains("amx_tile"))
            XCTAssertEqual(BF16GEMMKernel.cpuHasAVX512BF16, flags.contains("avx512_bf16") && flags.contains("avx512bw") && flags.contains("avx512vl"))
        }
        if !native {
            XCTAssertEqual(AMXState.current, .absent)
            XCTAssertFalse(BF16GEMMKernel.cpuHasAVX512BF16)
            XCTAssertEqual(BF16GEMMKernel.detected, .portable)
        }

        let choose = BF16GEMMKernel.choose
        XCTAssertEqual(choose(true, .usable, [:]), .amx)
        XCTAssertEqual(choose(true, .refusedByOS, [:]), .avx512bf16)
        XCTAssertEqual(choose(true, .absent, [:]), .avx512bf16)
        XCTAssertEqual(choose(false, .usable, [:]), .portable)
        XCTAssertEqual(choose(true, .usable, ["CHARRNN_PORTABLE": "1"]), .portable)
        XCTAssertEqual(choose(true, .usable, ["CHARRNN_BF16_KERNEL": "portable"]), .portable)
        XCTAssertEqual(choose(true, .usable, ["CHARRNN_BF16_KERNEL": "avx512bf16"]), .avx512bf16)
        XCTAssertEqual(BF16GEMMKernel.amx.runs, .avx512bf16)
        XCTAssertEqual(BF16GEMMKernel.portable.runs, .portable)

        // pinned to the AMX slot, a product gives the AVX512_BF16 bits (portable ones without it)
        let t = makeCase(.nt, 20, 33, 40)
        let a = random(t.aCount, seed: 1), b = random(t.bCount, seed: 2)
        var bits: [[UInt32]] = []
        for kernel in [BF16GEMMKernel.amx, BF16GEMMKernel.cpuHasAVX512BF16 ? .avx512bf16 : .portable] {
            BF16GEMMKernel.forced = kernel
            let c = Storage(count: t.m * t.ldc)
            product(t, a: a, b: b, c: c, accumulate: false)
            bits.append(c.toArray().map(\.bitPattern))
        }
        XCTAssertEqual(bits[0], bits[1])
    }

    /// Rounding, packing and the three products make no heap allocation once the operands exist
    /// (this thread's count, with scripts/malloc-count.c preloaded as .ci/run does; skipped otherwise).
    func testProductsAllocateNothing() throws {
        typealias Fn = @convention(c) () -> UInt
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "charrnn_malloc_count_thread") else {
            throw XCTSkip("run with LD_PRELOAD of scripts/malloc-count.c to count allocations")
        }
        let count = unsafeBitCast(sym, to: Fn.self)
        try WorkerPool.shared.setWidth(2)
        let m = 50, k = 64, n = 96
        let x = random(m * k, seed: 1), w = random(n * k, seed: 2), c = Storage(count: 2 * m * n + n * k)
        let wp = BF16Panels(maxK: max(k, n), maxN: max(k, n)), wt = BF16Panels(maxK: max(m, n), maxN: max(k, n))
        let op = BF16Operand(maxRows: max(m, n), maxK: max(m, n, k)), op2 = BF16Operand(maxRows: max(m, n), maxK: max(m, n, k))
        for kernel in Self.kernels {
            BF16GEMMKernel.forced = kernel
            func round() {
                wp.packTransposed(w.ptr, k: k, n: n, ldw: k)
                bf16Gemm(m: m, a: x.ptr, lda: k, b: wp, scratch: op, c: c.ptr, ldc: n, accumulate: false)    // x·Wᵀ
                op.prepare(rows: m, k: k)
                op.roundRows(0..<m, from: x.ptr, lda: k)
                bf16GemmRows(0..<m, a: op, b: wp, c: c.ptr, ldc: n, accumulate: true)                       // h·Wᵀ per step
                wp.pack(w.ptr, k: n, n: k, ldb: k)
                bf16Gemm(m: m, a: c.ptr, lda: n, b: wp, scratch: op, c: c.ptr + m * n, ldc: k, accumulate: true)  // dy·W
                bf16GemmTN(m: n, n: k, k: m, a: c.ptr, lda: n, b: x.ptr, ldb: k, aScratch: op2, bScratch: wt,
                           c: c.ptr + 2 * m * n, ldc: k, accumulate: true)                                   // dyᵀ·x
            }
            round()
            let start = count()
            for _ in 0..<20 { round() }
            XCTAssertEqual(count() - start, 0, "heap allocations in 20 rounds, \(kernel)")
        }
        let probe = count()
        let a = [Float](repeating: 1, count: 1000 + m)
        XCTAssertGreaterThan(count() - probe, 0, "the counter counts (\(a.count) floats allocated)")
    }

    /// The probe runs the selected kernel and reports a positive finite rate (a smoke run at a small
    /// size, not a figure).
    func testPeakProbeRuns() throws {
        try WorkerPool.shared.setWidth(2)
        let g = bf16GemmPeakGFLOPS(n: 96, reps: 1)
        XCTAssertTrue(g.isFinite && g > 0)
    }
}
