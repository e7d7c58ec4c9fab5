// CKernels/bf16gemm.c — the AVX512_BF16 training product (bfloat16 operands, float32 sums), the
// rounding of float32 operands into its packed layouts, and the AMX-BF16 detection (see
// include/CKernels.h for the layouts and the guarantees).
//
// Legend: K2 = ⌈k/2⌉ k-pairs; a "pair word" holds bf16(x[2q]) in its low and bf16(x[2q+1]) in its
// high 16 bits (an odd k pads with 0). VDPBF16PS acc, x, w adds, per float32 lane, the two exact
// products of one pair word of x and one of w, high half first, then low half, each addition rounded
// to nearest even with denormals flushed (measured on this Zen 4 and as Intel's pseudocode says).
//
// Determinism: each element of C is one accumulator chain, k-pairs in order from 0, added to C
// (or stored) once at the end. Register tiles, the row/panel ranges of a call and the split across
// threads only decide which elements are computed together, never the arithmetic of one, so the
// bits of C do not depend on m, on tiling or on the number of threads.

#include "CKernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#if defined(__linux__)
#include <unistd.h>
#include <sys/syscall.h>
#endif
#endif

/// AMX-BF16 decision from the raw facts (pure, so tests can feed it every combination):
/// CPUID.(7,0).EDX bit 22 (AMX-BF16) and bit 24 (AMX-TILE); XCR0 bits 17–18 (tile config and data
/// state enabled by the OS); whether Linux granted this process the tile data (ARCH_REQ_XCOMP_PERM).
int charrnn_amx_bf16_decide(uint32_t cpuid7_edx, uint64_t xcr0, int permission_granted) {
    int cpu = (cpuid7_edx >> 22 & 1) && (cpuid7_edx >> 24 & 1);
    if (!cpu) return 0;
    if ((xcr0 & (3ull << 17)) != (3ull << 17) || !permission_granted) return 1;
    return 2;
}

int charrnn_amx_bf16_state(void) {
#if defined(__x86_64__) && defined(__linux__) && !defined(CHARRNN_PORTABLE)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (charrnn_amx_bf16_decide(d, 0, 0) == 0) return 0;     // no AMX-BF16: no system calls
    unsigned a1, b1, c1, d1;
    if (!__get_cpuid(1, &a1, &b1, &c1, &d1) || !(c1 >> 27 & 1)) return 1;   // no OSXSAVE: no XGETBV
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    uint64_t xcr0 = (uint64_t)hi << 32 | lo;
    // Linux ≥ 5.16 gives a process AMX tile data only on request (ARCH_REQ_XCOMP_PERM = 0x1023,
    // XFEATURE_XTILEDATA = 18); asking again once granted is harmless.
    long granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    return charrnn_amx_bf16_decide(d, xcr0, (int)granted);
#else
    return 0;
#endif
}

#if defined(__x86_64__) && !defined(CHARRNN_PORTABLE)
#include "bf16_avx512.h"


/// Mask of the first `left` (clamped to 0…16) of 16 lanes.
INLINE __mmask16 lanes(long left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/// 16 pair words from 16 floats of an even row e and the next (odd) row o (o == NULL: zeros).
INLINE BF16_TARGET __m512i pair_words(const float *e, const float *o, __mmask16 m) {
    __m256i lo = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, e));
    __m512i w = _mm512_cvtepu16_epi32(lo);
    if (o) {
        __m256i hi = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, o));
        w = _mm512_or_si512(w, _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
    }
    return w;
}

BF16_TARGET void charrnn_bf16_round(const float *src, long n, uint16_t *dst) {
    for (long i = 0; i < n; i += 32) {
        __m512 x0 = _mm512_maskz_loadu_ps(lanes(n - i), src + i), x1 = _mm512_maskz_loadu_ps(lanes(n - i - 16), src + i + 16);
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
        long left = n - i;
        __mmask32 m = left >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
        _mm512_mask_storeu_epi16(dst + i, m, v);
    }
}

