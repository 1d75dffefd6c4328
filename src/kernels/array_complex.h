/*
 * array_complex.h -- complex arithmetic with NumPy's rounding.
 *
 * C's `*` and `/` on complex operands follow Annex G: when a product comes
 * out NaN they call __muldc3 to recover infinities, which both changes
 * results against NumPy (whose loops use the plain textbook formula) and
 * keeps GCC from vectorising the loop.  These helpers spell the formulas out.
 * The library is built with -ffp-contract=off so GCC does not fuse them into
 * FMAs in scalar code: complex pow must round exactly like NumPy's scalar
 * loop.  (Vectorised loops may still become fmaddsub through GCC's complex
 * multiply pattern; NumPy's own SIMD multiply does the same, and either way
 * the result is within an ulp of |x||y|.)
 *
 * _Generic picks the double or float version, so the macro-generated kernels
 * can call one name for both complex dtypes.
 */
#ifndef PYMIC_ARRAY_COMPLEX_H
#define PYMIC_ARRAY_COMPLEX_H

#include <complex.h>
#include <math.h>

static inline double complex pymic_cmul128(double complex x, double complex y)
{
    const double xr = creal(x), xi = cimag(x), yr = creal(y), yi = cimag(y);
    return CMPLX(xr * yr - xi * yi, xr * yi + xi * yr);
}

static inline float complex pymic_cmul64(float complex x, float complex y)
{
    const float xr = crealf(x), xi = cimagf(x), yr = crealf(y), yi = cimagf(y);
    return CMPLXF(xr * yr - xi * yi, xr * yi + xi * yr);
}

/*
 * 1 / y by Smith's method: dividing through by the larger component keeps
 * the intermediate products from overflowing for large |y|.
 */
static inline double complex pymic_crecip128(double complex y)
{
    const double yr = creal(y), yi = cimag(y);
    if (fabs(yr) >= fabs(yi)) {
        if (yr == 0.0 && yi == 0.0)
            return CMPLX(1.0 / fabs(yr), 0.0 / fabs(yi));
        const double ratio = yi / yr, scale = 1.0 / (yr + yi * ratio);
        return CMPLX(scale, -ratio * scale);
    }
    const double ratio = yr / yi, scale = 1.0 / (yi + yr * ratio);
    return CMPLX(ratio * scale, -scale);
}

static inline float complex pymic_crecip64(float complex y)
{
    const float yr = crealf(y), yi = cimagf(y);
    if (fabsf(yr) >= fabsf(yi)) {
        if (yr == 0.0f && yi == 0.0f)
            return CMPLXF(1.0f / fabsf(yr), 0.0f / fabsf(yi));
        const float ratio = yi / yr, scale = 1.0f / (yr + yi * ratio);
        return CMPLXF(scale, -ratio * scale);
    }
    const float ratio = yr / yi, scale = 1.0f / (yi + yr * ratio);
    return CMPLXF(ratio * scale, -scale);
}

static inline double complex pymic_cmake128(double re, double im)
{
    return CMPLX(re, im);
}

static inline float complex pymic_cmake64(float re, float im)
{
    return CMPLXF(re, im);
}

/* Builds a complex from two components without arithmetic (x + y*I would
 * turn an infinite y into a NaN real part). */
#define PYMIC_CMAKE(re, im)                                                   \
    _Generic((re), double: pymic_cmake128, float: pymic_cmake64)((re), (im))

#define PYMIC_CREAL(x) \
    _Generic((x), double complex: creal, float complex: crealf)(x)
#define PYMIC_CIMAG(x) \
    _Generic((x), double complex: cimag, float complex: cimagf)(x)

#define PYMIC_CMUL(x, y)                                                      \
    _Generic((x), double complex: pymic_cmul128,                              \
                  float complex: pymic_cmul64)((x), (y))

#define PYMIC_CRECIP(y)                                                       \
    _Generic((y), double complex: pymic_crecip128,                            \
                  float complex: pymic_crecip64)(y)

#endif /* PYMIC_ARRAY_COMPLEX_H */
