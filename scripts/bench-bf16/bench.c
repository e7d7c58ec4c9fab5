// scripts/bench-bf16/bench.c — the candidates for the bf16 training products of issue 19, side by
// side on the shapes of an LSTM 2×512 step (batch 50 × seq 50 = 2500 rows): charrnn's kernel
// (Sources/CKernels/bf16gemm.c, split over threads the way Tensor/BF16GEMM.swift splits it), oneDNN's
// bf16 matmul (plain strided weights, and weights reordered once into oneDNN's preferred layout),
// and OpenBLAS sgemm in float32. Prints GFLOP/s (2·m·n·k per product, median of the timed runs),
// each operand pre-rounded/pre-packed outside the timing, plus the charrnn time including the
// per-call rounding/packing it needs in training, and the largest difference to oneDNN's result
// relative to Σ|a||b| as a sanity check.
//
// Not part of the package. Build and run alone on the machine (timings are meaningless while other
// jobs run):   ./build.sh && OMP_NUM_THREADS=2 ./bench-bf16 [threads=2] [--quick | --once]
// --quick: small shapes, one timed run each (does it build and run); --once: the real shapes, one
// timed run each (checks every path, including the agreement with oneDNN, on the real sizes).
// oneDNN reads its threads from OMP_NUM_THREADS (Debian builds it with OpenMP); set it to the same
// count as the first argument.

#include "CKernels.h"
#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? (bytes + 63) / 64 * 64 : 64)) { fprintf(stderr, "out of memory\n"); exit(1); }
    memset(p, 0, bytes);
    return p;
}

#define CHECK(call) do { dnnl_status_t s_ = (call); if (s_ != dnnl_success) { fprintf(stderr, "%s: oneDNN status %d\n", #call, (int)s_); exit(1); } } while (0)

// MARK: - a minimal fork-join pool (what Tensor/Parallel.swift does for the Swift wrapper): workers
// spin briefly for the next call, then sleep, so they do not steal the cores from oneDNN's and
// OpenBLAS's own threads while those are timed.

typedef void (*task_fn)(void *ctx, int part);
static struct {
    int parts; task_fn fn; void *ctx;
    atomic_int ticket, remaining, sleepers;
    pthread_mutex_t lock; pthread_cond_t wake;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg, seen = 0;
    for (;;) {
        int t, spins = 0;
        while ((t = atomic_load_explicit(&pool.ticket, memory_order_acquire)) == seen) {
            if (++spins < 200000) continue;
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while (atomic_load(&pool.ticket) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
            spins = 0;
        }
        seen = t;
        if (index < pool.parts) pool.fn(pool.ctx, index);
        atomic_fetch_sub_explicit(&pool.remaining, 1, memory_order_release);
    }
    return NULL;
}

static int pool_width = 1;
static void pool_start(int width) {
    pool_width = width;
    for (int i = 1; i < width; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)i)) { fprintf(stderr, "cannot start thread %d\n", i + 1); exit(1); }
        pthread_detach(t);
    }
}

static void pool_run(int parts, task_fn fn, void *ctx) {
    if (parts == 1) { fn(ctx, 0); return; }
    pool.parts = parts; pool.fn = fn; pool.ctx = ctx;
    atomic_store(&pool.remaining, pool_width - 1);
    atomic_fetch_add(&pool.ticket, 1);     // sequentially consistent: ordered before the sleepers check
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    fn(ctx, 0);
    while (atomic_load_explicit(&pool.remaining, memory_order_acquire) != 0) {}
}

// MARK: - charrnn's kernel, split as bf16Gemm splits it (panels when each part gets two, else rows)

typedef struct {
    long m, k, n, rs, qs, ldc;
    const uint32_t *a, *panels;
    float *c;
    int parts, by_panels;
} gemm_job;

static void gemm_part(void *ctx, int part) {
    gemm_job *j = ctx;
    long np = (j->n + 31) / 32;
    long r0 = 0, r1 = j->m, p0 = 0, p1 = np;
    if (j->by_panels) { p0 = np * part / j->parts; p1 = np * (part + 1) / j->parts; }
    else { r0 = j->m * part / j->parts; r1 = j->m * (part + 1) / j->parts; }
    if (r1 > r0 && p1 > p0)
        charrnn_bf16_gemm(r1 - r0, j->a + r0 * j->rs, j->rs, j->qs, j->panels, j->k, j->n, p0, p1, j->c + r0 * j->ldc, j->ldc, 0);
}

