/*
 * array_pow_int.c -- a ** b for the integer dtypes, with NumPy's results.
 *
 * Exponentiation by squaring in the unsigned type of the same width, so
 * overflow wraps as NumPy's does.  A negative exponent has no integer result;
 * pymic returns the truncated value of the real one: 1 for base 1, +-1 for
 * base -1 (by the parity of the exponent), 0 for any other base.
 *
 * With an exponent per element the squaring loop is branchy and data
 * dependent, so those kernels are parallel but not vectorised.  With one
 * exponent for all (a ** 3), every element takes the same squaring steps,
 * so each step becomes one vectorised pass over a block of elements.
 */
#include "pymic_array.h"
#include "array_dtypes.h"
#include "array_loop.h"

#define PYMIC_DEFINE_UPOW(sfx, T, U)                                          \
    static inline U pymic_upow_##sfx(U base, U exponent)                      \
    {                                                                         \
        U result = 1;                                                         \
        while (exponent != 0) {                                               \
            if (exponent & 1)                                                 \
                result *= base;                                               \
            base *= base;                                                     \
            exponent >>= 1;                                                   \
        }                                                                     \
        return result;                                                        \
    }

/* Elements per block of the uniform-exponent kernels (fits in L1). */
#define PYMIC_IPOW_BLOCK 512

/* out[j] = x[j] ** exponent for j < count <= PYMIC_IPOW_BLOCK, exponent
 * taken as unsigned (non-negative); out may be x. */
#define PYMIC_DEFINE_UNIFORM_UPOW(sfx, T, U)                                  \
    static inline void pymic_upow_block_##sfx(const T *x, U exponent, T *out, \
                                              int64_t count)                  \
    {                                                                         \
        U result[PYMIC_IPOW_BLOCK], power[PYMIC_IPOW_BLOCK];                  \
        _Pragma("omp simd")                                                   \
        for (int64_t j = 0; j < count; j++) {                                 \
            result[j] = 1;                                                    \
            power[j] = (U)x[j];                                               \
        }                                                                     \
        for (;;) {                                                            \
            if (exponent & 1) {                                               \
                _Pragma("omp simd")                                           \
                for (int64_t j = 0; j < count; j++)                           \
                    result[j] *= power[j];                                    \
            }                                                                 \
            exponent >>= 1;                                                   \
            if (exponent == 0)                                                \
                break;                                                        \
            _Pragma("omp simd")                                               \
            for (int64_t j = 0; j < count; j++)                               \
                power[j] *= power[j];                                         \
        }                                                                     \
        _Pragma("omp simd")                                                   \
        for (int64_t j = 0; j < count; j++)                                   \
            out[j] = (T)result[j];                                            \
    }

#define PYMIC_DEFINE_SIGNED_IPOW(sfx, T, U)                                   \
    PYMIC_DEFINE_UPOW(sfx, T, U)                                              \
    static inline T pymic_ipow_##sfx(T base, T exponent)                      \
    {                                                                         \
        if (exponent >= 0)                                                    \
            return (T)pymic_upow_##sfx((U)base, (U)exponent);                 \
        if (base == 1)                                                        \
            return 1;                                                         \
        if (base == -1)                                                       \
            return (exponent & 1) ? -1 : 1;                                   \
        return 0;                                                             \
    }                                                                         \
    static inline int pymic_is_negative_##sfx(T value)                        \
    {                                                                         \
        return value < 0;                                                     \
    }

#define PYMIC_DEFINE_UNSIGNED_IPOW(sfx, T, U)                                 \
    PYMIC_DEFINE_UPOW(sfx, T, U)                                              \
    static inline T pymic_ipow_##sfx(T base, T exponent)                      \
    {                                                                         \
        return pymic_upow_##sfx(base, exponent);                              \
    }                                                                         \
    static inline int pymic_is_negative_##sfx(T value)                        \
    {                                                                         \
        (void)value;                                                          \
        return 0;                                                             \
    }

#define PYMIC_DEFINE_POW_KERNELS(sfx, T, U)                                   \
    PYMIC_KERNEL void pymic_array_pow_##sfx(const T *a, const T *b, T *out,   \
                                            const int64_t *n)                 \
    {                                                                         \
        PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_COSTLY,                          \
                       out[i] = pymic_ipow_##sfx(a[i], b[i]));                \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_pow_scalar_##sfx(                           \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T exponent = *s;                                                \
        if (pymic_is_negative_##sfx(exponent)) {                              \
            PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_CHEAP(T),                    \
                           out[i] = pymic_ipow_##sfx(a[i], exponent));        \
        } else {                                                              \
            PYMIC_FOR_EACH_BLOCK(start, len, *n, PYMIC_IPOW_BLOCK,            \
                                 PYMIC_TEAM_MIN_COSTLY,                       \
                                 pymic_upow_block_##sfx(a + start,            \
                                                        (U)exponent,          \
                                                        out + start, len));   \
        }                                                                     \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_rpow_scalar_##sfx(                          \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T base = *s;                                                    \
        PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_COSTLY,                          \
                       out[i] = pymic_ipow_##sfx(base, a[i]));                \
    }

PYMIC_INT_DTYPES(PYMIC_DEFINE_UNIFORM_UPOW)
PYMIC_SIGNED_INT_DTYPES(PYMIC_DEFINE_SIGNED_IPOW)
PYMIC_UNSIGNED_INT_DTYPES(PYMIC_DEFINE_UNSIGNED_IPOW)
PYMIC_INT_DTYPES(PYMIC_DEFINE_POW_KERNELS)
