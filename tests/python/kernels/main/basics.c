/*
 * basics.c -- the plainest kernels of the pytest suite: no work at all,
 * simple arithmetic on arrays, and a probe that reports which pointer the
 * kernel received (to compare with translate_device_pointer and None).
 */
#include <pymic_kernel.h>

/* Does nothing: measures and exercises the bare invoke path. */
PYMIC_KERNEL
void empty_kernel(void)
{
}

/* x[i] *= factor: the "is pymic still usable?" probe of the error tests. */
PYMIC_KERNEL
void scale_double(double *x, const int64_t *n, const double *factor)
{
    for (int64_t i = 0; i < *n; i++)
        x[i] *= *factor;
}

/* x[i] += 1: repeated invokes count how many really ran, and in order. */
PYMIC_KERNEL
void increment_int64(int64_t *x, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        x[i] += 1;
}

/* dst[i] = src[i]: moves data between two device buffers inside a kernel. */
PYMIC_KERNEL
void copy_double(double *dst, const double *src, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        dst[i] = src[i];
}

/* out[0] = the address the kernel got for `p`, out[1] = 1 if it was NULL. */
PYMIC_KERNEL
void report_address(uint64_t *out, const void *p)
{
    out[0] = (uint64_t)(uintptr_t)p;
    out[1] = p == NULL;
}

/* out[0] = this kernel's own address: what a kernel handle's k[1] must be. */
PYMIC_KERNEL
void report_own_address(uint64_t *out)
{
    out[0] = (uint64_t)(uintptr_t)&report_own_address;
}
