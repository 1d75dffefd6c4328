/*
 * faults.c -- kernels that take their process down, one that writes past
 * its buffer, and two that fork().  Only for process devices (test_proc.py) and the
 * bounds checks: on a host device the first three would end the test run.
 */
#define _POSIX_C_SOURCE 200809L /* fork, pause: built with -std=c11 */

#include <pymic_kernel.h>

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

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

/* fork()s; both processes return from the kernel. */
PYMIC_KERNEL void fork_and_return(void) { (void)fork(); }

/* fork()s a child that waits for a signal forever; out[0] = its pid. */
PYMIC_KERNEL void fork_sleeper(int64_t *out)
{
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    out[0] = child;
}
