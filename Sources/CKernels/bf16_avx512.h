// bf16_avx512.h — what the two AVX512_BF16 kernels share (bf16.c: the inference step's packed
// weights; bf16gemm.c: the training GEMM): the per-function target, forced inlining, the dot-product
// step and the masked store of 16 fp32 lanes (=, or += the values already in c). Internal: included by
// those two files only, inside their `#if defined(__x86_64__) && !defined(CHARRNN_PORTABLE)` blocks.
#ifndef CHARRNN_BF16_AVX512_H
#define CHARRNN_BF16_AVX512_H
#include <immintrin.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))
#define DP(acc, x, w) acc = _mm512_dpbf16_ps(acc, (__m512bh)(x), (__m512bh)(w))

/// Stores 16 lanes of v at c (the lanes of `mask`; all 16 when it is 0xFFFF), adding c's values first
/// when `accumulate`.
INLINE BF16_TARGET void store16(float *c, __mmask16 mask, __m512 v, int accumulate) {
    if (mask == 0xFFFF) {
        if (accumulate) v = _mm512_add_ps(_mm512_loadu_ps(c), v);
        _mm512_storeu_ps(c, v);
    } else if (mask) {
        if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, c), v);
        _mm512_mask_storeu_ps(c, mask, v);
    }
}
#endif
