/*
 * array_dtypes.h -- the seven OffloadArray dtypes as X-macro lists.
 *
 * Each kernel family is written once as a macro taking the dtype's suffix and
 * C types, then instantiated by one of these lists, so adding a dtype or a
 * kernel never means copying code.  The lists are split by kind because the
 * arithmetic differs: integers wrap and use exponentiation by squaring,
 * floats use libm, complex numbers need their own multiply and pow.
 *
 *   X(suffix, T, U)   T the element type; U is
 *                     - integers: the unsigned type of the same width, used
 *                       for arithmetic that must wrap like NumPy's (signed
 *                       overflow is undefined behaviour in C);
 *                     - floats:   T itself;
 *                     - complex:  the real type of one component.
 */
#ifndef PYMIC_ARRAY_DTYPES_H
#define PYMIC_ARRAY_DTYPES_H

#include <complex.h>
#include <stdint.h>

#define PYMIC_SIGNED_INT_DTYPES(X)                                            \
    X(int64, int64_t, uint64_t)                                               \
    X(int32, int32_t, uint32_t)

#define PYMIC_UNSIGNED_INT_DTYPES(X)                                          \
    X(uint64, uint64_t, uint64_t)

#define PYMIC_INT_DTYPES(X)                                                   \
    PYMIC_SIGNED_INT_DTYPES(X)                                                \
    PYMIC_UNSIGNED_INT_DTYPES(X)

#define PYMIC_FLOAT_DTYPES(X)                                                 \
    X(float64, double, double)                                                \
    X(float32, float, float)

#define PYMIC_COMPLEX_DTYPES(X)                                               \
    X(complex128, double complex, double)                                     \
    X(complex64, float complex, float)

#define PYMIC_ALL_DTYPES(X)                                                   \
    PYMIC_INT_DTYPES(X)                                                       \
    PYMIC_FLOAT_DTYPES(X)                                                     \
    PYMIC_COMPLEX_DTYPES(X)

#endif /* PYMIC_ARRAY_DTYPES_H */
