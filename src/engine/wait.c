/*
 * wait.c -- spin-then-sleep waits (see wait.h for the reasoning).
 *
 * Lost-wakeup argument: a sleeper increments `sleepers` and then re-reads
 * the counter; the notifier stores the counter and then reads `sleepers`.
 * All four accesses are sequentially consistent, so either the notifier
 * sees the sleeper (and bumps the futex word and wakes it), or the sleeper
 * sees the new counter value.  The futex word read before the re-check
 * closes the window between the re-check and FUTEX_WAIT.
 */
#include "engine.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PYMIC_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define PYMIC_PAUSE() __asm__ __volatile__("yield")
#else
#define PYMIC_PAUSE() ((void)0)
#endif

/* Pauses between two reads of the clock while spinning: the clock costs
 * ~20 ns, one pause ~10-40 ns depending on the CPU. */
#define PYMIC_SPINS_PER_CLOCK_READ 32

uint64_t pymic_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expected)
{
    /* EAGAIN (word changed) and EINTR both just mean "look again". */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static int spin_until(_Atomic uint64_t *counter, uint64_t target, uint64_t spin_ns)
{
    if (spin_ns == 0)
        return 0;
    uint64_t deadline = 0;
    for (;;) {
        for (int i = 0; i < PYMIC_SPINS_PER_CLOCK_READ; i++) {
            if (atomic_load_explicit(counter, memory_order_acquire) >= target)
                return 1;
            PYMIC_PAUSE();
        }
        uint64_t now = pymic_now_ns();
        if (deadline == 0)
            deadline = now + spin_ns;
        else if (now >= deadline)
            return 0;
    }
}

void pymic_wait_geq(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target)
{
    if (atomic_load_explicit(counter, memory_order_acquire) >= target)
        return;
    uint64_t spin_ns = atomic_load_explicit(&pymic_global.spin_ns, memory_order_relaxed);
    if (spin_until(counter, target, spin_ns))
        return;

    atomic_fetch_add_explicit(&q->sleepers, 1, memory_order_seq_cst);
    for (;;) {
        uint32_t word = atomic_load_explicit(&q->word, memory_order_seq_cst);
        if (atomic_load_explicit(counter, memory_order_seq_cst) >= target)
            break;
        futex_wait(&q->word, word);
    }
    atomic_fetch_sub_explicit(&q->sleepers, 1, memory_order_relaxed);
}

void pymic_notify(pymic_waitq *q)
{
    if (atomic_load_explicit(&q->sleepers, memory_order_seq_cst) == 0)
        return;
    atomic_fetch_add_explicit(&q->word, 1, memory_order_seq_cst);
    futex_wake_all(&q->word);
}

void pymic_store_and_notify(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t value)
{
    atomic_store_explicit(counter, value, memory_order_seq_cst);
    pymic_notify(q);
}
