/*
 * hold.c -- a kernel that holds its stream until the test says so.
 *
 * Lifetime tests check orderings ("this must not have happened yet")
 * while a stream is provably busy, never by timing.  The flag lives in a
 * host NumPy array whose address the test passes as an int; on the host
 * device the kernel sees the host's memory, so setting the flag from
 * Python releases the kernel.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <time.h>

#include <pymic_kernel.h>

/* Waits until the int64 at host address *flag_address is nonzero, then
 * sets the one after it to 1 (the test can see that it has finished). */
PYMIC_KERNEL
void hold_until_flag(const int64_t *flag_address)
{
    _Atomic int64_t *flag = (_Atomic int64_t *)(intptr_t)*flag_address;
    while (atomic_load(&flag[0]) == 0) {
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
    }
    atomic_store(&flag[1], 1);
}
