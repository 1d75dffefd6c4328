/*
 * double_it.c -- the kernel of the double_it example: doubles every
 * element of an array in place, on the offload device.
 */
#include <pymic_kernel.h>

PYMIC_KERNEL
void doubleit_kernel(double *a, const int64_t *size)
{
    #pragma omp parallel for
    for (int64_t i = 0; i < *size; i++)
        a[i] = 2.0 * a[i];
}
