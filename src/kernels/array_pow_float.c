/*
 * array_pow_float.c -- a ** b for the float dtypes.
 *
 * pow()/powf() through array_libmvec.h, so GCC vectorises the loops with
 * glibc's vector pow (a few ulp, like the SVML pow NumPy itself uses on
 * AVX-512 machines).  A scalar exponent of 2 or 0.5 takes the square or the
 * square root, which is exactly what NumPy computes for `a ** 2` and
 * `a ** 0.5` (sqrt(-0.0) is -0.0 and sqrt(-inf) is NaN there, unlike pow).
 */
#include "pymic_array.h"
#include "array_dtypes.h"
#include "array_libmvec.h"
#include "array_loop.h"

#define PYMIC_POW(x, y) _Generic((x), double: pow, float: powf)((x), (y))
#define PYMIC_SQRT(x) _Generic((x), double: sqrt, float: sqrtf)(x)

#define PYMIC_DEFINE_FLOAT_POW(sfx, T, U)                                     \
    PYMIC_KERNEL void pymic_array_pow_##sfx(const T *a, const T *b, T *out,   \
                                            const int64_t *n)                 \
    {                                                                         \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_COSTLY,                     \
                            out[i] = PYMIC_POW(a[i], b[i]));                  \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_pow_scalar_##sfx(                           \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T exponent = *s;                                                \
        if (exponent == (T)2)                                                 \
            PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP,                  \
                                out[i] = a[i] * a[i]);                        \
        else if (exponent == (T)0.5)                                          \
            PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP,                  \
                                out[i] = PYMIC_SQRT(a[i]));                   \
        else                                                                  \
            PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_COSTLY,                 \
                                out[i] = PYMIC_POW(a[i], exponent));          \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_rpow_scalar_##sfx(                          \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T base = *s;                                                    \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_COSTLY,                     \
                            out[i] = PYMIC_POW(base, a[i]));                  \
    }

PYMIC_FLOAT_DTYPES(PYMIC_DEFINE_FLOAT_POW)
