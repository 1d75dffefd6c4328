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
 */
#ifndef PYMIC_WAIT_H
#define PYMIC_WAIT_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct pymic_waitq {
    _Atomic uint32_t word;     /* futex word, bumped when sleepers exist */
    _Atomic uint32_t sleepers; /* waiters past their spin window         */
} pymic_waitq;

/* Block until *counter >= target.  Spins for up to the engine's spin
 * window first. */
void pymic_wait_geq(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target);

/* The same with a time limit: returns 1 once *counter >= target, 0 when
 * `timeout_ns` nanoseconds have passed first.  Callers that must stay
 * responsive (the Python layer checking for Ctrl-C) wait in slices. */
int pymic_wait_geq_timeout(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t target,
                           uint64_t timeout_ns);

/* Store `value` into *counter (sequentially consistent, so it is ordered
 * before the check for sleepers) and wake sleepers of q if any. */
void pymic_store_and_notify(pymic_waitq *q, _Atomic uint64_t *counter, uint64_t value);

/* Wake sleepers of q if any; call after a seq_cst update of the counter. */
void pymic_notify(pymic_waitq *q);

#endif /* PYMIC_WAIT_H */
