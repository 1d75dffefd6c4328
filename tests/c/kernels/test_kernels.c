/*
 * test_kernels.c -- small kernels the engine tests invoke.
 */
#include <pymic_kernel.h>

#include <omp.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

PYMIC_KERNEL void empty_kernel(void) {}

/* A data object the library exports: a name that is not a kernel. */
__attribute__((visibility("default"))) int pymic_test_data_object = 1;

/* *counter += 1, as the kernel's only effect. */
PYMIC_KERNEL void increment(int64_t *counter) { (*counter)++; }

/* Appends *value to log[0..] (log[0] holds the count): shows the order. */
PYMIC_KERNEL void append(int64_t *log, const int64_t *value)
{
    log[1 + log[0]] = *value;
    log[0]++;
}

/* out[0] = *a + *b for scalars passed by value. */
PYMIC_KERNEL void add_scalars(double *out, const double *a, const int64_t *b)
{
    out[0] = *a + (double)*b;
}

/* Stores 1 in *flag only once *gate is nonzero, then sets *gate = 0:
 * lets a test hold a stream busy until it opens the gate. */
PYMIC_KERNEL void wait_for_gate(_Atomic int64_t *gate)
{
    while (atomic_load(gate) == 0) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
}

/* Sets *started, then waits like wait_for_gate: a test knows the kernel
 * runs once it sees *started (in device memory that the host maps too). */
PYMIC_KERNEL void announce_then_wait(_Atomic int64_t *started, _Atomic int64_t *gate)
{
    atomic_store(started, 1);
    wait_for_gate(gate);
}

/* Sleep *ms milliseconds. */
PYMIC_KERNEL void sleep_ms(const int64_t *ms)
{
    struct timespec t = {(time_t)(*ms / 1000), (long)(*ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Where its scalars lie: out[i] = the i-th one's address modulo 16.  The
 * engine places every scalar at a 16-byte boundary (a long double or a
 * double complex needs it), on every device. */
PYMIC_KERNEL void scalar_alignment(int64_t *out, const char *c, const long double *x,
                                   const double *d)
{
    out[0] = (int64_t)((uintptr_t)c % 16);
    out[1] = (int64_t)((uintptr_t)x % 16);
    out[2] = (int64_t)((uintptr_t)d % 16);
    out[3] = *c == 'p' && *x == 2.5L && *d == -1.0;
}

/* out[i] = in[i] * 2 for i < *n. */
PYMIC_KERNEL void double_it(const double *in, double *out, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        out[i] = in[i] * 2.0;
}

/* Records the CPU the kernel runs on. */
PYMIC_KERNEL void which_cpu(int64_t *cpu) { *cpu = sched_getcpu(); }

/* Opens an OpenMP team and reports what the device gave it: the team size
 * in *team, and the CPU each member ran on in cpus[thread] (at most 64).
 * Atomic stores keep ThreadSanitizer quiet about libgomp's (uninstrumented)
 * barrier, which is what really orders these writes before the read. */
PYMIC_KERNEL void omp_team_info(int64_t *team, _Atomic int64_t *cpus)
{
    _Atomic int64_t size = 0;
    #pragma omp parallel
    {
        int thread = omp_get_thread_num();
        if (thread < 64)
            atomic_store(&cpus[thread], sched_getcpu());
        if (thread == 0)
            atomic_store(&size, omp_get_num_threads());
    }
    *team = atomic_load(&size);
}

/* Kernels that take their process down: on a process device each must
 * become an error (PYMIC_ERR_DEVICE_LOST), never run them on a host device. */
PYMIC_KERNEL void crash_segv(void)
{
    volatile int *nowhere = NULL;
    *nowhere = 1;
}

PYMIC_KERNEL void crash_abort(void) { abort(); }

PYMIC_KERNEL void crash_exit(void) { exit(3); }

/* Waits until the byte at data[*offset] is no longer 0 (a copy into
 * `data`, on another stream, has reached it), then kills its process: a
 * device that ends in the middle of that copy (MPI device). */
PYMIC_KERNEL void kill_when_reached(const volatile unsigned char *data, const int64_t *offset)
{
    while (data[*offset] == 0)
        sched_yield();
    raise(SIGKILL);
}

PYMIC_KERNEL void spin_forever(void)
{
    for (volatile int i = 0;; i++)
        ;
}

/* Writes `n` doubles of 1.0 from `out` on: past its end when n is larger
 * than the allocation (for the bounds checks). */
PYMIC_KERNEL void write_past(double *out, const int64_t *n)
{
    for (int64_t i = 0; i < *n; i++)
        out[i] = 1.0;
}

/* write_past, then sets *started and waits like wait_for_gate: the damage
 * is done, and its check after the kernel is held back. */
PYMIC_KERNEL void write_past_then_wait(double *out, const int64_t *n, _Atomic int64_t *started,
                                       _Atomic int64_t *gate)
{
    write_past(out, n);
    announce_then_wait(started, gate);
}

/* write_past through an address given as a number (as a device pointer
 * from translate_device_pointer is): no argument points into the
 * memory it writes. */
PYMIC_KERNEL void write_past_at(const int64_t *address, const int64_t *n)
{
    write_past((double *)(intptr_t)*address, n);
}

/* fork()s, and both copies return: the child's copy of the calling thread
 * must not go on serving its mailbox (process device). */
PYMIC_KERNEL void fork_and_return(void) { (void)fork(); }

/* fork()s a child that waits for a signal forever; *pid is the child's
 * pid (or -1): a child a kernel leaves behind. */
PYMIC_KERNEL void fork_sleeper(int64_t *pid)
{
    pid_t child = fork();
    if (child == 0) {
        for (;;)
            pause();
    }
    *pid = child;
}
