// CKernels — the few C functions Swift cannot reach: the CPU affinity mask, and AVX512_BF16's
// VDPBF16PS (bfloat16 pair dot products accumulated in float32) for the inference step's packed
// bf16 weights.
//
// Compiled with per-function target attributes, not global -march flags: the binary still runs on
// any x86-64 (or other) CPU, and `charrnn_has_avx512bf16` says whether these kernels may be called.
// The Swift caller (Tensor/PackedGEMM.swift) decides once, when it packs the weights, since the
// panel layout of this path differs from the portable one.

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

#ifdef __cplusplus
}
#endif

#endif
