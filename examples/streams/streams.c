/*
 * streams.c -- the two stages of the streams example's pipeline.  Each is
 * deliberately a little expensive so that the overlap of the two streams
 * shows in the timings.
 */
#include <math.h>

#include <pymic_kernel.h>

/* Stage 1: x[i] = sqrt(x[i]) refined by a few Newton steps of x^2 = v. */
PYMIC_KERNEL
void stage_sqrt(double *x, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++) {
        double value = x[i];
        double root = value > 1.0 ? value / 2.0 : 1.0;
        for (int step = 0; step < 30; step++)
            root = 0.5 * (root + value / root);
        x[i] = root;
    }
}

/* Stage 2: x[i] = scale * x[i] + offset. */
PYMIC_KERNEL
void stage_affine(double *x, const int64_t *n, const double *scale, const double *offset)
{
    for (int64_t i = 0; i < *n; i++)
        x[i] = *scale * x[i] + *offset;
}
