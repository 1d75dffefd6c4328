/*
 * stress_kernels.c -- kernels of test_stress: each leaves a trace that
 * shows whether commands ran exactly once, in order, and on which thread.
 *
 * The plain (non-atomic) updates are deliberate: commands of one stream
 * run one at a time, on whichever thread claimed them, and the engine must
 * order them (ThreadSanitizer checks that it does).
 */
#include <pymic_kernel.h>

#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* track[0]: the last sequence value seen, track[1]: how many arrived out of
 * order, track[2]: sum of all values.  Values of one producer into one
 * stream are 1, 2, 3, ... in enqueue order. */
PYMIC_KERNEL void stress_in_order(int64_t *track, const int64_t *value)
{
    if (*value != track[0] + 1)
        track[1]++;
    track[0] = *value;
    track[2] += *value;
}

/* *tid = the Linux thread id of the thread running the kernel. */
PYMIC_KERNEL void stress_whoami(int64_t *tid) { *tid = (int64_t)syscall(SYS_gettid); }

/* Sleep *ms milliseconds. */
PYMIC_KERNEL void stress_sleep_ms(const int64_t *ms)
{
    struct timespec t = {(time_t)(*ms / 1000), (long)(*ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Sleep *ms milliseconds, then *tid = the thread that ran it. */
PYMIC_KERNEL void stress_sleep_whoami(int64_t *tid, const int64_t *ms)
{
    struct timespec t = {(time_t)(*ms / 1000), (long)(*ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    *tid = (int64_t)syscall(SYS_gettid);
}

/* Block until *gate is nonzero. */
PYMIC_KERNEL void stress_gate(_Atomic int64_t *gate)
{
    while (atomic_load(gate) == 0) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
}

/* *size = the size of the OpenMP team a parallel region gets. */
PYMIC_KERNEL void stress_team_size(int64_t *size)
{
    int64_t team = 0;
#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
    }
    *size = team;
}

/* The sequence checker of the claim tests.  seq[0]: the last value seen,
 * seq[1]: how many arrived out of order or twice, seq[2]: how many found
 * another command of the stream still running (busy[0] set), seq[3]: how
 * many ran on the thread *caller (the rest ran elsewhere: on the worker or
 * another syncing thread).  runner[v - 1] = the thread that ran value v. */
PYMIC_KERNEL void stress_sequence(int64_t *seq, _Atomic int64_t *busy, int64_t *runner,
                                  const int64_t *caller, const int64_t *value)
{
    if (atomic_exchange(busy, 1) != 0)
        seq[2]++;
    /* Every 8th value leaves the CPU while busy: a runner that claims
     * what is not its own gets the time to show itself. */
    if (*value % 8 == 0)
        sched_yield();
    if (*value != seq[0] + 1)
        seq[1]++;
    seq[0] = *value;
    int64_t tid = (int64_t)syscall(SYS_gettid);
    runner[*value - 1] = tid;
    seq[3] += tid == *caller;
    atomic_store(busy, 0);
}

/* Count one run in *counter (any thread may run it: atomic); every 16th
 * run leaves the CPU, so that work stays pending now and then. */
PYMIC_KERNEL void stress_count(_Atomic int64_t *counter)
{
    if (atomic_fetch_add(counter, 1) % 16 == 0)
        sched_yield();
}
