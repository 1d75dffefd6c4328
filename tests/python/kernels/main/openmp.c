/*
 * openmp.c -- reports the OpenMP team and the CPUs a kernel runs on, so the
 * tests can check that kernels run on their device's cores.
 */
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>

#include <pymic_kernel.h>

/* out[0] = omp_get_max_threads(), out[1] = threads that really ran in a
 * parallel region, out[2] = CPUs in the calling thread's affinity mask,
 * out[3] = that mask as bits (CPUs 0..62; enough for the test machines). */
PYMIC_KERNEL
void omp_report(int64_t *out)
{
    out[0] = omp_get_max_threads();

    int64_t team = 0;
#pragma omp parallel reduction(+ : team)
    team += 1;
    out[1] = team;

    cpu_set_t mask;
    CPU_ZERO(&mask);
    int64_t bits = 0;
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
        for (int cpu = 0; cpu < 63; cpu++)
            if (CPU_ISSET(cpu, &mask))
                bits |= (int64_t)1 << cpu;
    }
    out[2] = CPU_COUNT(&mask);
    out[3] = bits;
}
