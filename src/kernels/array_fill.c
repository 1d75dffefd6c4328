/*
 * array_fill.c -- fill(value) and reverse() for every dtype.
 *
 * Both only move elements, so one definition serves all seven dtypes.
 * A fill larger than the caches uses streaming stores (array_stream.h).
 */
#include "pymic_array.h"
#include "array_dtypes.h"
#include "array_loop.h"
#include "array_stream.h"

/*
 * Fill out[0, n) with `v` by streaming 64-byte lines of copies of it; every
 * dtype's size divides 64, so one line holds whole elements.  Elements
 * before the first aligned line and after the last are stored normally.
 * Returns 0, doing nothing, when out's alignment never reaches a line
 * boundary at an element boundary.
 */
#if PYMIC_HAVE_STREAM_STORES
#define PYMIC_DEFINE_STREAM_FILL(sfx, T)                                      \
    static int pymic_stream_fill_##sfx(T *out, T v, int64_t n)                \
    {                                                                         \
        enum { PER_LINE = PYMIC_STREAM_LINE / sizeof(T) };                    \
        const uintptr_t misalignment = (uintptr_t)out % PYMIC_STREAM_LINE;    \
        if (misalignment % sizeof(T) != 0)                                    \
            return 0;                                                         \
        const int64_t head = misalignment == 0                                \
            ? 0 : (int64_t)((PYMIC_STREAM_LINE - misalignment) / sizeof(T));  \
        const int64_t lines = (n - head) / PER_LINE;                          \
        const int64_t tail = head + lines * PER_LINE;                         \
        for (int64_t i = 0; i < head; i++)                                    \
            out[i] = v;                                                       \
        for (int64_t i = tail; i < n; i++)                                    \
            out[i] = v;                                                       \
        _Pragma("omp parallel")                                               \
        {                                                                     \
            _Alignas(PYMIC_STREAM_LINE) T line[PER_LINE];                     \
            for (int i = 0; i < PER_LINE; i++)                                \
                line[i] = v;                                                  \
            _Pragma("omp for schedule(dynamic, 2048)")                        \
            for (int64_t l = 0; l < lines; l++)                               \
                pymic_stream_line(out + head + l * PER_LINE, line);           \
            pymic_stream_fence();                                             \
        }                                                                     \
        return 1;                                                             \
    }

#define PYMIC_TRY_STREAM_FILL(sfx, out, v, n)                                 \
    ((n) * (int64_t)sizeof *(out) >= PYMIC_STREAM_MIN_BYTES                   \
     && pymic_stream_fill_##sfx((out), (v), (n)))
#else
#define PYMIC_DEFINE_STREAM_FILL(sfx, T)
#define PYMIC_TRY_STREAM_FILL(sfx, out, v, n) 0
#endif

#define PYMIC_DEFINE_FILL(sfx, T, U)                                          \
    PYMIC_DEFINE_STREAM_FILL(sfx, T)                                          \
    PYMIC_KERNEL void pymic_array_fill_##sfx(T *out, const T *value,          \
                                             const int64_t *n)                \
    {                                                                         \
        const T v = *value;                                                   \
        if (PYMIC_TRY_STREAM_FILL(sfx, out, v, *n))                           \
            return;                                                           \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T), out[i] = v);      \
    }

/* out must not overlap a: element i reads the mirrored index. */
#define PYMIC_DEFINE_REVERSE(sfx, T, U)                                       \
    PYMIC_KERNEL void pymic_array_reverse_##sfx(                              \
        const T *restrict a, T *restrict out, const int64_t *n)               \
    {                                                                         \
        const int64_t last = *n - 1;                                          \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T),                   \
                            out[i] = a[last - i]);                            \
    }

PYMIC_ALL_DTYPES(PYMIC_DEFINE_FILL)
PYMIC_ALL_DTYPES(PYMIC_DEFINE_REVERSE)
