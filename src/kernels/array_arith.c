/*
 * array_arith.c -- add, sub, mul: array op array, array op scalar, and the
 * reflected scalar - array, for every dtype.
 *
 * Integer arithmetic runs in the unsigned type of the same width so that
 * overflow wraps as in NumPy instead of being undefined; the cast back to
 * the signed type is modular in GCC.
 */
#include "pymic_array.h"
#include "array_complex.h"
#include "array_dtypes.h"
#include "array_loop.h"

/* Element operations: (U, x, y) -> result, U as in array_dtypes.h. */
#define PYMIC_REAL_ADD(U, x, y) ((U)(x) + (U)(y))
#define PYMIC_REAL_SUB(U, x, y) ((U)(x) - (U)(y))
#define PYMIC_REAL_MUL(U, x, y) ((U)(x) * (U)(y))
#define PYMIC_COMPLEX_ADD(U, x, y) ((x) + (y))
#define PYMIC_COMPLEX_SUB(U, x, y) ((x) - (y))
#define PYMIC_COMPLEX_MUL(U, x, y) PYMIC_CMUL((x), (y))

/* out = a OP b, out = a OP s, and (when REFLECTED is wanted) out = s OP a. */
#define PYMIC_DEFINE_ARRAY_OP(sfx, T, U, name, OP)                            \
    PYMIC_KERNEL void pymic_array_##name##_##sfx(                             \
        const T *a, const T *b, T *out, const int64_t *n)                     \
    {                                                                         \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T),                   \
                            out[i] = (T)OP(U, a[i], b[i]));                   \
    }                                                                         \
    PYMIC_KERNEL void pymic_array_##name##_scalar_##sfx(                      \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T scalar = *s;                                                  \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T),                   \
                            out[i] = (T)OP(U, a[i], scalar));                 \
    }

#define PYMIC_DEFINE_REFLECTED_OP(sfx, T, U, name, OP)                        \
    PYMIC_KERNEL void pymic_array_r##name##_scalar_##sfx(                     \
        const T *a, const T *s, T *out, const int64_t *n)                     \
    {                                                                         \
        const T scalar = *s;                                                  \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T),                   \
                            out[i] = (T)OP(U, scalar, a[i]));                 \
    }

#define PYMIC_DEFINE_REAL_ARITH(sfx, T, U)                                    \
    PYMIC_DEFINE_ARRAY_OP(sfx, T, U, add, PYMIC_REAL_ADD)                     \
    PYMIC_DEFINE_ARRAY_OP(sfx, T, U, sub, PYMIC_REAL_SUB)                     \
    PYMIC_DEFINE_ARRAY_OP(sfx, T, U, mul, PYMIC_REAL_MUL)                     \
    PYMIC_DEFINE_REFLECTED_OP(sfx, T, U, sub, PYMIC_REAL_SUB)

#define PYMIC_DEFINE_COMPLEX_ARITH(sfx, T, U)                                 \
    PYMIC_DEFINE_ARRAY_OP(sfx, T, U, add, PYMIC_COMPLEX_ADD)                  \
    PYMIC_DEFINE_ARRAY_OP(sfx, T, U, sub, PYMIC_COMPLEX_SUB)                  \
    PYMIC_DEFINE_ARRAY_OP(sfx, T, U, mul, PYMIC_COMPLEX_MUL)                  \
    PYMIC_DEFINE_REFLECTED_OP(sfx, T, U, sub, PYMIC_COMPLEX_SUB)

PYMIC_INT_DTYPES(PYMIC_DEFINE_REAL_ARITH)
PYMIC_FLOAT_DTYPES(PYMIC_DEFINE_REAL_ARITH)
PYMIC_COMPLEX_DTYPES(PYMIC_DEFINE_COMPLEX_ARITH)
