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

uint64_t pymic_deadline(uint64_t timeout_ns)
{
    if (timeout_ns == UINT64_MAX)
        return UINT64_MAX;
    if (timeout_ns == 0)
        return 0;
    uint64_t now = pymic_now_ns();
    return timeout_ns >= UINT64_MAX - now ? UINT64_MAX - 1 : now + timeout_ns;
}

int pymic_wait_runs_for_timeout(uint64_t timeout_ns)
{
    if (timeout_ns == UINT64_MAX)
        return PYMIC_WAIT_RUNS_ANY;
    return timeout_ns == 0 ? PYMIC_WAIT_RUNS_NOTHING : PYMIC_WAIT_RUNS_QUICK;
}

int pymic_wait_runs_check(int runs, const char *op)
{
    if (runs == PYMIC_WAIT_RUNS_NOTHING || runs == PYMIC_WAIT_RUNS_QUICK ||
        runs == PYMIC_WAIT_RUNS_ANY)
        return PYMIC_OK;
    return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                      "%s: runs is %d; expected PYMIC_WAIT_RUNS_NOTHING (0), "
                      "PYMIC_WAIT_RUNS_QUICK (1) or PYMIC_WAIT_RUNS_ANY (2)",
                      op, runs);
}

/* Sleep while *word == expected, at most `timeout` (NULL: no limit). */
static void futex_wait(_Atomic uint32_t *word, uint32_t expected, const struct timespec *timeout)
{
    /* EAGAIN (word changed), EINTR and ETIMEDOUT all just mean "look
     * again": the caller re-reads its counter and its clock. */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, timeout, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

int pymic_spin_geq(_Atomic uint64_t *counter, uint64_t target, uint64_t spin_ns,
                   _Atomic int *stop)
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
        if (stop && atomic_load_explicit(stop, memory_order_relaxed))
            return 0;
        uint64_t now = pymic_now_ns();
        if (deadline == 0)
            deadline = now + spin_ns;
        else if (now >= deadline)
            return 0;
    }
}

int pymic_wait_geq_spin(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target,
                        uint64_t spin_ns, uint64_t deadline)
{
    if (atomic_load_explicit(counter, memory_order_acquire) >= target)
        return 1;
    if (pymic_spin_geq(counter, target, spin_ns, NULL))
        return 1;
    if (q->kick_on_sleep)
        pymic_kick(q->kick_on_sleep);

    int reached = 0;
    atomic_fetch_add_explicit(&q->sleepers, 1, memory_order_seq_cst);
    for (;;) {
        uint32_t word = atomic_load_explicit(&q->word, memory_order_seq_cst);
        if (atomic_load_explicit(counter, memory_order_seq_cst) >= target) {
            reached = 1;
            break;
        }
        if (deadline == UINT64_MAX) {
            futex_wait(&q->word, word, NULL);
            continue;
        }
        uint64_t now = pymic_now_ns();
        if (now >= deadline)
            break;
        uint64_t left = deadline - now;
        struct timespec timeout = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        futex_wait(&q->word, word, &timeout);
    }
    atomic_fetch_sub_explicit(&q->sleepers, 1, memory_order_relaxed);
    return reached;
}

static uint64_t spin_window(void)
{
    return atomic_load_explicit(&pymic_global.spin_ns, memory_order_relaxed);
}

void pymic_wait_geq(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target)
{
    pymic_wait_geq_spin(q, counter, target, spin_window(), UINT64_MAX);
}

int pymic_wait_geq_timeout(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target,
                           uint64_t timeout_ns)
{
    if (atomic_load_explicit(counter, memory_order_acquire) >= target)
        return 1;
    uint64_t now = pymic_now_ns();
    uint64_t deadline = timeout_ns >= UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
    return pymic_wait_geq_spin(q, counter, target, spin_window(), deadline);
}

void pymic_notify(pymic_waitq *q)
{
    if (atomic_load_explicit(&q->sleepers, memory_order_seq_cst) == 0)
        return;
    atomic_fetch_add_explicit(&q->word, 1, memory_order_seq_cst);
    futex_wake_all(&q->word);
}

/* A dozer and a kicker form the same pair as sleeper and notifier: the
 * dozer announces itself, then re-reads the word; the kicker bumps the
 * word, then reads the counts (all seq_cst).  Either the dozer sees the
 * new word or the kicker sees the dozer and wakes it.  A notifiable dozer
 * pairs with pymic_notify the same way. */
void pymic_doze(pymic_waitq *q, uint32_t word, _Atomic uint64_t *counter, uint64_t target,
                uint64_t timeout_ns, int notifiable)
{
    _Atomic uint32_t *count = notifiable ? &q->sleepers : &q->nappers;
    atomic_fetch_add_explicit(count, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&q->word, memory_order_seq_cst) == word &&
        (!counter || atomic_load_explicit(counter, memory_order_seq_cst) < target)) {
        struct timespec timeout = {(time_t)(timeout_ns / 1000000000u),
                                   (long)(timeout_ns % 1000000000u)};
        futex_wait(&q->word, word, timeout_ns == UINT64_MAX ? NULL : &timeout);
    }
    atomic_fetch_sub_explicit(count, 1, memory_order_relaxed);
}

void pymic_kick(pymic_waitq *q)
{
    atomic_fetch_add_explicit(&q->kicks, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&q->word, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&q->nappers, memory_order_seq_cst) != 0 ||
        atomic_load_explicit(&q->sleepers, memory_order_seq_cst) != 0)
        futex_wake_all(&q->word);
}

void pymic_store_and_notify(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t value)
{
    atomic_store_explicit(counter, value, memory_order_seq_cst);
    pymic_notify(q);
}
