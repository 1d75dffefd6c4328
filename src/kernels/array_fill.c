/*
 * array_fill.c -- fill(value) and reverse() for every dtype.
 *
 * Both only move elements, so one definition serves all seven dtypes.
 */
#include "pymic_array.h"
#include "array_dtypes.h"
#include "array_loop.h"

#define PYMIC_DEFINE_FILL(sfx, T, U)                                          \
    PYMIC_KERNEL void pymic_array_fill_##sfx(T *out, const T *value,          \
                                             const int64_t *n)                \
    {                                                                         \
        const T v = *value;                                                   \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP, out[i] = v);         \
    }

/* out must not overlap a: element i reads the mirrored index. */
#define PYMIC_DEFINE_REVERSE(sfx, T, U)                                       \
    PYMIC_KERNEL void pymic_array_reverse_##sfx(                              \
        const T *restrict a, T *restrict out, const int64_t *n)               \
    {                                                                         \
        const int64_t last = *n - 1;                                          \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP,                      \
                            out[i] = a[last - i]);                            \
    }

PYMIC_ALL_DTYPES(PYMIC_DEFINE_FILL)
PYMIC_ALL_DTYPES(PYMIC_DEFINE_REVERSE)
