/*
 * array_loop.h -- the element-wise loop shared by every kernel.
 *
 * A kernel states what happens to element i; these macros decide how the
 * loop runs.  Small arrays run on the calling thread (waking an OpenMP team
 * costs microseconds, more than adding a few thousand numbers); large ones
 * are split over the team in chunks handed out dynamically: on a shared
 * machine one team thread may lose its core for a whole time slice, and a
 * static split would make the kernel wait for that thread's half, while
 * with chunks the other threads take over the rest.  Chunks are big enough
 * (16 Ki elements, 256 costly ones, 8 blocks) that handing them out costs
 * well under 1% of the loop.  Both paths carry `omp simd` so GCC
 * vectorises them even though `out` may alias `a` or `b`: the aliasing the
 * kernels allow is exact (out == a), where element i only ever reads and
 * writes index i, so vector execution is safe.
 */
#ifndef PYMIC_ARRAY_LOOP_H
#define PYMIC_ARRAY_LOOP_H

#include <stdint.h>

/*
 * Where a team starts to pay off, measured on a 2-core VM.  A memory-bound
 * loop (add, abs, fill: a few bytes per element) beats the team's start-up
 * once it moves about 256 KiB of one operand: 32 Ki float64 elements, 16 Ki
 * complex128 (below that the team is at best even).  A libm call per
 * element (pow, cpow) costs nanoseconds to tens of them, so a team pays off
 * after a few hundred elements.  Both can be set with -D for other machines.
 */
#ifndef PYMIC_TEAM_MIN_CHEAP_BYTES
#define PYMIC_TEAM_MIN_CHEAP_BYTES ((int64_t)256 << 10)
#endif
#ifndef PYMIC_TEAM_MIN_COSTLY
#define PYMIC_TEAM_MIN_COSTLY ((int64_t)1 << 9)
#endif

/* Element count from which a memory-bound loop over T uses a team. */
#define PYMIC_TEAM_MIN_CHEAP(T) \
    (PYMIC_TEAM_MIN_CHEAP_BYTES / (int64_t)sizeof(T))

/* Run STATEMENT for i in [0, n), vectorised; on a team when n >= team_min. */
#define PYMIC_FOR_EACH_SIMD(i, n, team_min, STATEMENT)                        \
    do {                                                                      \
        const int64_t pymic_n_ = (n);                                         \
        if (pymic_n_ >= (team_min)) {                                         \
            _Pragma("omp parallel for simd schedule(simd:dynamic, 16384)")    \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }             \
        } else {                                                              \
            _Pragma("omp simd")                                               \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }             \
        }                                                                     \
    } while (0)

/* The same for statements GCC cannot vectorise (branchy integer pow, cpow). */
#define PYMIC_FOR_EACH(i, n, team_min, STATEMENT)                             \
    do {                                                                      \
        const int64_t pymic_n_ = (n);                                         \
        if (pymic_n_ >= (team_min)) {                                         \
            _Pragma("omp parallel for schedule(dynamic, 256)")                \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }             \
        } else {                                                              \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }             \
        }                                                                     \
    } while (0)

/*
 * Run STATEMENT once per block of at most `block` elements: `start` is the
 * block's first index and `len` its length.  For kernels that work through
 * a small buffer per block (see array_pow_float.c).
 */
#define PYMIC_FOR_EACH_BLOCK(start, len, n, block, team_min, STATEMENT)       \
    do {                                                                      \
        const int64_t pymic_n_ = (n);                                         \
        if (pymic_n_ >= (team_min)) {                                         \
            _Pragma("omp parallel for schedule(dynamic, 8)")                  \
            for (int64_t start = 0; start < pymic_n_; start += (block)) {     \
                const int64_t len = pymic_n_ - start < (block)                \
                                        ? pymic_n_ - start : (block);         \
                STATEMENT;                                                    \
            }                                                                 \
        } else {                                                              \
            for (int64_t start = 0; start < pymic_n_; start += (block)) {     \
                const int64_t len = pymic_n_ - start < (block)                \
                                        ? pymic_n_ - start : (block);         \
                STATEMENT;                                                    \
            }                                                                 \
        }                                                                     \
    } while (0)

#endif /* PYMIC_ARRAY_LOOP_H */
