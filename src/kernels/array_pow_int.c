/*
 * array_pow_int.c -- a ** b for the integer dtypes, with NumPy's results.
 *
 * Exponentiation by squaring in the unsigned type of the same width, so
 * overflow wraps as NumPy's does.  A negative exponent has no integer result;
 * pymic returns the truncated value of the real one: 1 for base 1, +-1 for
 * base -1 (by the parity of the exponent), 0 for any other base.  The loops
 * are branchy and data-dependent, so they are parallel but not vectorised.
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
    }

#define PYMIC_DEFINE_UNSIGNED_IPOW(sfx, T, U)                                 \
    PYMIC_DEFINE_UPOW(sfx, T, U)                                              \
    static inline T pymic_ipow_##sfx(T base, T exponent)                      \
    {                                                                         \
        return pymic_upow_##sfx(base, exponent);                              \
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
        PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_COSTLY,                          \
                       out[i] = pymic_ipow_##sfx(a[i], exponent));            \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_rpow_scalar_##sfx(                          \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T base = *s;                                                    \
        PYMIC_FOR_EACH(i, *n, PYMIC_TEAM_MIN_COSTLY,                          \
                       out[i] = pymic_ipow_##sfx(base, a[i]));                \
    }

PYMIC_SIGNED_INT_DTYPES(PYMIC_DEFINE_SIGNED_IPOW)
PYMIC_UNSIGNED_INT_DTYPES(PYMIC_DEFINE_UNSIGNED_IPOW)
PYMIC_INT_DTYPES(PYMIC_DEFINE_POW_KERNELS)
