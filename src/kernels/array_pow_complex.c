/*
 * array_pow_complex.c -- a ** b for the complex dtypes, with NumPy's results.
 *
 * NumPy's complex power is cpow() except in three cases, which it computes
 * itself and pymic therefore does too:
 *   - b == 0 gives 1 (even for a NaN base);
 *   - a == 0 gives 0 when the real part of b is positive, NaN otherwise;
 *   - b real and integral with |b| < 100 uses repeated squaring with the
 *     textbook complex product, and a reciprocal for negative b.  That is
 *     both faster than cpow and rounded differently, so matching it matters.
 * cpow has no vector variant; the loops are parallel only.
 */
#include "pymic_array.h"
#include "array_complex.h"
#include "array_dtypes.h"
#include "array_loop.h"

/* Largest |b| NumPy raises by repeated squaring instead of cpow. */
#define PYMIC_CPOW_SQUARING_LIMIT 100

#define PYMIC_DEFINE_CPOW(sfx, T, U)                                          \
    /* base ** count for count >= 1.  Like NumPy, powers 1 to 3 are spelled   \
     * out and higher ones multiply into an accumulator that starts at 1:     \
     * once a power overflows, 1 * inf makes NaNs there, and NumPy's          \
     * results have them.                                                     \
     */                                                                       \
    static inline T pymic_cpow_by_squaring_##sfx(T base, int count)           \
    {                                                                         \
        if (count == 1)                                                       \
            return base;                                                      \
        const T square = PYMIC_CMUL(base, base);                              \
        if (count == 2)                                                       \
            return square;                                                    \
        if (count == 3)                                                       \
            return PYMIC_CMUL(base, square);                                  \
        T result = PYMIC_CMAKE((U)1, (U)0);                                   \
        for (;;) {                                                            \
            if (count & 1)                                                    \
                result = PYMIC_CMUL(result, base);                            \
            count >>= 1;                                                      \
            if (count == 0)                                                   \
                return result;                                                \
            base = PYMIC_CMUL(base, base);                                    \
        }                                                                     \
    }                                                                         \
    static inline T pymic_cpow_##sfx(T a, T b)                                \
    {                                                                         \
        const U br = PYMIC_CREAL(b), bi = PYMIC_CIMAG(b);                     \
        if (br == 0 && bi == 0)                                               \
            return PYMIC_CMAKE((U)1, (U)0);                                   \
        if (PYMIC_CREAL(a) == 0 && PYMIC_CIMAG(a) == 0) {                     \
            if (br > 0)                                                       \
                return PYMIC_CMAKE((U)0, (U)0);                               \
            return PYMIC_CMAKE((U)NAN, (U)NAN);                               \
        }                                                                     \
        if (bi == 0 && br > -PYMIC_CPOW_SQUARING_LIMIT                        \
            && br < PYMIC_CPOW_SQUARING_LIMIT && br == (U)(int)br) {          \
            const int count = (int)br;                                        \
            if (count > 0)                                                    \
                return pymic_cpow_by_squaring_##sfx(a, count);                \
            return PYMIC_CRECIP(pymic_cpow_by_squaring_##sfx(a, -count));     \
        }                                                                     \
        return _Generic((a), double complex: cpow,                            \
                             float complex: cpowf)(a, b);                     \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_pow_##sfx(const T *a, const T *b, T *out,   \
                                            const int64_t *n)                 \
    {                                                                         \
        PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_COSTLY,                          \
                       out[i] = pymic_cpow_##sfx(a[i], b[i]));                \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_pow_scalar_##sfx(                           \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T exponent = *s;                                                \
        PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_COSTLY,                          \
                       out[i] = pymic_cpow_##sfx(a[i], exponent));            \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_rpow_scalar_##sfx(                          \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T base = *s;                                                    \
        PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_COSTLY,                          \
                       out[i] = pymic_cpow_##sfx(base, a[i]));                \
    }

PYMIC_COMPLEX_DTYPES(PYMIC_DEFINE_CPOW)
