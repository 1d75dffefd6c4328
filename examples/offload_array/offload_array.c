/*
 * offload_array.c -- the kernel of the offload_array example: y = a*x + y,
 * a user kernel working on the same device-resident arrays as OffloadArray's
 * built-in operators.
 */
#include <pymic_kernel.h>

PYMIC_KERNEL
void axpy(const double *x, double *y, const int64_t *n, const double *a)
{
    #pragma omp parallel for
    for (int64_t i = 0; i < *n; i++)
        y[i] += *a * x[i];
}
