// CKernels/bf16.c — the AVX512_BF16 inference product (see include/CKernels.h for the layout).
//
// Legend: m rows (streams), k inner dimension, K2 = ⌈k/2⌉ k-pairs, 32-column panels.
// VDPBF16PS acc, x, w: for each of 16 float32 lanes, acc += x.lo·w.lo + x.hi·w.hi — here x is one
// k-pair of a row (rounded to bf16) broadcast to every lane and w one k-pair of 16 columns, so one
// instruction is 32 multiply-adds. Per row, panel and 16-column half there are two accumulators,
// one for the even and one for the odd k-pairs, added at the end: every row gets exactly this
// arithmetic, whether it is computed in a tile of 6 or 3 rows (which share each panel load) or
// alone (one row walks 4 panels at once, for independent dependency chains).

#include "CKernels.h"

#if defined(__x86_64__) && !defined(CHARRNN_PORTABLE)
#include "bf16_avx512.h"


int charrnn_has_avx512bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

/// The converted input rows live in a 64 KB stack buffer (no allocation per step; the pool's workers
/// have 1 MB stacks): a row takes ⌈k/2⌉ words rounded up to 16, so k ≤ 32,736 fits one row at least.
#define BUF_WORDS 16384
long charrnn_bf16_max_k(void) { return 2 * (BUF_WORDS - 16); }

