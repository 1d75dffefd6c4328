/*
 * copy.c -- memory copies on the host device.
 *
 * One core rarely saturates the memory system, so a big copy is split into
 * one contiguous chunk per device core and run by an OpenMP team that
 * inherits the worker's affinity.  Small copies stay on the worker: opening
 * a team costs microseconds.
 */
#include "../engine.h"

#include <string.h>

/* Below this a single memcpy wins over waking a team. */
#define PYMIC_PARALLEL_COPY_MIN ((size_t)1 << 20)

void pymic_host_copy(void *dst, const void *src, size_t nbytes, int ncores)
{
#if defined(__SANITIZE_THREAD__)
    /* libgomp is not instrumented: ThreadSanitizer would report its
     * internal hand-offs as races.  Sanitizer builds copy serially. */
    ncores = 1;
#endif
    if (ncores < 2 || nbytes < PYMIC_PARALLEL_COPY_MIN) {
        memcpy(dst, src, nbytes);
        return;
    }
    /* Chunks are multiples of 4 KiB so every thread streams whole pages. */
    size_t chunk = (nbytes / (size_t)ncores + 4095) & ~(size_t)4095;
    #pragma omp parallel for num_threads(ncores) schedule(static, 1)
    for (int i = 0; i < ncores; i++) {
        size_t begin = (size_t)i * chunk;
        if (begin < nbytes) {
            size_t len = nbytes - begin < chunk ? nbytes - begin : chunk;
            memcpy((char *)dst + begin, (const char *)src + begin, len);
        }
    }
}
