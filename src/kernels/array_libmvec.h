/*
 * array_libmvec.h -- let GCC call glibc's vector math library (libmvec).
 *
 * glibc announces the SIMD variants of pow, hypot, ... only under
 * -ffast-math, which the kernels must not use (it would break NaN and
 * infinity handling everywhere else).  Re-declaring the functions with
 * `omp declare simd` tells GCC the vector variants exist, so loops calling
 * them vectorise into _ZGV*_pow etc., which libm.so pulls in from libmvec.
 * meson.build defines PYMIC_HAVE_LIBMVEC_* only after checking that libmvec
 * exports the variants; without it the loops stay scalar but correct.
 */
#ifndef PYMIC_ARRAY_LIBMVEC_H
#define PYMIC_ARRAY_LIBMVEC_H

#include <math.h>

#ifdef PYMIC_HAVE_LIBMVEC_POW
#pragma omp declare simd notinbranch
double pow(double, double);
#pragma omp declare simd notinbranch
float powf(float, float);
#endif

#ifdef PYMIC_HAVE_LIBMVEC_HYPOT
#pragma omp declare simd notinbranch
double hypot(double, double);
#pragma omp declare simd notinbranch
float hypotf(float, float);
#endif

#endif /* PYMIC_ARRAY_LIBMVEC_H */
