// CKernels — the few C functions Swift cannot reach: the CPU affinity mask, AVX512_BF16's
// VDPBF16PS (bfloat16 pair dot products accumulated in float32) for the inference step's packed
// bf16 weights (bf16.c) and for the mixed-precision training products (bf16gemm.c), and the
// AMX-BF16 detection.
//
// Compiled with per-function target attributes, not global -march flags: the binary still runs on
// any x86-64 (or other) CPU, and `charrnn_has_avx512bf16` says whether these kernels may be called.
// The inference caller (Tensor/PackedGEMM.swift) decides once, when it packs the weights, since the
// panel layout of this path differs from its portable one; the training caller (Tensor/BF16GEMM.swift)
// shares its layouts with its portable path, so it may decide per call.

#ifndef CHARRNN_CKERNELS_H
#define CHARRNN_CKERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// CPUs in the calling thread's affinity mask (Linux sched_getaffinity); 0 where unknown.
int charrnn_affinity_cores(void);

/// 1 if this CPU and OS run AVX512F + AVX512_BF16 (zmm state enabled) and the build allows it
/// (a CHARRNN_PORTABLE build never does); else 0.
int charrnn_has_avx512bf16(void);

/// Largest k the kernel accepts (its input rows are converted to bfloat16 in a fixed stack buffer).
long charrnn_bf16_max_k(void);

/// Rows of C for the inference step, with B (k × n) packed in the pair layout: panel p (columns
/// [32p, 32p+32)) holds, for each k-pair q < ⌈k/2⌉, 32 words — words 0–15 for columns 0–15, 16–31
/// for columns 16–31 — each word bf16(B[2q][j]) | bf16(B[2q+1][j]) << 16 (an odd k pads with 0;
/// columns past n are 0). A panel is ⌈k/2⌉·128 bytes and starts 64-byte aligned.
///   c (m×n) = (accumulate ? c + : ) bf16(a) (m×k, row-major, lda) · B, panels [p0, p1) only.
/// The input is rounded to bfloat16 (nearest even) too; products are exact and summed in float32,
/// even and odd k-pairs in two accumulators added at the end. Every row gets exactly this
/// arithmetic whatever m is and wherever it sits, so a row's bits do not depend on the batch.
/// Requires charrnn_has_avx512bf16() and k ≤ charrnn_bf16_max_k().
void charrnn_bf16_gemm_rows(long m, const float *a, long lda, const void *panels, long k, long n,
                            long p0, long p1, float *c, long ldc, int accumulate);

// MARK: - Training products (bf16gemm.c)
//
// Operands are "pair words": word q of a row holds bf16(x[2q]) in its low and bf16(x[2q+1]) in its
// high 16 bits, K2 = ⌈k/2⌉ words per row (an odd k pads the last high half with 0).
// Rounding (all functions below, and the Swift portable path): float32 → bf16 to nearest even, as
// VCVTNE2PS2BF16 does: a NaN stays a NaN (quiet bit set, sign and top payload kept), ±Inf stays,
// a finite value past the largest bf16 becomes ±Inf, a float32 subnormal becomes ±0.
//
// Left operand A (m × k) is read at a[⌊i/bh⌋·bs + (i mod bh)·rs + q·qs] (word q of row i):
//   row layout   rs = ld ≥ K2, qs = 1, bh = LONG_MAX, bs = 0   (charrnn_bf16_round_rows of a
//                row-major A)
//   pair layout  blocks of BLK = CHARRNN_BF16_PAIR_BLOCK rows, each holding its rows' word q side by
//                side for q = 0, 1, …: rs = 1, qs = BLK, bh = BLK, bs = BLK·K2 (charrnn_bf16_round_pairs
//                of a row-major Aᵀ (k × m)). A register tile of up to 12 rows then reads 48
//                consecutive bytes per k-pair, one block after the other; the unblocked pair layout
//                (word q of all m rows side by side, rows of one k-pair ~8 KB apart at m = 2048)
//                touched a new 4 KB page per k-pair and ran the weight gradients 13% slower on Zen 4.
// Right operand B (k × n) is packed in 32-column panels, the layout of the inference kernel: panel p
// (columns [32p, 32p+32)) holds for each k-pair q 32 words, word jj = pair (B[2q][32p+jj],
// B[2q+1][32p+jj]); columns past n are 0. Panel p starts at word p·K2·32 (64-byte aligned when the
// buffer is).

