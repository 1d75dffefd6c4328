/*
 * roundtrip.h -- what B11's three C round-trip programs share: warm-up,
 * per-iteration timing with the monotonic clock, and the summary line
 * the harness reads (benchmarks/b11_proc.py).
 *
 * Every program times ROUNDTRIP_ITERS round trips one by one after
 * ROUNDTRIP_WARMUP untimed ones and prints one JSON object, in
 * microseconds:  {"median": m, "p10": a, "p90": b, "n": N}
 */
#ifndef PYMIC_BENCH_ROUNDTRIP_H
#define PYMIC_BENCH_ROUNDTRIP_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ROUNDTRIP_WARMUP = 2000, ROUNDTRIP_ITERS = 20000 };

static inline double roundtrip_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline int roundtrip_compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts `seconds` (n samples) and prints the summary line. */
static inline void roundtrip_report(double *seconds, int n)
{
    qsort(seconds, (size_t)n, sizeof *seconds, roundtrip_compare);
    printf("{\"median\": %.4f, \"p10\": %.4f, \"p90\": %.4f, \"n\": %d}\n",
           seconds[n / 2] * 1e6, seconds[n / 10] * 1e6, seconds[n * 9 / 10] * 1e6, n);
    fflush(stdout);
}

#endif /* PYMIC_BENCH_ROUNDTRIP_H */
