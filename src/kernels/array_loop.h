/*
 * array_loop.h -- the element-wise loop shared by every kernel.
 *
 * A kernel states what happens to element i; these macros decide how the
 * loop runs.  Small arrays run on the calling thread (waking an OpenMP team
 * costs microseconds, more than adding a few thousand numbers); large ones
 * are split statically over the team.  Both paths carry `omp simd` so GCC
 * vectorises them even though `out` may alias `a` or `b`: the aliasing the
 * kernels allow is exact (out == a), where element i only ever reads and
 * writes index i, so vector execution is safe.
 */
#ifndef PYMIC_ARRAY_LOOP_H
#define PYMIC_ARRAY_LOOP_H

#include <stdint.h>

/*
 * Element counts from which a team pays off.  Measured on a 2-core VM: a
 * team hand-off costs a few microseconds, which a memory-bound loop earns
 * back after roughly 64 Ki elements; a libm call per element (pow, cpow)
 * costs nanoseconds to tens of them, so a team pays off after a few hundred.
 * Both can be set with -D for tuning on other machines.
 */
#ifndef PYMIC_TEAM_MIN_CHEAP
#define PYMIC_TEAM_MIN_CHEAP  ((int64_t)1 << 16)
#endif
#ifndef PYMIC_TEAM_MIN_COSTLY
#define PYMIC_TEAM_MIN_COSTLY ((int64_t)1 << 9)
#endif

/* Run STATEMENT for i in [0, n), vectorised; on a team when n >= team_min. */
#define PYMIC_FOR_EACH_SIMD(i, n, team_min, STATEMENT)                      \
    do {                                                                    \
        const int64_t pymic_n_ = (n);                                       \
        if (pymic_n_ >= (team_min)) {                                       \
            _Pragma("omp parallel for simd schedule(simd:static)")         \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }           \
        } else {                                                            \
            _Pragma("omp simd")                                             \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }           \
        }                                                                   \
    } while (0)

/* The same for statements GCC cannot vectorise (branchy integer pow, cpow). */
#define PYMIC_FOR_EACH(i, n, team_min, STATEMENT)                           \
    do {                                                                    \
        const int64_t pymic_n_ = (n);                                       \
        if (pymic_n_ >= (team_min)) {                                       \
            _Pragma("omp parallel for schedule(static)")                    \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }           \
        } else {                                                            \
            for (int64_t i = 0; i < pymic_n_; i++) { STATEMENT; }           \
        }                                                                   \
    } while (0)

/*
 * Run STATEMENT once per block of at most `block` elements: `start` is the
 * block's first index and `len` its length.  For kernels that work through
 * a small buffer per block (see array_pow_float.c).
 */
#define PYMIC_FOR_EACH_BLOCK(start, len, n, block, team_min, STATEMENT)     \
    do {                                                                    \
        const int64_t pymic_n_ = (n);                                       \
        if (pymic_n_ >= (team_min)) {                                       \
            _Pragma("omp parallel for schedule(static)")                    \
            for (int64_t start = 0; start < pymic_n_; start += (block)) {   \
                const int64_t len = pymic_n_ - start < (block)              \
                                        ? pymic_n_ - start : (block);       \
                STATEMENT;                                                  \
            }                                                               \
        } else {                                                            \
            for (int64_t start = 0; start < pymic_n_; start += (block)) {   \
                const int64_t len = pymic_n_ - start < (block)              \
                                        ? pymic_n_ - start : (block);       \
                STATEMENT;                                                  \
            }                                                               \
        }                                                                   \
    } while (0)

#endif /* PYMIC_ARRAY_LOOP_H */
