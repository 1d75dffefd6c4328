/*
 * gate.c -- kernels that wait until the test lets them go.
 *
 * Tests of Ctrl-C need a wait that cannot end on its own: these kernels
 * take two host addresses as integers (ndarray.ctypes.data -- the host
 * device shares the process), raise a "started" flag the test can watch,
 * and wait until the test opens the "gate".  Ordering by flags rather than
 * by sleeps keeps the tests deterministic on a loaded machine.
 */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include <pymic_kernel.h>

static void nap(void)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000L};
    nanosleep(&pause, NULL);
}

static void announce_then_wait(int64_t started_address, int64_t gate_address)
{
    int64_t *started = (int64_t *)(intptr_t)started_address;
    const int64_t *gate = (const int64_t *)(intptr_t)gate_address;
    __atomic_store_n(started, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(gate, __ATOMIC_ACQUIRE) == 0)
        nap();
}

/* Waits for the gate. */
PYMIC_KERNEL
void gate_wait(const int64_t *started, const int64_t *gate)
{
    announce_then_wait(*started, *gate);
}

/* Waits for the gate, then doubles x[0..n). */
PYMIC_KERNEL
void gate_then_double(double *x, const int64_t *n, const int64_t *started, const int64_t *gate)
{
    announce_then_wait(*started, *gate);
    for (int64_t i = 0; i < *n; i++)
        x[i] *= 2.0;
}

/* Never returns: a kernel stuck in a loop. */
PYMIC_KERNEL
void loop_forever(void)
{
    for (;;)
        nap();
}

/* Like gate_wait, but gives up after *timeout_ms and then marks the gate
 * -1: a test whose opener never ran (e.g. because a wait held the GIL)
 * fails instead of hanging. */
PYMIC_KERNEL
void gate_wait_bounded(const int64_t *started, const int64_t *gate, const int64_t *timeout_ms)
{
    int64_t *flag = (int64_t *)(intptr_t)*started;
    int64_t *gate_flag = (int64_t *)(intptr_t)*gate;
    __atomic_store_n(flag, 1, __ATOMIC_SEQ_CST);
    for (int64_t waited = 0; __atomic_load_n(gate_flag, __ATOMIC_ACQUIRE) == 0; waited++) {
        if (waited >= *timeout_ms) {
            int64_t closed = 0;
            __atomic_compare_exchange_n(gate_flag, &closed, -1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST);
            return;
        }
        nap();
    }
}
