/*
 * bench_dgemm.c -- B6: C = A * B for square row-major matrices of order n,
 * through the CBLAS of scipy-openblas32 (its symbols carry the "scipy_"
 * prefix, which is why the call is not spelled cblas_dgemm).
 */
#include <pymic_kernel.h>
#include <cblas.h>

PYMIC_KERNEL
void bench_dgemm(const double *a, const double *b, double *c, const int64_t *order)
{
    const blasint n = (blasint)*order;
    scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n,
                      1.0, a, n, b, n, 0.0, c, n);
}