BF16_TARGET void charrnn_bf16_round_rows(const float *src, long rows, long k, long lds, uint32_t *dst, long ldd) {
    long K2 = (k + 1) / 2;
    for (long r = 0; r < rows; r++) {
        const float *x = src + r * lds;
        uint32_t *d = dst + r * ldd;
        for (long j = 0; j < k; j += 32) {
            __m512 x0 = _mm512_maskz_loadu_ps(lanes(k - j), x + j), x1 = _mm512_maskz_loadu_ps(lanes(k - j - 16), x + j + 16);
            // 32 bf16 in order x[j] … x[j+31] = 16 pair words (an odd k's last high half is bf16(0))
            _mm512_mask_storeu_epi32(d + j / 2, lanes(K2 - j / 2), (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
        }
    }
}

BF16_TARGET void charrnn_bf16_round_pairs(const float *src, long k, long m, long lds, uint32_t *dst,
                                          long i0, long i1, float *sums, const int32_t *ids, float *table) {
    long K2 = (k + 1) / 2, B = CHARRNN_BF16_PAIR_BLOCK;
    if (i1 > m) i1 = m;
    if (sums) for (long i = i0; i < i1; i++) sums[i] = 0;
    for (long q = 0; q < K2; q++) {
        const float *e = src + 2 * q * lds, *o = 2 * q + 1 < k ? e + lds : 0;
        for (long i = i0; i < i1; i += 16) {   // 16 lanes never straddle a block (i0 and B multiples of 16)
            __mmask16 msk = lanes(i1 - i);
            __m512 ev = _mm512_maskz_loadu_ps(msk, e + i), ov = o ? _mm512_maskz_loadu_ps(msk, o + i) : _mm512_setzero_ps();
            __m512i w = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(ev));
            if (o) w = _mm512_or_si512(w, _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(ov)), 16));
            _mm512_mask_storeu_epi32(dst + i / B * B * K2 + q * B + i % B, msk, w);
            if (sums) {   // row 2q, then row 2q+1: one chain per column in row order
                __m512 sv = _mm512_add_ps(_mm512_maskz_loadu_ps(msk, sums + i), ev);
                if (o) sv = _mm512_add_ps(sv, ov);
                _mm512_mask_storeu_ps(sums + i, msk, sv);
            }
            if (table) {  // row r added into table row ids[r], rows in order
                float *te = table + (long)ids[2 * q] * m + i;
                _mm512_mask_storeu_ps(te, msk, _mm512_add_ps(_mm512_maskz_loadu_ps(msk, te), ev));
                if (o) {
                    float *to = table + (long)ids[2 * q + 1] * m + i;
                    _mm512_mask_storeu_ps(to, msk, _mm512_add_ps(_mm512_maskz_loadu_ps(msk, to), ov));
                }
            }
        }
    }
}

/// k-pairs [q0, q1) of panel P (columns [j0, j0 + w)) of B (k × n) row-major: 16 columns of rows 2q
/// and 2q+1 make 16 pair words.
INLINE BF16_TARGET void panel_pairs(const float *src, long k, long ld, uint32_t *P, long j0, long w, long q0, long q1) {
    for (long q = q0; q < q1; q++) {
        const float *e = src + 2 * q * ld + j0, *o = 2 * q + 1 < k ? e + ld : 0;
        _mm512_store_si512((__m512i *)(P + q * 32), pair_words(e, o, lanes(w)));
        _mm512_store_si512((__m512i *)(P + q * 32 + 16), pair_words(e + 16, o ? o + 16 : 0, lanes(w - 16)));
    }
}

