/*
 * heat_mpi.c -- the kernel of the distributed heat example: one Jacobi
 * sweep of the 2-D heat equation over one rank's block of rows.
 *
 * The block is (rows + 2) x cols doubles in C order: row 0 and row rows+1
 * are halo rows (a neighbour's boundary rows, or the grid's fixed edge),
 * and columns 0 and cols-1 are the fixed left and right edges.  The sweep
 * writes only the interior of `next`, so `next` keeps the edges it was
 * created with.
 */
#include <pymic_kernel.h>

#include <math.h>

PYMIC_KERNEL
void jacobi_sweep(const double *grid, double *next, const int64_t *rows, const int64_t *cols,
                  double *change)
{
    const int64_t nrows = *rows, ncols = *cols;
    double largest = 0.0;
    #pragma omp parallel for reduction(max : largest)
    for (int64_t i = 1; i <= nrows; i++) {
        const double *above = grid + (i - 1) * ncols, *row = grid + i * ncols,
                     *below = grid + (i + 1) * ncols;
        double *out = next + i * ncols;
        for (int64_t j = 1; j < ncols - 1; j++) {
            /* The sum in the order NumPy's expression adds its terms, so the
             * serial NumPy run gives the same bits. */
            out[j] = 0.25 * (above[j] + below[j] + row[j - 1] + row[j + 1]);
            double step = fabs(out[j] - row[j]);
            if (step > largest)
                largest = step;
        }
    }
    *change = largest;
}
