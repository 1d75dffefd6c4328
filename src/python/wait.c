/*
 * wait.c -- every blocking wait of pymic._engine, interruptible by Ctrl-C.
 *
 * The engine's waits know nothing of Python signals, and a SIGINT handler in
 * CPython only sets a flag that the main thread acts on when it runs Python
 * code again.  So a wait that blocks inside the engine until a long kernel
 * ends would ignore Ctrl-C for as long as the kernel runs, forever for one
 * that loops.  CPython's own lock acquisition (acquire_timed) solves the
 * same problem by waiting in slices: block with the GIL released for a
 * short time, take the GIL back, run PyErr_CheckSignals(), and go on
 * waiting if no handler raised.  This file is that loop, once, for the
 * three things the extension waits for: a stream sequence number, an event
 * and a whole device.
 *
 * A slice of 10 ms keeps the reaction well under 100 ms while costing
 * nothing measurable: a wait that ends within its first slice (every short
 * kernel) never sees the loop, and a long one wakes 100 times a second to
 * check a flag.
 *
 * Each slice runs on this thread only commands known to end soon
 * (PYMIC_WAIT_RUNS_QUICK): a kernel run here could not be interrupted, and
 * Ctrl-C would wait for its end.  Longer kernels stay on the stream's
 * worker (docs/design.md, "Threads, cores, spinning and sleeping").  An
 * event sync runs nothing in any case.
 */
#include "engine_module.h"

#define WAIT_SLICE_NS 10000000ull /* 10 ms */

static int timed_wait(const wait_target *target)
{
    switch (target->kind) {
    case WAIT_STREAM_SEQ:
        return pymic_stream_wait_seq_runs(target->stream, target->seq, WAIT_SLICE_NS,
                                          PYMIC_WAIT_RUNS_QUICK);
    case WAIT_EVENT:
        return pymic_event_sync_timeout(target->event, WAIT_SLICE_NS);
    case WAIT_DEVICE:
        return pymic_device_sync_runs(target->device, WAIT_SLICE_NS, PYMIC_WAIT_RUNS_QUICK);
    }
    return PYMIC_ERR_INVALID_ARGUMENT;
}

int wait_interruptibly(const wait_target *target)
{
    /* A trace shows this wait at the caller's line (the frames can only
     * be read before the GIL is let go). */
    trace_wait_site_enter();
    for (;;) {
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = timed_wait(target);
        Py_END_ALLOW_THREADS
        if (status != PYMIC_ERR_TIMEOUT) {
            trace_wait_site_leave();
            return status;
        }
        /* Runs the Python signal handlers in the main thread; the default
         * SIGINT handler raises KeyboardInterrupt.  The work goes on. */
        if (PyErr_CheckSignals() < 0) {
            trace_wait_site_leave();
            return WAIT_INTERRUPTED;
        }
    }
}

int wait_stream_seq(pymic_stream *stream, uint64_t seq)
{
    wait_target target = {.kind = WAIT_STREAM_SEQ, .stream = stream, .seq = seq};
    return wait_interruptibly(&target);
}

int wait_status_to_exception(int status)
{
    if (status == PYMIC_OK)
        return 0;
    if (status != WAIT_INTERRUPTED)
        raise_engine_error(status);
    return -1;
}