static void charrnn_product(gemm_job *j) {
    long np = (j->n + 31) / 32;
    if (np >= 2 * pool_width) { j->by_panels = 1; j->parts = pool_width; }
    else { j->by_panels = 0; j->parts = j->m / 12 < 1 ? 1 : j->m / 12 < pool_width ? (int)(j->m / 12) : pool_width; }
    pool_run(j->parts, gemm_part, j);
}

// MARK: - shapes

enum kind { NT, NN, TN };
typedef struct { const char *name; enum kind kind; long m, n, k; } shape;

/// fp32 operands in the layouts training holds them: NT a (m×k), w (n×k); NN a (m×k), w (k×n);
/// TN a (k×m), b (k×n).
typedef struct { long arows, acols, brows, bcols; } dims;
static dims dims_of(shape s) {
    switch (s.kind) {
    case NT: return (dims){s.m, s.k, s.n, s.k};
    case NN: return (dims){s.m, s.k, s.k, s.n};
    default: return (dims){s.k, s.m, s.k, s.n};
    }
}

static double median(double *t, int n) {
    for (int i = 1; i < n; i++) for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { double x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    return t[n / 2];
}

#define MAXREPS 64
/// Median seconds of `fn(ctx)` over runs after one warm-up: at least 3 runs, up to MAXREPS or ~0.5 s.
static double timeit(void (*fn)(void *), void *ctx, int quick) {
    double t[MAXREPS];
    fn(ctx);
    int n = 0;
    double start = now();
    do {
        double t0 = now();
        fn(ctx);
        t[n++] = now() - t0;
    } while (!quick && n < MAXREPS && (n < 3 || now() - start < 0.5));
    return median(t, n);
}

typedef struct { gemm_job job; } ck_ctx;
static void run_charrnn(void *p) { charrnn_product(&((ck_ctx *)p)->job); }

typedef struct {
    shape s; dims d;
    const float *a, *b;
    uint32_t *aw, *panels;
    gemm_job job;
} ck_full_ctx;
typedef struct { const ck_full_ctx *c; } pack_job;
static void pack_part(void *ctx, int part) {
    const ck_full_ctx *c = ((pack_job *)ctx)->c;
    int parts = pool_width;
    long K2 = (c->s.k + 1) / 2, np = (c->s.n + 31) / 32;
    // the weights of NT/NN are packed once per step in training; here every call, as for TN
    long p0 = np * part / parts, p1 = np * (part + 1) / parts;
    charrnn_bf16_pack_panels(c->b, c->s.k, c->s.n, c->d.bcols, c->s.kind == NT, c->panels, p0, p1);
    if (c->s.kind == TN) {
        charrnn_bf16_round_pairs(c->a, c->s.k, c->s.m, c->d.acols, c->aw, c->job.qs, K2 * part / parts, K2 * (part + 1) / parts);
    } else {
        long r0 = c->s.m * part / parts, r1 = c->s.m * (part + 1) / parts;
        charrnn_bf16_round_rows(c->a + r0 * c->d.acols, r1 - r0, c->s.k, c->d.acols, c->aw + r0 * c->job.rs, c->job.rs);
    }
}
static void run_charrnn_full(void *p) {
    ck_full_ctx *c = p;
    pack_job pj = {c};
    pool_run(pool_width, pack_part, &pj);
    charrnn_product(&c->job);
}

typedef struct { dnnl_primitive_t prim; dnnl_stream_t stream; dnnl_exec_arg_t args[3]; } dnnl_ctx;
static void run_dnnl(void *p) {
    dnnl_ctx *c = p;
    CHECK(dnnl_primitive_execute(c->prim, c->stream, 3, c->args));
    CHECK(dnnl_stream_wait(c->stream));
}

typedef struct { shape s; dims d; const float *a, *b; float *c; } blas_ctx;
static void run_sgemm(void *p) {
    blas_ctx *c = p;
    shape s = c->s;
    switch (s.kind) {
    case NT: cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, s.n, s.k, 1, c->a, s.k, c->b, s.k, 0, c->c, s.n); break;
    case NN: cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.m, s.n, s.k, 1, c->a, s.k, c->b, s.n, 0, c->c, s.n); break;
    case TN: cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s.m, s.n, s.k, 1, c->a, s.m, c->b, s.n, 0, c->c, s.n); break;
    }
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uniform(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2 - 1;
}

