/*
 * openmp.c -- reports the OpenMP team and the CPUs a kernel runs on, so the
 * tests can check that kernels run on their device's cores.
 */
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>

#include <pymic_kernel.h>

/* The calling thread's affinity mask as bits (CPUs 0..62, enough for the
 * test machines); *count receives the number of CPUs in it. */
static int64_t affinity_bits(int64_t *count)
{
    cpu_set_t mask;
    CPU_ZERO(&mask);
    int64_t bits = 0;
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
        for (int cpu = 0; cpu < 63; cpu++)
            if (CPU_ISSET(cpu, &mask))
                bits |= (int64_t)1 << cpu;
    }
    *count = CPU_COUNT(&mask);
    return bits;
}

/* out[0] = omp_get_max_threads(), out[1] = threads that really ran in a
 * parallel region, out[2] = CPUs in the calling thread's affinity mask,
 * out[3] = that mask as bits, out[4] = the union of the masks of every
 * thread of the team (where the team may run). */
PYMIC_KERNEL
void omp_report(int64_t *out)
{
    out[0] = omp_get_max_threads();
    out[3] = affinity_bits(&out[2]);

    int64_t team = 0;
    int64_t team_bits = 0;
#pragma omp parallel reduction(+ : team) reduction(| : team_bits)
    {
        int64_t ignored;
        team += 1;
        team_bits |= affinity_bits(&ignored);
    }
    out[1] = team;
    out[4] = team_bits;
}
