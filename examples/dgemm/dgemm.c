/*
 * dgemm.c -- the kernel of the dgemm example: C = alpha * A B + beta * C
 * with row-major matrices, computed by the BLAS on the offload device.
 */
#include <pymic_kernel.h>
#include <cblas.h>

/* scipy-openblas32 exports its CBLAS with a prefix (scipy_cblas_dgemm) so
 * that it never clashes with another BLAS in the process; its build flags
 * say so with BLAS_SYMBOL_PREFIX.  Map the name back so the call below
 * reads like any CBLAS program. */
#ifdef BLAS_SYMBOL_PREFIX
#define cblas_dgemm scipy_cblas_dgemm
#endif

PYMIC_KERNEL
void dgemm_kernel(const double *A, const double *B, double *C,
                  const int64_t *m, const int64_t *n, const int64_t *k,
                  const double *alpha, const double *beta)
{
    /* The leading dimensions of row-major matrices are their row lengths. */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                (int)*m, (int)*n, (int)*k, *alpha, A, (int)*k, B, (int)*n,
                *beta, C, (int)*n);
}
