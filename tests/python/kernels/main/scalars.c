/*
 * scalars.c -- kernels that write the scalar arguments they received into
 * an output array, so the tests can check every scalar kind arrives with
 * the documented C type and value.
 */
#include <complex.h>
#include <string.h>

#include <pymic_kernel.h>

/* A Python int arrives as const int64_t *. */
PYMIC_KERNEL
void store_int64(int64_t *out, const int64_t *value)
{
    out[0] = *value;
}

/* A Python float arrives as const double *. */
PYMIC_KERNEL
void store_double(double *out, const double *value)
{
    out[0] = *value;
}

/* A Python complex arrives as const double complex *. */
PYMIC_KERNEL
void store_complex(double complex *out, const double complex *value)
{
    out[0] = *value;
}

/* Copies the raw bytes of any scalar (bool, NumPy scalars): the test views
 * them with the dtype it expects the kernel to have received. */
PYMIC_KERNEL
void store_bytes(uint8_t *out, const uint8_t *value, const int64_t *nbytes)
{
    memcpy(out, value, (size_t)*nbytes);
}

/* Several scalar kinds in one call: checks that each keeps its own slot
 * (and alignment) when they are packed into one command. */
PYMIC_KERNEL
void store_mixed(double *out, const int64_t *i, const double *d,
                 const double complex *c, const uint8_t *b)
{
    out[0] = (double)*i;
    out[1] = *d;
    out[2] = creal(*c);
    out[3] = cimag(*c);
    out[4] = (double)*b;
}
