/*
 * pymic_array.h -- the built-in kernels behind OffloadArray (libpymic_array).
 *
 * Every kernel exists once per dtype; the suffix names it:
 *   int64 int32 uint64 float64 float32 complex128 complex64
 * Buffers are flat and contiguous, `n` is the element count, and `out` may
 * be the same buffer as `a` or `b` (in-place operators).  Scalar operands
 * (`s`) and fill values arrive as pointers to one element of the dtype.
 *
 *   pymic_array_<op>_<T>(const T *a, const T *b, T *out, const int64_t *n)
 *       op = add sub mul pow              out[i] = a[i] op b[i]
 *   pymic_array_<op>_scalar_<T>(const T *a, const T *s, T *out, const int64_t *n)
 *       op = add sub mul pow              out[i] = a[i] op *s
 *   pymic_array_r<op>_scalar_<T>(const T *a, const T *s, T *out, const int64_t *n)
 *       op = sub pow                      out[i] = *s op a[i]
 *   pymic_array_abs_<T>(const T *a, R *out, const int64_t *n)
 *       R = T for real dtypes; double for complex128, float for complex64
 *   pymic_array_fill_<T>(T *out, const T *value, const int64_t *n)
 *   pymic_array_reverse_<T>(const T *a, T *out, const int64_t *n)   (out != a)
 *
 * Results follow NumPy's:
 *   - integers wrap on overflow (abs of the most negative value included);
 *     pow is exponentiation by squaring, and a negative exponent gives 1 for
 *     base 1, +-1 for base -1 (by parity), 0 for every other base;
 *   - float64 pow uses glibc's vector pow (within 1 ulp, as NumPy's is);
 *     float32 pow is evaluated in double precision, within 1 ulp and
 *     correctly rounded in all but about 3 in 10^4 cases; pow_scalar with exponent 2 or 0.5 is the
 *     square or the square root, as NumPy's `a ** 2` and `a ** 0.5` are;
 *   - complex pow is cpow() except where NumPy computes it itself (b == 0,
 *     a == 0, integral real b with |b| < 100), with NumPy's exact results;
 *     complex abs is the magnitude hypot(re, im).
 * Large arrays are split over an OpenMP team on the calling thread.
 */
#ifndef PYMIC_ARRAY_H
#define PYMIC_ARRAY_H

#include <pymic_kernel.h>

#endif
