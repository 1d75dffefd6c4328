/*
 * bench_app.c -- B9/B10: the kernels of an application's time step.
 *
 * Short OpenMP kernels on arrays of 10^4..10^5 doubles and a small-operator
 * dgemm (a 24x16 matrix applied to 16 rows of m points), the kind of work a
 * CFD code offloads thirty times per step.  Every kernel follows pymic's
 * convention (one pointer per argument), so the ctypes peer calls the very
 * same functions with the same pointers.
 */
#include <pymic_kernel.h>
#include <cblas.h>
#include <omp.h>

/* y += alpha * x */
PYMIC_KERNEL
void app_axpy(double *y, const double *x, const double *alpha, const int64_t *n)
{
    const double a = *alpha;
    const int64_t count = *n;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++)
        y[i] += a * x[i];
}

/* u = 0.5 u + 0.25 (v + w): a relaxation step, stays bounded. */
PYMIC_KERNEL
void app_relax(double *u, const double *v, const double *w, const int64_t *n)
{
    const int64_t count = *n;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++)
        u[i] = 0.5 * u[i] + 0.25 * (v[i] + w[i]);
}

/* out = smoothed in (1-2-1 stencil, ends copied). */
PYMIC_KERNEL
void app_smooth(double *out, const double *in, const int64_t *n)
{
    const int64_t count = *n;
    out[0] = in[0];
    out[count - 1] = in[count - 1];
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 1; i < count - 1; i++)
        out[i] = 0.25 * in[i - 1] + 0.5 * in[i] + 0.25 * in[i + 1];
}

/* C (24 x m) = A (24 x 16) * B (16 x m), row-major: each member of an
 * OpenMP team applies the operator to its block of columns with one small
 * dgemm (OpenBLAS itself runs single-threaded here, see app_loop.py). */
PYMIC_KERNEL
void app_operator(const double *a, const double *b, double *c, const int64_t *m)
{
    const int64_t cols = *m;
#pragma omp parallel
    {
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t first = cols * me / team, last = cols * (me + 1) / team;
        if (last > first)
            scipy_cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 24,
                              (blasint)(last - first), 16, 1.0, a, 16, b + first,
                              (blasint)cols, 0.0, c + first, (blasint)cols);
    }
}
