/*
 * faults.c -- kernels that take their process down, and one that writes
 * past its buffer.  Only for process devices (test_proc.py) and the
 * bounds checks: on a host device the first three would end the test run.
 */
#include <pymic_kernel.h>

#include <stdint.h>
#include <stdlib.h>

PYMIC_KERNEL void fault_segv(void)
{
    volatile int *nowhere = NULL;
    *nowhere = 1;
}

PYMIC_KERNEL void fault_abort(void) { abort(); }

PYMIC_KERNEL void fault_exit(void) { exit(7); }

PYMIC_KERNEL void fault_endless(void)
{
    for (volatile int64_t i = 0;; i++)
        ;
}

/* out[0 .. *n) = 1.0, however long out really is. */
PYMIC_KERNEL void fill_ones(double *out, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        out[i] = 1.0;
}
