/*
 * array_powf.h -- a vectorisable powf for ordinary operands.
 *
 * glibc's vector powf (libmvec) runs at about half the speed of the SVML
 * powf NumPy uses, too slow for `**` on float32 to beat NumPy.  A float's
 * power is easy to get right in double precision, though: with 29 spare
 * bits, exp2(y * log2(x)) from short polynomials is within 1e-11 of the true
 * value, so rounding it to float gives the correctly rounded powf in all but
 * the rarest ties (libmvec and SVML are off by up to an ulp or more).
 *
 * This covers the ordinary case only: x positive and finite, y finite.
 * Zero, negative bases (integral exponents, NaNs), infinities and NaNs go to
 * powf(), which knows C's rules for them; pymic_powf_is_ordinary() tells
 * which is which.  Everything here is branch-free so GCC vectorises it.
 *
 * GCC 12 will not if-convert a conditional in a loop that mixes float and
 * double lanes (nor, for AVX2, any float conditional unless the library is
 * built with -fno-trapping-math, which it is), so callers run the steps as
 * separate loops over a block:
 * sanitise (float), y * log2(x) (float in, double out), exp2 (double),
 * round to float.
 */
#ifndef PYMIC_ARRAY_POWF_H
#define PYMIC_ARRAY_POWF_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* C11 has no M_SQRT2, M_LOG2E, M_LN2 (POSIX does); spell them out. */
#define PYMIC_SQRT2 1.41421356237309504880
#define PYMIC_LOG2E 1.44269504088896340736
#define PYMIC_LN2   0.69314718055994530942

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

/* log2(x) for a positive normal double, to about 1e-15 relative. */
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
    /* log(m) = 2 atanh(t) = 2 (t + t^3/3 + t^5/5 + ...), t = (m-1)/(m+1);
     * eight terms leave a relative error below t^16/17 < 1e-13. */
    const double t = (m - 1.0) / (m + 1.0), t2 = t * t;
    double series = 1.0 / 15;
    series = fma(series, t2, 1.0 / 13);
    series = fma(series, t2, 1.0 / 11);
    series = fma(series, t2, 1.0 / 9);
    series = fma(series, t2, 1.0 / 7);
    series = fma(series, t2, 1.0 / 5);
    series = fma(series, t2, 1.0 / 3);
    series = fma(series, t2, 1.0);
    return fma(2.0 * t * series, PYMIC_LOG2E, exponent);
}

/* 2^z for |z| <= 160, to about 1e-11 relative. */
static inline double pymic_exp2_bounded(double z)
{
    /* Adding 1.5 * 2^52 rounds z to an integer k held in the low mantissa
     * bits of `shifted` (the library is never built with -ffast-math,
     * which would fold the addition away). */
    const double shifter = 0x1.8p52;
    const double shifted = z + shifter;
    const double k = shifted - shifter;
    const double r = (z - k) * PYMIC_LN2;       /* |r| <= ln(2) / 2 */
    /* e^r by its Taylor series to r^9: error below r^10 / 10! < 1e-11,
     * a thousandth of a float ulp. */
    double p = 1.0 / 362880;
    p = fma(p, r, 1.0 / 40320);
    p = fma(p, r, 1.0 / 5040);
    p = fma(p, r, 1.0 / 720);
    p = fma(p, r, 1.0 / 120);
    p = fma(p, r, 1.0 / 24);
    p = fma(p, r, 1.0 / 6);
    p = fma(p, r, 0.5);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
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
