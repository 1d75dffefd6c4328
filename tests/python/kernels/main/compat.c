/*
 * compat.c -- kernels for pyMIC compatibility and argument-aliasing tests.
 */
#include <pymic_kernel.h>

/* A name that starts with an underscore, as some pyMIC codes used. */
PYMIC_KERNEL
void _bb(int64_t *out)
{
    *out = 42;
}

/* pyMIC's double_it example: a[i] *= 2 for int64 data. */
PYMIC_KERNEL
void doubleit_kernel(int64_t *a, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        a[i] *= 2;
}

/* pyMIC's double_float example: a[i] *= 2 for double data. */
PYMIC_KERNEL
void double_float_kernel(double *a, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        a[i] *= 2.0;
}

/* a[i] = b[i] + 1, forwards: with a and b aliasing, later elements see
 * the writes to earlier ones, exactly as on the host. */
PYMIC_KERNEL
void add_one_forward(double *a, const double *b, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        a[i] = b[i] + 1.0;
}

/* add_one_forward with one more, unused, array argument. */
PYMIC_KERNEL
void add_one_forward_extra(double *a, const double *b, const int64_t *n, const double *unused)
{
    (void)unused;
    for (int64_t i = 0; i < *n; i++)
        a[i] = b[i] + 1.0;
}
