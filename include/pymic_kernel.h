/*
 * pymic_kernel.h -- the one header a pymic kernel author includes.
 *
 *   #include <pymic_kernel.h>
 *
 *   PYMIC_KERNEL
 *   void scale(double *x, const int64_t *n, const double *factor)
 *   { for (int64_t i = 0; i < *n; i++) x[i] *= *factor; }
 *
 * A kernel returns void and takes one pointer per argument given to
 * OffloadStream.invoke, in order: arrays arrive as pointers to their device
 * buffers, Python ints as const int64_t *, floats as const double *,
 * complex numbers as const double complex *, None as NULL.  Build the file
 * as a shared object (cc -shared -fPIC -fopenmp -I$(pymic include dir)).
 */
#ifndef PYMIC_KERNEL_H
#define PYMIC_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define PYMIC_KERNEL extern "C" __attribute__((visibility("default")))
#else
#define PYMIC_KERNEL __attribute__((visibility("default")))
#endif

#endif /* PYMIC_KERNEL_H */
