/*
 * device_gate.c -- a kernel held at a gate in DEVICE memory.
 *
 * gate.c and hold.c hand kernels host addresses, which only a device
 * sharing this process's memory can read.  This gate is an int64 of the
 * device (an OffloadArray) that another stream's copy opens, so a test
 * can hold a stream busy on every device kind, an MPI device included.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <time.h>

#include <pymic_kernel.h>

/* Waits until gate[0] is nonzero. */
PYMIC_KERNEL
void wait_for_device_gate(const int64_t *gate)
{
    while (atomic_load((const _Atomic int64_t *)gate) == 0) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
}
