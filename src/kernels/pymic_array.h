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
 * Integer pow follows NumPy: exponent 0 gives 1, negative exponents give 0
 * unless the base is 1 or -1.  Float and complex pow use pow()/cpow().
 */
#ifndef PYMIC_ARRAY_H
#define PYMIC_ARRAY_H

#include <pymic_kernel.h>

#endif
