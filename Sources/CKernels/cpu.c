// CKernels/cpu.c — the cores this process may run on (sched_getaffinity needs _GNU_SOURCE, which
// Swift's Glibc module does not define).

#define _GNU_SOURCE
#include "CKernels.h"
#if defined(__linux__)
#include <sched.h>
#endif

int charrnn_affinity_cores(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
    return 0;
}