/// oneDNN matmul src (m×k) · weights (k×n) → dst (m×n) f32, src/weights bf16 with the strides of
/// the shape's layout; `packed`: weights in the layout oneDNN prefers (reordered once, untimed).
static void setup_dnnl(dnnl_engine_t eng, dnnl_stream_t stream, shape s, const uint16_t *a16, const uint16_t *b16,
                       float *c, int packed, dnnl_ctx *out) {
    dnnl_dims_t ad = {s.m, s.k}, bd = {s.k, s.n}, cd = {s.m, s.n};
    dnnl_dims_t as = {s.k, 1}, bs = {s.n, 1}, cs = {s.n, 1};
    if (s.kind == TN) { as[0] = 1; as[1] = s.m; }
    if (s.kind == NT) { bs[0] = 1; bs[1] = s.k; }
    dnnl_memory_desc_t a_md, b_md, c_md, b_any;
    CHECK(dnnl_memory_desc_init_by_strides(&a_md, 2, ad, dnnl_bf16, as));
    CHECK(dnnl_memory_desc_init_by_strides(&b_md, 2, bd, dnnl_bf16, bs));
    CHECK(dnnl_memory_desc_init_by_strides(&c_md, 2, cd, dnnl_f32, cs));
    CHECK(dnnl_memory_desc_init_by_tag(&b_any, 2, bd, dnnl_bf16, dnnl_format_tag_any));
    dnnl_matmul_desc_t md;
    CHECK(dnnl_matmul_desc_init(&md, &a_md, packed ? &b_any : &b_md, NULL, &c_md));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    CHECK(dnnl_primitive_create(&out->prim, pd));
    dnnl_memory_t am, bm, cm;
    CHECK(dnnl_memory_create(&am, &a_md, eng, (void *)a16));
    CHECK(dnnl_memory_create(&cm, &c_md, eng, c));
    CHECK(dnnl_memory_create(&bm, &b_md, eng, (void *)b16));
    if (packed) {
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_memory_t pm;
        CHECK(dnnl_memory_create(&pm, want, eng, DNNL_MEMORY_ALLOCATE));
        dnnl_primitive_desc_t rpd;
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &b_md, eng, want, eng, NULL));
        dnnl_primitive_t reorder;
        CHECK(dnnl_primitive_create(&reorder, rpd));
        dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, bm}, {DNNL_ARG_TO, pm}};
        CHECK(dnnl_primitive_execute(reorder, stream, 2, rargs));
        CHECK(dnnl_stream_wait(stream));
        bm = pm;
    }
    out->stream = stream;
    out->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, am};
    out->args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, bm};
    out->args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, cm};
}

