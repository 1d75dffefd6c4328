/*
 * array_pow_float.c -- a ** b for the float dtypes.
 *
 * float64 uses pow() through array_libmvec.h, so GCC vectorises it with
 * glibc's vector pow (a few ulp, like the SVML pow NumPy itself uses on
 * AVX-512 machines).  float32 uses the double-precision evaluation of
 * array_powf.h, which is both faster than libmvec's powf and closer to the
 * correctly rounded result (within 1 ulp); powf() handles the unusual
 * operands.
 *
 * A scalar exponent of 2 or 0.5 takes the square or the square root, which
 * is exactly what NumPy computes for `a ** 2` and `a ** 0.5` (sqrt(-0.0) is
 * -0.0 and sqrt(-inf) is NaN there, unlike pow).
 */

/* libmvec's 512-bit pow is about twice as fast as its 256-bit one, but GCC's
 * tuning for AMD Zen prefers 256-bit vectors; ask for the wider ones. */
#pragma GCC target("prefer-vector-width=512")

#include "pymic_array.h"
#include "array_dtypes.h"
#include "array_libmvec.h"
#include "array_loop.h"
#include "array_powf.h"

/* Elements per block: operands and results of a block stay in L1. */
#define PYMIC_POW_BLOCK 512

/* out[j] = x[j] ** y[j] for j < count <= PYMIC_POW_BLOCK; out may be x or y. */
static inline void pymic_pow_block_float64(const double *x, const double *y,
                                           double *out, int64_t count)
{
#pragma omp simd
    for (int64_t j = 0; j < count; j++)
        out[j] = pow(x[j], y[j]);
}

static inline void pymic_pow_block_float32(const float *x, const float *y,
                                           float *out, int64_t count)
{
    double power[PYMIC_POW_BLOCK];
    int any_unusual = 0;
    /* Unusual lanes compute 1 ** 0 and are replaced at the end.  Two loops
     * per block, not four (sanitise, log, exp, round, each through an L1
     * buffer, as this once was): a fifth less time at 8 Mi elements. */
#pragma omp simd reduction(| : any_unusual)
    for (int64_t j = 0; j < count; j++) {
        const int ordinary = pymic_powf_is_ordinary(x[j], y[j]);
        const double safe_x = ordinary ? x[j] : 1.0f;
        const double safe_y = ordinary ? y[j] : 0.0f;
        any_unusual |= !ordinary;
        power[j] = safe_y * pymic_log2_positive(safe_x);
    }
    if (!any_unusual) {
        /* x and y are not read again, so out, which may be either, can be
         * written straight away. */
#pragma omp simd
        for (int64_t j = 0; j < count; j++)
            out[j] = (float)pymic_exp2_clamped(power[j]);
        return;
    }
#pragma omp simd
    for (int64_t j = 0; j < count; j++)
        power[j] = pymic_exp2_clamped(power[j]);
    /* x and y are read for the last time before out is written. */
    for (int64_t j = 0; j < count; j++)
        if (!pymic_powf_is_ordinary(x[j], y[j]))
            power[j] = powf(x[j], y[j]);
#pragma omp simd
    for (int64_t j = 0; j < count; j++)
        out[j] = (float)power[j];
}

#define PYMIC_SQRT(x) _Generic((x), double: sqrt, float: sqrtf)(x)

#define PYMIC_DEFINE_FLOAT_POW(sfx, T, U)                                     \
    PYMIC_KERNEL void pymic_array_pow_##sfx(const T *a, const T *b, T *out,   \
                                            const int64_t *n)                 \
    {                                                                         \
        PYMIC_FOR_EACH_BLOCK(start, len, *n, PYMIC_POW_BLOCK,                 \
                             PYMIC_TEAM_MIN_COSTLY,                           \
                             pymic_pow_block_##sfx(a + start, b + start,      \
                                                   out + start, len));        \
    }                                                                         \
    /* The scalar operand is spread over a block-sized buffer per block. */   \
    PYMIC_KERNEL void pymic_array_pow_scalar_##sfx(                           \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T exponent = *s;                                                \
        if (exponent == (T)2) {                                               \
            PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T),               \
                                out[i] = a[i] * a[i]);                        \
        } else if (exponent == (T)0.5) {                                      \
            PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T),               \
                                out[i] = PYMIC_SQRT(a[i]));                   \
        } else {                                                              \
            PYMIC_FOR_EACH_BLOCK(start, len, *n, PYMIC_POW_BLOCK,             \
                                 PYMIC_TEAM_MIN_COSTLY, {                     \
                T exponents[PYMIC_POW_BLOCK];                                 \
                for (int64_t j = 0; j < len; j++)                             \
                    exponents[j] = exponent;                                  \
                pymic_pow_block_##sfx(a + start, exponents, out + start,      \
                                      len);                                   \
            });                                                               \
        }                                                                     \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_rpow_scalar_##sfx(                          \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T base = *s;                                                    \
        PYMIC_FOR_EACH_BLOCK(start, len, *n, PYMIC_POW_BLOCK,                 \
                             PYMIC_TEAM_MIN_COSTLY, {                         \
            T bases[PYMIC_POW_BLOCK];                                         \
            for (int64_t j = 0; j < len; j++)                                 \
                bases[j] = base;                                              \
            pymic_pow_block_##sfx(bases, a + start, out + start, len);        \
        });                                                                   \
    }

PYMIC_FLOAT_DTYPES(PYMIC_DEFINE_FLOAT_POW)
