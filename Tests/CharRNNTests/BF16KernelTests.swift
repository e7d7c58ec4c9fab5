// BF16KernelTests.swift — both bfloat16 inference kernels (portable Swift SIMD, and AVX512_BF16 in
// CKernels where the CPU has it) against a Double reference over the same bf16-rounded weights, the
// per-row bit-identity the batched sampler relies on, and each path's determinism.

import XCTest
@testable import CharRNN

final class BF16KernelTests: XCTestCase {
    override func tearDown() { BF16Kernel.forced = nil }

    /// The kernels this machine can run: portable always, AVX512_BF16 where the CPU has it.
    static var kernels: [BF16Kernel] { BF16Kernel.cpuHasAVX512BF16 ? [.portable, .avx512bf16] : [.portable] }

    func random(_ n: Int, seed: UInt64, scale: Float = 1) -> Storage {
        var rng = Xoshiro256(seed: seed)
        let s = Storage(count: max(1, n))
        for i in 0..<n { s.ptr[i] = (rng.nextFloat() * 2 - 1) * scale }
        return s
    }

    /// bf16 panels of Bᵀ = w (n × k) made with `kernel` pinned.
    func panels(_ w: Storage, k: Int, n: Int, kernel: BF16Kernel) -> PackedPanels {
        BF16Kernel.forced = kernel
        defer { BF16Kernel.forced = nil }
        let p = PackedPanels(maxK: k, maxN: n, precision: .bf16)
        XCTAssertEqual(p.kernel, kernel)
        p.packTransposed(w.ptr, k: k, n: n, ld: k)
        return p
    }

    static let shapes = [(1, 5, 7), (2, 16, 32), (3, 17, 33), (7, 64, 96), (13, 1, 40), (10, 2, 64), (25, 128, 512),
                         (50, 33, 70), (40, 3001, 48)]