int main(int argc, char **argv) {
    int threads = 2, quick = 0, small = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = small = 1;
        else if (!strcmp(argv[i], "--once")) quick = 1;
        else if (atoi(argv[i]) >= 1 && atoi(argv[i]) <= 256) threads = atoi(argv[i]);
        else { fprintf(stderr, "usage: %s [threads 1-256] [--quick | --once]\n", argv[0]); return 2; }
    }
    if (!charrnn_has_avx512bf16()) { fprintf(stderr, "this CPU has no AVX512_BF16: charrnn's kernel cannot run\n"); return 1; }
    const char *omp = getenv("OMP_NUM_THREADS");
    if (!omp || atoi(omp) != threads)
        fprintf(stderr, "warning: OMP_NUM_THREADS is %s; oneDNN's thread count will differ from %d\n", omp ? omp : "unset", threads);
    pool_start(threads);
    openblas_set_num_threads(threads);
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));

    // LSTM 2×512, batch 50 × seq 50 = 2500 rows, gates G = 2048, vocab 65 and 6783
    shape shapes[] = {
        {"recurrent h·W_hhᵀ (per step)", NT, 50, 2048, 512},
        {"input proj x·W_ihᵀ", NT, 2500, 2048, 512},
        {"dx = dgates·W", NN, 2500, 512, 2048},
        {"dW = dgatesᵀ·x", TN, 2048, 512, 2500},
        {"dW_hh per step (m=G,k=50)", TN, 2048, 512, 50},
        {"decoder V=65", NT, 2500, 65, 512},
        {"decoder dx V=65", NN, 2500, 512, 65},
        {"decoder dW V=65", TN, 65, 512, 2500},
        {"decoder V=6783", NT, 2500, 6783, 512},
        {"decoder dx V=6783", NN, 2500, 512, 6783},
        {"decoder dW V=6783", TN, 6783, 512, 2500},
        {"peak probe 2048³", NT, 2048, 2048, 2048},
    };
    int count = sizeof shapes / sizeof shapes[0];
    if (small) {   // a smoke run: small versions of three shapes, one timed run each
        shapes[0] = (shape){"quick NT", NT, 50, 96, 33};
        shapes[1] = (shape){"quick NN", NN, 37, 40, 64};
        shapes[2] = (shape){"quick TN", TN, 65, 70, 51};
        count = 3;
    }
    printf("threads %d; GFLOP/s = 2mnk / median time\n", threads);
    printf("%-30s %5s %5s %5s  %9s %10s %9s %10s %9s  %s\n", "shape", "m", "n", "k", "charrnn", "+rounding", "oneDNN", "oneDNN-pk", "sgemm32", "max|Δ|/Σ|ab| vs oneDNN");
    for (int si = 0; si < count; si++) {
        shape s = shapes[si];
        dims d = dims_of(s);
        long K2 = (s.k + 1) / 2, np = (s.n + 31) / 32;
        float *a = alloc(sizeof(float) * d.arows * d.acols), *b = alloc(sizeof(float) * d.brows * d.bcols);
        for (long i = 0; i < d.arows * d.acols; i++) a[i] = uniform();
        for (long i = 0; i < d.brows * d.bcols; i++) b[i] = uniform();
        uint16_t *a16 = alloc(2 * d.arows * d.acols), *b16 = alloc(2 * d.brows * d.bcols);
        charrnn_bf16_round(a, d.arows * d.acols, a16);
        charrnn_bf16_round(b, d.brows * d.bcols, b16);
        float *c1 = alloc(sizeof(float) * s.m * s.n), *c2 = alloc(sizeof(float) * s.m * s.n), *c3 = alloc(sizeof(float) * s.m * s.n);
        double flop = 2.0 * s.m * s.n * s.k;

        // charrnn: operands rounded and packed once (untimed), then the product alone
        long ld = (s.kind == TN ? (s.m + 15) / 16 * 16 : (K2 + 15) / 16 * 16) + 16;   // as BF16Operand pads
        ck_full_ctx full = {.s = s, .d = d, .a = a, .b = b};
        full.aw = alloc(4 * (s.kind == TN ? K2 * ld : s.m * ld));
        full.panels = alloc(4 * np * K2 * 32);
        full.job = (gemm_job){.m = s.m, .k = s.k, .n = s.n, .rs = s.kind == TN ? 1 : ld, .qs = s.kind == TN ? ld : 1,
                              .ldc = s.n, .a = full.aw, .panels = full.panels, .c = c1};
        run_charrnn_full(&full);
        ck_ctx ck = {full.job};
        double t_ck = timeit(run_charrnn, &ck, quick);
        double t_full = timeit(run_charrnn_full, &full, quick);

        dnnl_ctx dn, dnp;
        setup_dnnl(eng, stream, s, a16, b16, c2, 0, &dn);
        double t_dn = timeit(run_dnnl, &dn, quick);
        setup_dnnl(eng, stream, s, a16, b16, c3, 1, &dnp);
        double t_dnp = timeit(run_dnnl, &dnp, quick);

        blas_ctx bl = {s, d, a, b, alloc(sizeof(float) * s.m * s.n)};
        double t_bl = timeit(run_sgemm, &bl, quick);

        // sanity: charrnn vs oneDNN (same bf16 values; only the order of float32 sums may differ)
        double worst = 0;
        for (long i = 0; i < s.m; i += (s.m > 64 ? 7 : 1)) {
            for (long j = 0; j < s.n; j += (s.n > 64 ? 5 : 1)) {
                double mag = 0;
                for (long kk = 0; kk < s.k; kk++) {
                    float av = s.kind == TN ? a[kk * s.m + i] : a[i * s.k + kk];
                    float bv = s.kind == NT ? b[j * s.k + kk] : b[kk * s.n + j];
                    mag += fabs((double)av * bv);
                }
                double diff = fabs((double)c1[i * s.n + j] - c2[i * s.n + j]) / (mag + 1e-30);
                if (diff > worst) worst = diff;
            }
        }
        printf("%-30s %5ld %5ld %5ld  %9.1f %10.1f %9.1f %10.1f %9.1f  %.1e\n", s.name, s.m, s.n, s.k,
               flop / t_ck / 1e9, flop / t_full / 1e9, flop / t_dn / 1e9, flop / t_dnp / 1e9, flop / t_bl / 1e9, worst);
        fflush(stdout);
        free(a); free(b); free(a16); free(b16); free(c1); free(c2); free(c3); free(full.aw); free(full.panels); free(bl.c);
    }
    return 0;
}
