/*
 * array_powf.h -- a vectorisable powf for ordinary operands.
 *
 * glibc's vector powf (libmvec) is slower than the SVML powf NumPy uses
 * (its 16-lane AVX-512 variant too: 11.6 ms for 8 Mi elements on 2 cores,
 * NumPy 12-13 ms on one), too slow for `**` on float32 to beat NumPy.  A
 * float's power is easy to get right in double precision, though: with 29
 * spare bits, exp2(y * log2(x)) from short polynomials is within 6e-10 of
 * the true value (under 1/100 of a float ulp), so rounding it to float is
 * within 1 ulp always and the correctly rounded powf in all but about 3 in
 * 10^4 cases (libmvec and SVML are off by up to an ulp or more).  The
 * polynomials are only as long as that needs: each term less is a few
 * percent of the kernel's time.
 *
 * This covers the ordinary case only: x positive and finite, y finite.
 * Zero, negative bases (integral exponents, NaNs), infinities and NaNs go to
 * powf(), which knows C's rules for them; pymic_powf_is_ordinary() tells
 * which is which.  Everything here is branch-free so GCC vectorises it.
 *
 * Callers run two loops over a block held in L1 (array_pow_float.c):
 * sanitise and y * log2(x) (float in, double out), then exp2 and rounding
 * to float (double in, float out).  GCC 12 vectorises both for AVX2 and
 * AVX-512 (-fopt-info-vec), the selects included, as the library is built
 * with -fno-trapping-math.
 */
#ifndef PYMIC_ARRAY_POWF_H
#define PYMIC_ARRAY_POWF_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline int pymic_powf_is_ordinary(float x, float y)
{
    /* NaN fails every comparison, so it is never ordinary. */
    return (x > 0.0f) & (x <= FLT_MAX) & (fabsf(y) <= FLT_MAX);
}

static inline double pymic_double_from_bits(uint64_t bits)
{
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* log2(x) for a positive normal double, to about 4e-12 relative. */
static inline double pymic_log2_positive(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    /* Split x = m * 2^k with m in [sqrt(1/2), sqrt(2)), so the series
     * variable below stays under 0.172, with integer arithmetic only (AVX2
     * has no int64 <-> double conversion, and GCC would not vectorise one).
     * Subtracting the bits of sqrt(1/2) makes the exponent field k: one more
     * than x's own exactly when x's mantissa is at least sqrt(2)'s.  The
     * bias of 1024 keeps the difference positive. */
    const uint64_t sqrt_half_bits = 0x3fe6a09e667f3bcdu;
    const uint64_t bias = (uint64_t)1024 << 52;
    const uint64_t shifted = bits - sqrt_half_bits + bias;
    const uint64_t k_biased = shifted >> 52;               /* k + 1024 */
    const double m = pymic_double_from_bits(bits - (k_biased << 52) + bias);
    /* k as a double: put k + 1024 in the mantissa of 2^52, subtract. */
    const double two52_plus_k =
        pymic_double_from_bits(0x4330000000000000u | k_biased);
    const double exponent = two52_plus_k - (0x1p52 + 1024.0);
    /* log2(m) = 2 log2(e) atanh(t) = t P(t^2), t = (m-1)/(m+1), |t| < 0.172.
     * P is a degree-4 near-minimax fit (reweighted least squares) to the
     * series 2 log2(e) (1 + t^2/3 + t^4/5 + ...), within 4.2e-12 relative:
     * times |y log2(x)| <= 160 that is 7e-10 in the exponent, 5e-10 in the
     * result, under 1/100 of a float ulp.  (The series itself needs eight
     * terms for 1e-13; one term fewer than here would give 7e-10.) */
    const double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double series = 0.34072800191068464;
    series = fma(series, t2, 0.41167282741173894);
    series = fma(series, t2, 0.577083583257424);
    series = fma(series, t2, 0.9617966733501435);
    series = fma(series, t2, 2.8853900817900806);
    return fma(t, series, exponent);
}

/* 2^z for |z| <= 160, to about 4e-11 relative. */
static inline double pymic_exp2_bounded(double z)
{
    /* Adding 1.5 * 2^52 rounds z to an integer k held in the low mantissa
     * bits of `shifted` (the library is never built with -ffast-math,
     * which would fold the addition away). */
    const double shifter = 0x1.8p52;
    const double shifted = z + shifter;
    const double k = shifted - shifter;
    const double r = z - k;                     /* |r| <= 1/2 */
    /* 2^r by a degree-7 near-minimax polynomial (its coefficients are close
     * to ln(2)^i / i!, the Taylor series'), within 4.1e-11 relative: under
     * a thousandth of a float ulp.  The Taylor series needs degree 9 for
     * as much, and degree 6 gives 1.9e-9. */
    double p = 1.5201907747431788e-05;
    p = fma(p, r, 1.5469291029917003e-04);
    p = fma(p, r, 1.3333922623653906e-03);
    p = fma(p, r, 9.618027254086763e-03);
    p = fma(p, r, 5.550410353373704e-02);
    p = fma(p, r, 0.24022651198153577);
    p = fma(p, r, 0.6931471807284718);
    p = fma(p, r, 0.9999999999616827);
    /* 2^k is the double with biased exponent k + 1023 and no mantissa; the
     * low bits of `shifted` are k in two's complement, so integer addition
     * and a shift build it (no double -> int64 conversion either). */
    uint64_t k_bits;
    memcpy(&k_bits, &shifted, sizeof k_bits);
    return p * pymic_double_from_bits((k_bits + 1023) << 52);
}

/* 2^z rounded to float for any finite z. */
static inline double pymic_exp2_clamped(double z)
{
    /* Beyond +-160 every float result is already 0 or infinity; clamping
     * keeps 2^k representable and k convertible. */
    z = z > 160.0 ? 160.0 : z;
    z = z < -160.0 ? -160.0 : z;
    return pymic_exp2_bounded(z);
}

#endif /* PYMIC_ARRAY_POWF_H */
