/*
 * wait.h -- spin-then-sleep waiting on a 64-bit counter.
 *
 * Every wait in the engine has the same shape: "block until counter >=
 * target" (a stream's completed sequence number, its enqueued number, an
 * event's done generation).  A waiter spins for a bounded time first,
 * because a spinning hand-off costs well under a microsecond while a futex
 * sleep/wake round trip costs tens of microseconds on a VM; then it sleeps
 * on a futex so an idle process burns no CPU.
 *
 * The notifier does the wake system call only when a waiter has announced
 * that it sleeps (`sleepers` > 0), which keeps the common path free of
 * system calls.
 *
 * A queue may also hold one *napper*: a thread that sleeps with a short
 * timeout and looks again by itself, so ordinary notifies leave it alone
 * (no system call for the notifier) and only pymic_kick wakes it early.  A
 * stream's idle worker naps while the threads that sync run its commands
 * themselves (see stream.c).
 */
#ifndef PYMIC_WAIT_H
#define PYMIC_WAIT_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct pymic_waitq {
    _Atomic uint32_t word;     /* futex word, bumped by wakes and kicks   */
    _Atomic uint32_t sleepers; /* waiters past their spin window         */
    _Atomic uint32_t nappers;  /* timed sleepers woken only by kicks      */
    _Atomic uint32_t kicks;    /* bumped by every pymic_kick              */
    /* When a waiter of this queue is about to sleep, it kicks this queue
     * first (a stream's done queue kicks its worker's queue: whoever
     * sleeps waiting for completion must not wait for a napping worker's
     * timer).  NULL: nothing to kick. */
    struct pymic_waitq *kick_on_sleep;
} pymic_waitq;

/* Block until *counter >= target.  Spins for up to the engine's spin
 * window first. */
void pymic_wait_geq(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target);

/* The same with a time limit: returns 1 once *counter >= target, 0 when
 * `timeout_ns` nanoseconds have passed first.  Callers that must stay
 * responsive (the Python layer checking for Ctrl-C) wait in slices. */
int pymic_wait_geq_timeout(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target,
                           uint64_t timeout_ns);

/* The general form: spin for at most `spin_ns` (0: sleep at once), then
 * sleep until *counter >= target or the monotonic clock passes `deadline`
 * (UINT64_MAX: never).  1 if the target was reached. */
int pymic_wait_geq_spin(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target,
                        uint64_t spin_ns, uint64_t deadline);

/* Spin for at most `spin_ns` until *counter >= target; give up early once
 * *stop is nonzero (stop may be NULL).  1 if the target was reached. */
int pymic_spin_geq(_Atomic uint64_t *counter, uint64_t target, uint64_t spin_ns,
                   _Atomic int *stop);

/* Sleep on q until its word differs from `word` (read by the caller
 * before it last looked at its condition) or `timeout_ns` has passed
 * (UINT64_MAX: no limit); with a `counter`, do not sleep once *counter >=
 * target (checked after announcing the sleep, so a notify cannot be
 * missed).  A `notifiable` dozer counts as a sleeper, so pymic_notify
 * wakes it; otherwise it is a napper, woken early only by pymic_kick.  The
 * caller compares q->kicks to tell a kick from the rest. */
void pymic_doze(pymic_waitq *q, uint32_t word, _Atomic uint64_t *counter, uint64_t target,
                uint64_t timeout_ns, int notifiable);

/* Store `value` into *counter (sequentially consistent, so it is ordered
 * before the check for sleepers) and wake sleepers of q if any. */
void pymic_store_and_notify(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t value);

/* Wake sleepers of q if any; call after a seq_cst update of the counter. */
void pymic_notify(pymic_waitq *q);

/* Wake sleepers and nappers of q: bumps the word (so a napper about to
 * sleep sees it) and makes the system call only if somebody waits. */
void pymic_kick(pymic_waitq *q);

#endif /* PYMIC_WAIT_H */
