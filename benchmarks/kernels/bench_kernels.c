/*
 * bench_kernels.c -- kernels the benchmark suite offloads.
 *
 * The same shared object is loaded by pymic and by ctypes, so every peer in
 * the latency benchmarks calls exactly the same machine code.
 */
#include <pymic_kernel.h>

/* B1/B2/B3: does nothing, so a measurement sees only the offload overhead. */
PYMIC_KERNEL
void bench_empty(void)
{
}

/*
 * B7: a chunk stage with real arithmetic: `rounds` passes of a degree-8
 * polynomial per element (16 flops each; the map keeps values in [0.3, 1]),
 * evaluated in place.  Deliberately single-threaded: the pipeline benchmark
 * measures how two streams share the device's cores, so one chunk must not
 * already occupy all of them.  `rounds` sets the arithmetic per byte moved,
 * which decides whether overlapping streams can gain anything.
 */
PYMIC_KERNEL
void bench_polynomial(double *values, const int64_t *count, const int64_t *rounds)
{
    static const double coefficients[9] = {
        0.5, -0.25, 0.125, -0.0625, 0.03125, -0.015625, 0.0078125, -0.00390625, 0.001953125,
    };
    /* Blocks small enough to stay in L1 keep the passes vectorised and
     * compute-bound instead of re-reading the chunk from memory. */
    enum { BLOCK = 512 };
    const int64_t n = *count;
    for (int64_t start = 0; start < n; start += BLOCK) {
        const int64_t end = n - start < BLOCK ? n : start + BLOCK;
        for (int64_t round = 0; round < *rounds; round++) {
            for (int64_t i = start; i < end; i++) {
                double acc = coefficients[8];
                for (int degree = 7; degree >= 0; degree--)
                    acc = acc * values[i] + coefficients[degree];
                values[i] = acc;
            }
        }
    }
}