BF16_TARGET void charrnn_bf16_pack_panels(const float *src, long k, long n, long ld, int transposed,
                                          uint32_t *panels, long p0, long p1) {
    long K2 = (k + 1) / 2;
    for (long p = p0; p < p1; p++) {
        uint32_t *P = panels + p * K2 * 32;
        long j0 = p * 32, w = n - j0 < 32 ? n - j0 : 32;
        if (!transposed) {
            panel_pairs(src, k, ld, P, j0, w, 0, K2);
            continue;
        }
        // Bᵀ (n × k) row-major (a weight matrix W for x·Wᵀ): row j's pair words are column j of the
        // panel. Per block of 16 k-pairs: round 32 rows into a 32 × 16 tile, then write it transposed.
        uint32_t tile[32][16] __attribute__((aligned(64)));
        for (long qb = 0; qb < K2; qb += 16) {
            long qn = K2 - qb < 16 ? K2 - qb : 16;
            for (long jj = 0; jj < 32; jj++) {
                if (jj < w) {
                    const float *x = src + (j0 + jj) * ld + 2 * qb;
                    long left = k - 2 * qb;
                    __m512 x0 = _mm512_maskz_loadu_ps(lanes(left), x), x1 = _mm512_maskz_loadu_ps(lanes(left - 16), x + 16);
                    _mm512_store_si512((__m512i *)tile[jj], (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
                } else {
                    _mm512_store_si512((__m512i *)tile[jj], _mm512_setzero_si512());
                }
            }
            for (long q = 0; q < qn; q++)
                for (long jj = 0; jj < 32; jj++) P[(qb + q) * 32 + jj] = tile[jj][q];
        }
    }
}

BF16_TARGET void charrnn_bf16_pack_panel_pairs(const float *src, long k, long n, long ld, uint32_t *panels, long q0, long q1) {
    long K2 = (k + 1) / 2, np = (n + 31) / 32;
    if (q1 > K2) q1 = K2;
    for (long p = 0; p < np; p++) {
        long j0 = p * 32, w = n - j0 < 32 ? n - j0 : 32;
        panel_pairs(src, k, ld, panels + p * K2 * 32, j0, w, q0, q1);
    }
}

#define MR 12
// the row loops unrolled in full, so the 2R accumulators live in registers (clang keeps them on the
// stack from R = 11 otherwise, at well under half the speed)
#define UNROLL _Pragma("clang loop unroll(full)")

/// R rows (R ≤ 12, a constant after inlining) × one 32-column panel: 2R accumulators, one per row
/// and 16-column half; per k-pair two panel loads and R broadcasts of one pair word of A.
INLINE BF16_TARGET void tile(const int R, const uint32_t *a, long rs, long qs, const uint32_t *panel, long K2,
                             float *c, long ldc, int w, int accumulate) {
    __m512 c0[MR], c1[MR];
    UNROLL for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    const uint32_t *p = panel, *aq = a;
    for (long q = 0; q < K2; q++, p += 32, aq += qs) {
        __m512i w0 = _mm512_load_si512((const __m512i *)p), w1 = _mm512_load_si512((const __m512i *)(p + 16));
        UNROLL for (int r = 0; r < R; r++) {
            __m512i x = _mm512_set1_epi32((int)aq[r * rs]);
            DP(c0[r], x, w0); DP(c1[r], x, w1);
        }
    }
    __mmask16 m0 = lanes(w), m1 = lanes(w - 16);
    UNROLL for (int r = 0; r < R; r++) {
        store16(c + r * ldc, m0, c0[r], accumulate);
        store16(c + r * ldc + 16, m1, c1[r], accumulate);
    }
}

/// Rows [i, i + R) × panel p, R in 1…12 chosen at run time.
static BF16_TARGET void tile_any(long R, const uint32_t *a, long rs, long qs, const uint32_t *panel, long K2,
                                 float *c, long ldc, int w, int accumulate) {
    switch (R) {
#define CASE(n) case n: tile(n, a, rs, qs, panel, K2, c, ldc, w, accumulate); break;
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    default: __builtin_trap();
    }
}

BF16_TARGET void charrnn_bf16_gemm(long m0, long m1, const uint32_t *a, long rs, long qs, long bh, long bs,
                                   const uint32_t *panels, long k, long n, long p0, long p1, float *c, long ldc,
                                   int accumulate) {
    long K2 = (k + 1) / 2;
    // Rows in chunks whose A (about 192 KB of bf16) stays in L2 while every panel of the range
    // passes, never across one of A's blocks (a register tile reads rows of one block); within a
    // chunk, panels outer (one panel, ⌈k/2⌉·128 bytes, stays in L1 up to k ≈ 512, else L2) and row
    // tiles inner, the tiles balanced (heights differ by at most one, so few rows never run alone).
    // Blocking k as well (the chain parked in C between blocks, which is exact) was tried: slower on
    // Zen 4 at k = 512…2500, the extra passes over C costing more than the panel reads from L2 it saves.
    long chunk = K2 > 0 ? 49152 / K2 : m1 - m0;
    chunk = chunk < MR ? MR : chunk / MR * MR;
    for (long i0 = m0; i0 < m1;) {
        long end = i0 + chunk < m1 ? i0 + chunk : m1;
        if (bh < m1) { long block_end = (i0 / bh + 1) * bh; if (block_end < end) end = block_end; }
        long mc = end - i0, tiles = (mc + MR - 1) / MR;
        const uint32_t *ab = a + i0 / bh * bs + i0 % bh * rs;   // row i0; the chunk's rows follow at rs
        for (long p = p0; p < p1; p++) {
            const uint32_t *panel = panels + p * K2 * 32;
            int w = n - p * 32 < 32 ? (int)(n - p * 32) : 32;
            for (long t = 0; t < tiles; t++) {
                long r0 = mc * t / tiles, r1 = mc * (t + 1) / tiles;
                tile_any(r1 - r0, ab + r0 * rs, rs, qs, panel, K2, c + (i0 + r0) * ldc + p * 32, ldc, w, accumulate);
            }
        }
        i0 = end;
    }
}

#else   // not x86-64, or a CHARRNN_PORTABLE build: charrnn_has_avx512bf16() is 0, so never called

void charrnn_bf16_round(const float *src, long n, uint16_t *dst) {
    (void)src; (void)n; (void)dst;
    __builtin_trap();
}
void charrnn_bf16_round_rows(const float *src, long rows, long k, long lds, uint32_t *dst, long ldd) {
    (void)src; (void)rows; (void)k; (void)lds; (void)dst; (void)ldd;
    __builtin_trap();
}
void charrnn_bf16_round_pairs(const float *src, long k, long m, long lds, uint32_t *dst, long i0, long i1, float *sums,
                              const int32_t *ids, float *table) {
    (void)src; (void)k; (void)m; (void)lds; (void)dst; (void)i0; (void)i1; (void)sums; (void)ids; (void)table;
    __builtin_trap();
}
void charrnn_bf16_pack_panels(const float *src, long k, long n, long ld, int transposed, uint32_t *panels, long p0, long p1) {
    (void)src; (void)k; (void)n; (void)ld; (void)transposed; (void)panels; (void)p0; (void)p1;
    __builtin_trap();
}
void charrnn_bf16_pack_panel_pairs(const float *src, long k, long n, long ld, uint32_t *panels, long q0, long q1) {
    (void)src; (void)k; (void)n; (void)ld; (void)panels; (void)q0; (void)q1;
    __builtin_trap();
}
void charrnn_bf16_gemm(long m0, long m1, const uint32_t *a, long rs, long qs, long bh, long bs,
                       const uint32_t *panels, long k, long n, long p0, long p1, float *c, long ldc, int accumulate) {
    (void)m0; (void)m1; (void)a; (void)rs; (void)qs; (void)bh; (void)bs; (void)panels; (void)k; (void)n; (void)p0; (void)p1; (void)c; (void)ldc; (void)accumulate;
    __builtin_trap();
}

#endif