/// One row of a (k floats) → ⌈k/2⌉ words of bf16 pairs (rounded to nearest even; an odd k pads
/// with 0) at dst, 16 words at a time (dst has room for a multiple of 16).
INLINE BF16_TARGET void convert_row(const float *x, long k, uint32_t *dst) {
    for (long j = 0; j < k; j += 32) {
        long left = k - j;
        __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        __mmask16 m1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
        __m512 x0 = _mm512_maskz_loadu_ps(m0, x + j), x1 = _mm512_maskz_loadu_ps(m1, x + j + 16);
        // 32 bf16 in order x[j] … x[j+31]: 16 pair words
        _mm512_store_si512((__m512i *)(dst + j / 2), (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
    }
}

/// The 16-lane masks of a panel's two halves for its first w ≤ 32 columns.
INLINE void masks(int w, __mmask16 *m0, __mmask16 *m1) {
    *m0 = w >= 16 ? 0xFFFF : (__mmask16)((1u << w) - 1);
    *m1 = w >= 32 ? 0xFFFF : w <= 16 ? 0 : (__mmask16)((1u << (w - 16)) - 1);
}

/// R rows (R ≤ 6, a constant after inlining) × one panel. x: converted rows, xs words apart;
/// c: the panel's first column of row 0; w: the panel's columns (≤ 32).
INLINE BF16_TARGET void tile(const int R, const uint32_t *x, long xs, const uint32_t *panel, long K2,
                             float *c, long ldc, int w, int accumulate) {
    __m512 e0[6], e1[6], o0[6], o1[6];   // per row: even/odd k-pairs × columns 0–15/16–31
    for (int r = 0; r < R; r++) e0[r] = e1[r] = o0[r] = o1[r] = _mm512_setzero_ps();
    const uint32_t *p = panel;
    long q = 0;
    for (; q + 1 < K2; q += 2, p += 64) {
        __m512i w0 = _mm512_load_si512((const __m512i *)p), w1 = _mm512_load_si512((const __m512i *)(p + 16));
        __m512i v0 = _mm512_load_si512((const __m512i *)(p + 32)), v1 = _mm512_load_si512((const __m512i *)(p + 48));
        for (int r = 0; r < R; r++) {
            __m512i xe = _mm512_set1_epi32((int)x[r * xs + q]), xo = _mm512_set1_epi32((int)x[r * xs + q + 1]);
            DP(e0[r], xe, w0); DP(e1[r], xe, w1); DP(o0[r], xo, v0); DP(o1[r], xo, v1);
        }
    }
    if (q < K2) {
        __m512i w0 = _mm512_load_si512((const __m512i *)p), w1 = _mm512_load_si512((const __m512i *)(p + 16));
        for (int r = 0; r < R; r++) {
            __m512i xe = _mm512_set1_epi32((int)x[r * xs + q]);
            DP(e0[r], xe, w0); DP(e1[r], xe, w1);
        }
    }
    __mmask16 m0, m1;
    masks(w, &m0, &m1);
    for (int r = 0; r < R; r++) {
        store16(c + r * ldc, m0, _mm512_add_ps(e0[r], o0[r]), accumulate);
        store16(c + r * ldc + 16, m1, _mm512_add_ps(e1[r], o1[r]), accumulate);
    }
}

/// One row × NP panels (NP ≤ 4, a constant after inlining) from panel p: `tile`'s per-panel
/// arithmetic, NP panels' chains interleaved.
INLINE BF16_TARGET void row_panels(const int NP, const uint32_t *x, const uint32_t *panels, long p, long K2,
                                   long n, float *c, int accumulate) {
    __m512 e0[4], e1[4], o0[4], o1[4];
    for (int j = 0; j < NP; j++) e0[j] = e1[j] = o0[j] = o1[j] = _mm512_setzero_ps();
    const uint32_t *base = panels + p * K2 * 32;
    long q = 0;
    for (; q + 1 < K2; q += 2) {
        __m512i xe = _mm512_set1_epi32((int)x[q]), xo = _mm512_set1_epi32((int)x[q + 1]);
        for (int j = 0; j < NP; j++) {
            const uint32_t *pp = base + j * K2 * 32 + q * 32;
            __m512i w0 = _mm512_load_si512((const __m512i *)pp), w1 = _mm512_load_si512((const __m512i *)(pp + 16));
            __m512i v0 = _mm512_load_si512((const __m512i *)(pp + 32)), v1 = _mm512_load_si512((const __m512i *)(pp + 48));
            DP(e0[j], xe, w0); DP(e1[j], xe, w1); DP(o0[j], xo, v0); DP(o1[j], xo, v1);
        }
    }
    if (q < K2) {
        __m512i xe = _mm512_set1_epi32((int)x[q]);
        for (int j = 0; j < NP; j++) {
            const uint32_t *pp = base + j * K2 * 32 + q * 32;
            __m512i w0 = _mm512_load_si512((const __m512i *)pp), w1 = _mm512_load_si512((const __m512i *)(pp + 16));
            DP(e0[j], xe, w0); DP(e1[j], xe, w1);
        }
    }
    for (int j = 0; j < NP; j++) {
        long col = (p + j) * 32;
        __mmask16 m0, m1;
        masks(n - col < 32 ? (int)(n - col) : 32, &m0, &m1);
        store16(c + col, m0, _mm512_add_ps(e0[j], o0[j]), accumulate);
        store16(c + col + 16, m1, _mm512_add_ps(e1[j], o1[j]), accumulate);
    }
}

BF16_TARGET void charrnn_bf16_gemm_rows(long m, const float *a, long lda, const void *panels, long k, long n,
                                        long p0, long p1, float *c, long ldc, int accumulate) {
    const uint32_t *P = (const uint32_t *)panels;
    uint32_t buf[BUF_WORDS] __attribute__((aligned(64)));
    long K2 = (k + 1) / 2;
    long xs = (K2 + 15) / 16 * 16;          // words per converted row
    long chunk = BUF_WORDS / xs;            // rows converted at a time (a multiple of 6 when ≥ 6)
    if (chunk >= 6) chunk -= chunk % 6;
    for (long i0 = 0; i0 < m; i0 += chunk) {
        long mc = m - i0 < chunk ? m - i0 : chunk;
        for (long r = 0; r < mc; r++) convert_row(a + (i0 + r) * lda, k, buf + r * xs);
        float *cc = c + i0 * ldc;
        long tiled = mc / 6 * 6 + (mc % 6) / 3 * 3;
        // panels outer, row tiles inner: a panel is read once per chunk of rows
        for (long p = p0; tiled > 0 && p < p1; p++) {
            const uint32_t *panel = P + p * K2 * 32;
            int w = n - p * 32 < 32 ? (int)(n - p * 32) : 32;
            long i = 0;
            for (; i + 6 <= mc; i += 6) tile(6, buf + i * xs, xs, panel, K2, cc + i * ldc + p * 32, ldc, w, accumulate);
            for (; i + 3 <= mc; i += 3) tile(3, buf + i * xs, xs, panel, K2, cc + i * ldc + p * 32, ldc, w, accumulate);
        }
        // the 1–2 rows left: one at a time, four panels per pass
        for (long r = tiled; r < mc; r++) {
            long p = p0;
            for (; p + 4 <= p1; p += 4) row_panels(4, buf + r * xs, P, p, K2, n, cc + r * ldc, accumulate);
            for (; p < p1; p++) row_panels(1, buf + r * xs, P, p, K2, n, cc + r * ldc, accumulate);
        }
    }
}

#else   // not x86-64, or a CHARRNN_PORTABLE build: charrnn_has_avx512bf16() is 0, so never called

int charrnn_has_avx512bf16(void) { return 0; }
long charrnn_bf16_max_k(void) { return 0; }
void charrnn_bf16_gemm_rows(long m, const float *a, long lda, const void *panels, long k, long n,
                            long p0, long p1, float *c, long ldc, int accumulate) {
    (void)m; (void)a; (void)lda; (void)panels; (void)k; (void)n; (void)p0; (void)p1; (void)c; (void)ldc; (void)accumulate;
    __builtin_trap();
}

#endif
