/* scripts/malloc-count.c — counts heap allocations, for `charrnn bench` (LD_PRELOAD).
 *
 *   gcc -shared -fPIC -O2 -o /tmp/libmalloccount.so scripts/malloc-count.c
 *   LD_PRELOAD=/tmp/libmalloccount.so charrnn bench ...
 *
 * Every malloc/calloc/realloc/posix_memalign/aligned_alloc/memalign is forwarded to glibc's own
 * __libc_* entry point and counted. `charrnn bench` finds `charrnn_malloc_count` with dlsym and
 * reports how many allocations happened inside the timed training and sampling loops.
 * `charrnn_malloc_count_thread` counts the calling thread's allocations only (for tests that must
 * not see other threads' work). */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdatomic.h>
#include <errno.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong count;
static __thread unsigned long thread_count;

unsigned long charrnn_malloc_count(void) { return atomic_load(&count); }
unsigned long charrnn_malloc_count_thread(void) { return thread_count; }

void *malloc(size_t n) { atomic_fetch_add(&count, 1); thread_count++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add(&count, 1); thread_count++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add(&count, 1); thread_count++; return __libc_realloc(p, n); }
void *memalign(size_t al, size_t n) { atomic_fetch_add(&count, 1); thread_count++; return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { atomic_fetch_add(&count, 1); thread_count++; return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    atomic_fetch_add(&count, 1); thread_count++;
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