/// dst[i] = bf16(src[i]) for i < n.
void charrnn_bf16_round(const float *src, long n, uint16_t *dst);

/// Row layout of A = src (rows × k, row-major, lds): dst[r·ldd + q] for q < K2 (ldd ≥ K2; words
/// past K2 are not written).
void charrnn_bf16_round_rows(const float *src, long rows, long k, long lds, uint32_t *dst, long ldd);

/// Rows per block of the pair layout (a multiple of 16 and of the 12-row register tile).
#define CHARRNN_BF16_PAIR_BLOCK 48

/// Pair layout of A = srcᵀ, src (k × m, row-major, lds): word q of row i, pair (src[2q][i],
/// src[2q+1][i]), at dst[⌊i/48⌋·48·K2 + q·48 + i mod 48] for every k-pair q and the rows i of A
/// (columns of src) in [i0, min(i1, m)), i0 a multiple of 16 (the last block's words past m are not
/// written). dst holds ⌈m/48⌉·48·K2 words. With `sums` (else NULL): sums[i] = the column sum
/// Σ src[r][i] over r < k for those i, one float32 chain per column from 0 in row order (a bias
/// gradient, read in the same pass), so its bits do not depend on how columns are split. With `table`
/// (else NULL), also table[ids[r]·m + i] += src[r][i] for every row r in order (a one-hot input's
/// dW_ihᵀ, a scatter-add by token id, ids in [0, rows of table)).
void charrnn_bf16_round_pairs(const float *src, long k, long m, long lds, uint32_t *dst, long i0, long i1, float *sums,
                              const int32_t *ids, float *table);

/// Panels [p0, p1) of B (k × n): B[kk][j] = src[kk·ld + j], or with `transposed` src[j·ld + kk]
/// (src then holds Bᵀ (n × k), e.g. a weight matrix W for x·Wᵀ). `panels` must be 64-byte aligned.
void charrnn_bf16_pack_panels(const float *src, long k, long n, long ld, int transposed, uint32_t *panels, long p0, long p1);

/// k-pairs [q0, min(q1, ⌈k/2⌉)) of every panel of B (k × n), B[kk][j] = src[kk·ld + j] (the words
/// charrnn_bf16_pack_panels writes for them, untransposed): the rows 2q0… of B just updated, packed
/// while they are in cache (the optimizer's fused update, Model/MixedPrecision.swift).
void charrnn_bf16_pack_panel_pairs(const float *src, long k, long n, long ld, uint32_t *panels, long q0, long q1);

/// c (rows [m0, m1) × columns [32·p0, min(n, 32·p1))) = (accumulate ? c + : ) A · B, A in either
/// layout (rs, qs, bh, bs; a and c point at row 0), B packed in panels for (k, n). Each element is one float32 chain over the k-pairs in order
/// (VDPBF16PS: high products then low, denormals flushed), stored or added to c once at the end, so
/// its bits depend on neither m, nor the panel range, nor how a caller splits rows or panels
/// across threads. Requires charrnn_has_avx512bf16(); `panels` 64-byte aligned.
void charrnn_bf16_gemm(long m0, long m1, const uint32_t *a, long rs, long qs, long bh, long bs,
                       const uint32_t *panels, long k, long n, long p0, long p1, float *c, long ldc, int accumulate);

/// AMX-BF16 from the raw facts: 0 = the CPU has no AMX-BF16 (or no AMX-TILE), 1 = it has but the
/// OS does not enable the tile state (XCR0 bits 17–18) or refuses this process the tile data,
/// 2 = usable. Pure: tests feed it every combination.
int charrnn_amx_bf16_decide(uint32_t cpuid7_edx, uint64_t xcr0, int permission_granted);

/// charrnn_amx_bf16_decide for this CPU and process (asks Linux for the tile data with
/// arch_prctl(ARCH_REQ_XCOMP_PERM) when the CPU has AMX); 0 on other systems and portable builds.
int charrnn_amx_bf16_state(void);

#ifdef __cplusplus
}
#endif

#endif
