/*
 * array_abs.c -- abs(a) for every dtype.
 *
 * Signed integers negate in the unsigned type, so abs(INT64_MIN) wraps to
 * INT64_MIN as in NumPy instead of being undefined.  Complex abs is the
 * magnitude hypot(re, im) (what cabs computes), written out so the loop can
 * use libmvec's vector hypot, and its result has the real component type.
 */
#include "pymic_array.h"
#include "array_dtypes.h"
#include "array_libmvec.h"
#include "array_loop.h"

#define PYMIC_SIGNED_ABS(T, U, x) ((x) < 0 ? (T)(0 - (U)(x)) : (x))
#define PYMIC_UNSIGNED_ABS(T, U, x) (x)
#define PYMIC_FLOAT_ABS(T, U, x) _Generic((x), double: fabs, float: fabsf)(x)
#define PYMIC_COMPLEX_ABS(T, U, x)                                            \
    _Generic((x), double complex: hypot(creal(x), cimag(x)),                  \
                  float complex: hypotf(crealf(x), cimagf(x)))

#define PYMIC_DEFINE_ABS(sfx, T, R, U, ABS)                                   \
    PYMIC_KERNEL void pymic_array_abs_##sfx(const T *a, R *out,               \
                                            const int64_t *n)                 \
    {                                                                         \
        PYMIC_FOR_EACH_SIMD(i, *n, PYMIC_TEAM_MIN_CHEAP(T),                   \
                            out[i] = ABS(T, U, a[i]));                        \
    }

#define PYMIC_DEFINE_SIGNED_ABS(sfx, T, U)                                    \
    PYMIC_DEFINE_ABS(sfx, T, T, U, PYMIC_SIGNED_ABS)
#define PYMIC_DEFINE_UNSIGNED_ABS(sfx, T, U)                                  \
    PYMIC_DEFINE_ABS(sfx, T, T, U, PYMIC_UNSIGNED_ABS)
#define PYMIC_DEFINE_FLOAT_ABS(sfx, T, U)                                     \
    PYMIC_DEFINE_ABS(sfx, T, T, U, PYMIC_FLOAT_ABS)
/* Complex abs returns the component type U. */
#define PYMIC_DEFINE_COMPLEX_ABS(sfx, T, U)                                   \
    PYMIC_DEFINE_ABS(sfx, T, U, U, PYMIC_COMPLEX_ABS)

PYMIC_SIGNED_INT_DTYPES(PYMIC_DEFINE_SIGNED_ABS)
PYMIC_UNSIGNED_INT_DTYPES(PYMIC_DEFINE_UNSIGNED_ABS)
PYMIC_FLOAT_DTYPES(PYMIC_DEFINE_FLOAT_ABS)
PYMIC_COMPLEX_DTYPES(PYMIC_DEFINE_COMPLEX_ABS)