    /// Each element against Σ_k x·bf16(w) in Double — x itself rounded to bf16 for the AVX512_BF16
    /// kernel, which rounds its input — within 1e-5 of Σ|x·w| (float32 sums): one wrong, missing or
    /// doubled term is ~1/k of that sum, far more.
    func testBothKernelsMatchTheDoubleReference() {
        for kernel in Self.kernels {
            for (m, k, n) in Self.shapes {
                let x = random(m * k, seed: 1), w = random(n * k, seed: 2)
                let b = panels(w, k: k, n: n, kernel: kernel)
                let start = random(m * n, seed: 3)
                for accumulate in [false, true] {
                    let out = Storage(count: m * n)
                    out.ptr.update(from: start.ptr, count: m * n)
                    packedGemmRows(m: m, a: x.ptr, lda: k, b: b, c: out.ptr, ldc: n, accumulate: accumulate)
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var ref = accumulate ? Double(start.ptr[i * n + j]) : 0, mag = abs(ref)
                            for kk in 0..<k {
                                let xv = x.ptr[i * k + kk], xr = kernel == .avx512bf16 ? float(bfloat16: bfloat16(xv)) : xv
                                let t = Double(xr) * Double(float(bfloat16: bfloat16(w.ptr[j * k + kk])))
                                ref += t; mag += abs(t)
                            }
                            worst = max(worst, abs(Double(out.ptr[i * n + j]) - ref) / (mag + 1e-30))
                        }
                    }
                    XCTAssertLessThan(worst, 1e-5, "\(kernel) m \(m) k \(k) n \(n) accumulate \(accumulate)")
                }
            }
        }
    }

    /// A panel range writes those columns only.
    func testPanelRangeWritesOnlyItsColumns() {
        for kernel in Self.kernels {
            let m = 7, k = 40, n = 150
            let x = random(m * k, seed: 4), w = random(n * k, seed: 5)
            let b = panels(w, k: k, n: n, kernel: kernel)
            let all = Storage(count: m * n), part = Storage(count: m * n)
            packedGemmRows(m: m, a: x.ptr, lda: k, b: b, c: all.ptr, ldc: n, accumulate: false)
            part.ptr.update(repeating: .nan, count: m * n)
            packedGemmRows(m: m, a: x.ptr, lda: k, b: b, c: part.ptr, ldc: n, accumulate: false, panels: 1..<3)
            for i in 0..<m {
                for j in 0..<n {
                    if (32..<96).contains(j) { XCTAssertEqual(part.ptr[i * n + j], all.ptr[i * n + j], "\(kernel) \(i),\(j)") }
                    else { XCTAssertTrue(part.ptr[i * n + j].isNaN, "\(kernel): column \(j) outside the range was written") }
                }
            }
        }
    }

    /// A row's bits do not depend on how many rows come with it or where it sits (six-row, three-row
    /// and one-row tiles, and the C kernel's row chunks: k = 512 converts 30 rows at a time), and a
    /// call repeated gives the same bits.
    func testRowBitsDoNotDependOnTheBatchAndRepeat() {
        for kernel in Self.kernels {
            for (k, n) in [(512, 96), (33, 70)] {
                let m = 41
                let x = random(m * k, seed: 6), w = random(n * k, seed: 7)
                let b = panels(w, k: k, n: n, kernel: kernel)
                let all = Storage(count: m * n), again = Storage(count: m * n), one = Storage(count: n)
                packedGemmRows(m: m, a: x.ptr, lda: k, b: b, c: all.ptr, ldc: n, accumulate: false)
                packedGemmRows(m: m, a: x.ptr, lda: k, b: b, c: again.ptr, ldc: n, accumulate: false)
                XCTAssertEqual(all.toArray(), again.toArray(), "\(kernel): not deterministic")
                for r in [0, 5, 6, 29, 30, 31, 38, 40] {
                    packedGemmRow(a: x.ptr + r * k, b: b, c: one.ptr, accumulate: false)
                    XCTAssertEqual(Array(all.toArray()[(r * n)..<((r + 1) * n)]), one.toArray(), "\(kernel) k \(k) row \(r) alone")
                }
                // rows 7..<20 as a batch of their own (another tiling), through a strided view
                let sub = Storage(count: 13 * n)
                packedGemmRows(m: 13, a: x.ptr + 7 * k, lda: k, b: b, c: sub.ptr, ldc: n, accumulate: false)
                XCTAssertEqual(sub.toArray(), Array(all.toArray()[(7 * n)..<(20 * n)]), "\(kernel) k \(k): rows 7–19 as their own batch")
            }
        }
    }

    /// The AVX512_BF16 path really runs where the CPU has it: its bits differ from the portable path's
    /// (its input is rounded to bf16), though both match their references above.
    func testTheTwoKernelsAreDifferentCode() throws {
        guard BF16Kernel.cpuHasAVX512BF16 else { throw XCTSkip("this CPU has no AVX512_BF16") }
        let m = 9, k = 256, n = 64
        let x = random(m * k, seed: 8), w = random(n * k, seed: 9)
        let p = Storage(count: m * n), v = Storage(count: m * n)
        packedGemmRows(m: m, a: x.ptr, lda: k, b: panels(w, k: k, n: n, kernel: .portable), c: p.ptr, ldc: n, accumulate: false)
        packedGemmRows(m: m, a: x.ptr, lda: k, b: panels(w, k: k, n: n, kernel: .avx512bf16), c: v.ptr, ldc: n, accumulate: false)
        XCTAssertNotEqual(p.toArray(), v.toArray())
        // the environment's choice: AVX512_BF16 unless told otherwise
        XCTAssertEqual(BF16Kernel.selected, ProcessInfo.processInfo.environment["CHARRNN_PORTABLE"] == nil
                       && ProcessInfo.processInfo.environment["CHARRNN_BF16_KERNEL"] != "portable" ? .avx512bf16 : .portable)
    }

    /// The model's bf16 inference step with each kernel: close to float32, and a stream gives the same
    /// bits alone as among seven others (the decoder and every layer's products go through the kernel).
    func testModelStepWithEachKernel() {
        for kernel in Self.kernels {
            BF16Kernel.forced = kernel
            defer { BF16Kernel.forced = nil }
            for c in [InferenceStepTests.config(.lstm, embed: 0, adaptive: false), InferenceStepTests.config(.gru, embed: 8, adaptive: false)] {
                let m16 = InferenceStepTests.checkBFloat16Step(c, label: "\(kernel)")
                XCTAssertEqual(m16.inferenceWeights().whhT[0].kernel, kernel)
            }
        }
    }
}
