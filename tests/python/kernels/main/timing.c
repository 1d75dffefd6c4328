/*
 * timing.c -- kernels that take a known time without using a core: they
 * sleep.  Tests of asynchrony, concurrency and pending transfers need work
 * that lasts long enough to observe, and sleeping (not spinning) keeps them
 * reliable on a small, loaded machine.
 */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include <pymic_kernel.h>

static void sleep_milliseconds(int64_t ms)
{
    struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    /* A signal may cut the sleep short; finish the remaining time. */
    while (nanosleep(&left, &left) != 0)
        ;
}

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

PYMIC_KERNEL
void sleep_ms(const int64_t *ms)
{
    sleep_milliseconds(*ms);
}

/* Sleeps, then writes: a later transfer that sees `value` ran after it. */
PYMIC_KERNEL
void sleep_then_fill(double *out, const int64_t *n, const double *value, const int64_t *ms)
{
    sleep_milliseconds(*ms);
    for (int64_t i = 0; i < *n; i++)
        out[i] = *value;
}

/* stamps[0] = start, stamps[1] = end (CLOCK_MONOTONIC seconds, the clock
 * Python's time.monotonic() reads): lets a test see whether two kernels
 * overlapped in time. */
PYMIC_KERNEL
void stamp_sleep(double *stamps, const int64_t *ms)
{
    stamps[0] = monotonic_seconds();
    sleep_milliseconds(*ms);
    stamps[1] = monotonic_seconds();
}
