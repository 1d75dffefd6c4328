/*
 * stream.c -- streams: a ring of commands, one worker thread that runs
 * them in order, and the sequence numbers the host waits on.
 *
 * Sequence number s lives in slot (s - 1) % PYMIC_RING_SLOTS.  A producer
 * may write the slot of s once completed >= s - PYMIC_RING_SLOTS, i.e.
 * once the command that used the slot before has finished; a full ring
 * therefore blocks the producer on the completion counter instead of
 * failing or allocating.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pymic_command *slot_of(pymic_command *ring, uint64_t seq)
{
    return &ring[(seq - 1) & (PYMIC_RING_SLOTS - 1)];
}

/* ------------------------------------------------------------------
 * Who runs a command
 *
 * Normally the stream's worker.  But a thread that syncs on a device whose
 * CPUs include all of its own would only block while the worker (and the
 * worker's OpenMP team) run on those same cores; worse, if it spins it
 * takes a core the team needs.  So a syncing thread claims the next
 * command itself when nobody has started it, exactly as if it had called
 * the kernel directly ("caller runs").  The worker then naps (`lazy`)
 * instead of spinning or being woken at every publish, and takes over
 * again when a command waits unclaimed for a whole nap or when a waiter
 * goes to sleep (done_q kicks work_q).
 *
 * Claims: commands may be claimed only while completed == claimed, by a
 * compare-and-swap of `claimed`; the winner runs them and publishes
 * `completed` after each.  So commands still run one at a time and in
 * order.  The worker's claim may take several commands (a batch:
 * everything enqueued, up to CLAIM_BATCH): a producer that enqueues
 * faster than its worker runs then costs the worker one compare-and-swap,
 * and one look at the producer's `enqueued` line, per batch instead of
 * per command.  Until the worker has run its batch nobody else runs any
 * of it (a sync waits for it as for any running command).  A syncing
 * thread claims one command at a time.
 * ------------------------------------------------------------------ */

/* run_class of a slot: who may claim it.  A waiting thread claims what
 * its wait's `runs` (PYMIC_WAIT_RUNS_*) allows: RUN_QUICK commands for
 * PYMIC_WAIT_RUNS_QUICK, RUN_ANY ones too for PYMIC_WAIT_RUNS_ANY. */
enum {
    RUN_WORKER_ONLY = 0, /* stop, wait-event: the worker's business        */
    RUN_ANY = 1,         /* a wait that may run any command may run it     */
    RUN_QUICK = 2        /* known to be short: also a wait that runs quick */
};

/* What counts as quick: a wait that must stay responsive (a timed one;
 * the Python layer's slices, to notice Ctrl-C) runs only these, since a
 * command run on the waiting thread cannot be interrupted. */
#define QUICK_KERNEL_NS 1000000u
#define QUICK_COPY_BYTES ((size_t)16 << 20)
/* A lazy worker naps this long between looks; a command that waited a
 * whole nap unclaimed is run by the worker (and laziness ends).  After
 * this many naps without any enqueue the worker sleeps for good. */
#define NAP_NS 1600000u
#define NAPS_BEFORE_SLEEP 40
/* A lazy worker is woken at once when this many commands wait unclaimed. */
#define LAZY_BACKLOG 64u
/* The most commands one claim of the worker takes. */
#define CLAIM_BATCH 32u
/* A kernel known to be short is timed on one run in this many. */
#define SHORT_KERNEL_SAMPLE 8u

/* What a kernel's runs on a stream say about its length.  It takes two
 * slow runs in a row to call a short kernel long: a single run that paid
 * for (re)creating an OpenMP thread pool (a millisecond or so) must not
 * hand the kernel back to the worker, which would cost a wake-up per
 * kernel from then on (measured: B9 at 1.2-1.4x ctypes instead of 1.0x).
 * Per stream, not per kernel: a fresh stream knows nothing, so a timed
 * wait leaves its kernels to the worker until they have run there. */
enum { KERNEL_UNKNOWN = 0, KERNEL_SHORT, KERNEL_SLOW_ONCE, KERNEL_LONG };

#define KERNEL_LENGTH_SLOTS (sizeof ((pymic_stream *)0)->kernel_length / \
                             sizeof ((pymic_stream *)0)->kernel_length[0])

static unsigned kernel_slot(const struct pymic_kernel *kernel)
{
    uintptr_t bits = (uintptr_t)kernel;
    return (unsigned)((bits >> 6) ^ (bits >> 14)) % KERNEL_LENGTH_SLOTS;
}

static bool kernel_is_quick(pymic_stream *stream, const struct pymic_kernel *kernel)
{
    unsigned i = kernel_slot(kernel);
    if (atomic_load_explicit(&stream->kernel_length[i].kernel, memory_order_relaxed) != kernel)
        return false;
    int state = atomic_load_explicit(&stream->kernel_length[i].state, memory_order_relaxed);
    return state == KERNEL_SHORT || state == KERNEL_SLOW_ONCE;
}

static void note_kernel_ns(pymic_stream *stream, const struct pymic_kernel *kernel, uint64_t ns)
{
    unsigned i = kernel_slot(kernel);
    bool known =
        atomic_load_explicit(&stream->kernel_length[i].kernel, memory_order_relaxed) == kernel;
    int before = known ? atomic_load_explicit(&stream->kernel_length[i].state,
                                              memory_order_relaxed)
                       : KERNEL_UNKNOWN;
    int after = ns <= QUICK_KERNEL_NS ? KERNEL_SHORT
              : before == KERNEL_SHORT ? KERNEL_SLOW_ONCE
                                       : KERNEL_LONG;
    /* Producers read this at every publish: write only a change, so the
     * line is not pulled over at every command. */
    if (!known)
        atomic_store_explicit(&stream->kernel_length[i].kernel, kernel, memory_order_relaxed);
    if (after != before || !known)
        atomic_store_explicit(&stream->kernel_length[i].state, after, memory_order_relaxed);
}

/* Whether this run of `kernel` is timed.  Two clock reads cost more than
 * the rest of an invoke + sync on a host device (47 of 78 ns here), so a
 * kernel known to be short is timed on one run in SHORT_KERNEL_SAMPLE;
 * every other kernel on each run.  A short kernel that turns long is then
 * still seen within two sampled runs (the two slow runs in a row above):
 * until then syncing threads run it, and a lazy worker starts it after a
 * nap (NAP_NS) when nobody syncs.  Only the runner of the stream's
 * commands (one at a time) counts. */
static bool time_this_run(pymic_stream *stream, const struct pymic_kernel *kernel)
{
    unsigned i = kernel_slot(kernel);
    if (atomic_load_explicit(&stream->kernel_length[i].kernel, memory_order_relaxed) != kernel ||
        atomic_load_explicit(&stream->kernel_length[i].state, memory_order_relaxed) !=
            KERNEL_SHORT)
        return true;
    unsigned runs = atomic_load_explicit(&stream->kernel_unmeasured[i], memory_order_relaxed);
    bool timed = ++runs >= SHORT_KERNEL_SAMPLE;
    atomic_store_explicit(&stream->kernel_unmeasured[i], timed ? 0 : runs, memory_order_relaxed);
    return timed;
}

static unsigned char run_class_of(pymic_stream *stream, const pymic_command *cmd)
{
    switch (cmd->kind) {
    case PYMIC_CMD_FREE:
    case PYMIC_CMD_RECORD:
        return RUN_QUICK;
    case PYMIC_CMD_COPY:
        return cmd->u.copy.nbytes <= QUICK_COPY_BYTES ? RUN_QUICK : RUN_ANY;
    case PYMIC_CMD_INVOKE:
        return kernel_is_quick(stream, cmd->u.call.handle) ? RUN_QUICK : RUN_ANY;
    default:
        return RUN_WORKER_ONLY;
    }
}

pymic_command *pymic_stream_reserve(pymic_stream *stream)
{
    pthread_mutex_lock(&stream->enqueue_lock);
    uint64_t seq = atomic_load_explicit(&stream->enqueued, memory_order_relaxed) + 1;
    /* `completed` is written by the runner after every command: read it
     * only when the room known from the last look is used up, so the
     * producer does not pull the runner's line over at every command. */
    if (seq > stream->room_until) {
        uint64_t completed = atomic_load_explicit(&stream->completed, memory_order_acquire);
        if (seq > completed + PYMIC_RING_SLOTS) {
            /* Full ring: the worker must run, whatever it was told. */
            uint64_t room = seq - PYMIC_RING_SLOTS;
            uint64_t traced = pymic_trace_wait_begin();
            pymic_kick(&stream->work_q);
            pymic_wait_geq(&stream->done_q, &stream->completed, room);
            pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_ROOM, stream->device->id, stream,
                                 room, PYMIC_OK);
            completed = atomic_load_explicit(&stream->completed, memory_order_acquire);
        }
        stream->room_until = completed + PYMIC_RING_SLOTS;
    }
    return slot_of(stream->ring, seq);
}

void pymic_stream_publish(pymic_stream *stream)
{
    uint64_t seq = atomic_load_explicit(&stream->enqueued, memory_order_relaxed) + 1;
    pymic_command *cmd = slot_of(stream->ring, seq);
    int kind = cmd->kind;
    unsigned char run_class = run_class_of(stream, cmd);
    atomic_store_explicit(&cmd->run_class, run_class, memory_order_relaxed);
    pymic_trace_enqueue(stream, cmd, seq);
    /* seq_cst store: ordered before reading the worker's sleeper count
     * and busy_listed (device.c pairs with it). */
    atomic_store_explicit(&stream->enqueued, seq, memory_order_seq_cst);
    pthread_mutex_unlock(&stream->enqueue_lock);
    /* Device-wide waits see the stream from now on.  Not for STOP: the
     * worker may already have passed it and left the device's lists, and
     * a STOP alone is nothing to wait for. */
    if (kind != PYMIC_CMD_STOP &&
        !atomic_load_explicit(&stream->busy_listed, memory_order_seq_cst))
        pymic_device_list_busy(stream);
    /* A stop, an event wait or an event record may be waited for where no
     * caller can run it (another stream, an event sync): wake a napping
     * worker too.  Other commands only wake a sleeping one, unless they
     * pile up: a backlog means the producer does not sync after each
     * command, and the worker had better run them now, beside it. */
    bool kick = kind != PYMIC_CMD_INVOKE && kind != PYMIC_CMD_COPY && kind != PYMIC_CMD_FREE;
    if (atomic_load_explicit(&stream->lazy, memory_order_relaxed) &&
        seq - atomic_load_explicit(&stream->claimed, memory_order_relaxed) >= LAZY_BACKLOG) {
        atomic_store_explicit(&stream->lazy, 0, memory_order_relaxed);
        kick = true;
    }
    if (kick)
        pymic_kick(&stream->work_q);
    else
        pymic_notify(&stream->work_q);
}

void pymic_stream_cancel(pymic_stream *stream)
{
    pthread_mutex_unlock(&stream->enqueue_lock);
}

/* Claim the next commands if nobody runs one: those enqueued, at most
 * `last`, at most `most` of them, each at least of class `min_class`.
 * Returns the first claimed sequence number and sets *end to the last;
 * 0 if nothing was claimed.  `own_end` is the end of the caller's own
 * last claim (the worker's; UINT64_MAX for others): while nobody has
 * claimed since, the worker may claim more although commands it claimed
 * are still in flight. */
static inline uint64_t try_claim(pymic_stream *stream, uint64_t last, unsigned char min_class,
                                 uint64_t most, uint64_t own_end, uint64_t *end)
{
    uint64_t seq = atomic_load_explicit(&stream->claimed, memory_order_acquire);
    if (seq >= last ||
        (seq != own_end && atomic_load_explicit(&stream->completed, memory_order_acquire) != seq))
        return 0;
    uint64_t upto = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    if (upto > last)
        upto = last;
    if (upto > seq + most)
        upto = seq + most;
    /* The classes may be stale if a slot has been reused meanwhile; then
     * the claim below fails, because claimed has moved on. */
    uint64_t take = seq;
    if (min_class == RUN_WORKER_ONLY)
        take = upto;
    else
        while (take < upto && atomic_load_explicit(&slot_of(stream->ring, take + 1)->run_class,
                                                   memory_order_relaxed) >= min_class)
            take++;
    if (take <= seq)
        return 0;
    if (!atomic_compare_exchange_strong_explicit(&stream->claimed, &seq, take,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return 0;
    *end = take;
    return seq + 1;
}

/* Set on a worker thread (or a syncing thread) once it has run a kernel,
 * which may have given it an OpenMP thread pool; cleared when the pool is
 * released. */
static _Thread_local bool worker_hosted_kernel, caller_hosted_kernel;

/* Publish that commands up to `seq` have run; parked frees and unloads
 * may have been waiting for them.  (seq_cst on the count pairs with its
 * increment in pymic_release_after: either this thread sees the parked
 * item, or its parker sees `completed`.) */
static void complete(pymic_stream *stream, uint64_t seq)
{
    pymic_store_and_notify(&stream->done_q, &stream->completed, seq);
    if (atomic_load_explicit(&pymic_parked_count, memory_order_seq_cst) > 0)
        pymic_parked_poll();
}

/* ------------------------------------------------------------------
 * Completion out of order
 *
 * A backend's copy or invoke may leave its command in flight and complete
 * it later, from any thread (pymic_command_complete); meanwhile the worker
 * goes on submitting the next invokes and copies (see worker_main).  So
 * commands may finish in any order, but `completed` -- what every wait,
 * use list, parked release and ring slot is keyed on -- must still mean
 * "every command up to here has run".  A command that finishes while one
 * before it has not is marked `finished` in its slot; whoever completes
 * the oldest outstanding command advances `completed` over every finished
 * one after it.  complete_lock serialises these advances.  A command that
 * finishes when every one before it has completed (always, on a backend
 * that never leaves one in flight) is published at once without the
 * lock: nobody else can be advancing past it, since only its own finish
 * would mark its slot.
 * ------------------------------------------------------------------ */

/* Record or wait `seq`, handed to the backend, is passed by `completed`
 * (complete_lock held).  A record's failure copy and `done` happen here,
 * in stream order, so a host-side wait or event sync sees every command
 * before it done. */
static void finish_on_device(pymic_stream *stream, pymic_command *cmd, uint64_t seq)
{
    cmd->on_device = 0;
    if (cmd->kind == PYMIC_CMD_RECORD)
        pymic_mark_execute_record(stream, cmd->u.mark, seq);
    else
        pymic_mark_release(cmd->u.mark); /* the wait's reference */
}

/* A timed invoke the backend left in flight has completed (complete_lock
 * held): its length, from its submission or the completion of the one
 * before it, whichever is later, is what the stream learns of the kernel
 * -- so a kernel that only ever runs in flight (the MPI device's worker
 * leaves invokes in flight) is known short all the same, and a syncing
 * thread that may run only quick commands (a Python sync) runs it. */
static void note_in_flight_length(pymic_stream *stream, pymic_command *cmd)
{
    uint64_t now = pymic_now_ns();
    uint64_t from = cmd->submitted_ns > stream->in_flight_done_ns ? cmd->submitted_ns
                                                                  : stream->in_flight_done_ns;
    cmd->submitted_ns = 0;
    stream->in_flight_done_ns = now;
    note_kernel_ns(stream, cmd->u.call.handle, now - from);
}

void pymic_command_complete(pymic_stream *stream, uint64_t seq)
{
    /* Once `completed` passes the stream's last command its worker may
     * run STOP and the stream go: hold it until this call is done with
     * it.  (It cannot go before: its last command has not completed.) */
    pymic_stream_retain(stream);
    pthread_mutex_lock(&stream->complete_lock);
    pymic_command *cmd = slot_of(stream->ring, seq);
    if (cmd->submitted_ns)
        note_in_flight_length(stream, cmd);
    atomic_store_explicit(&cmd->finished, 1, memory_order_relaxed);
    uint64_t before = atomic_load_explicit(&stream->completed, memory_order_relaxed);
    uint64_t upto = before;
    for (;;) {
        pymic_command *next = slot_of(stream->ring, upto + 1);
        if (!atomic_load_explicit(&next->finished, memory_order_relaxed))
            break;
        atomic_store_explicit(&next->finished, 0, memory_order_relaxed);
        upto++;
        /* A record or wait the backend carried out: its mark's part, now
         * that every command before it has completed. */
        if (next->on_device)
            finish_on_device(stream, next, upto);
    }
    if (upto > before)
        pymic_store_and_notify(&stream->done_q, &stream->completed, upto);
    pthread_mutex_unlock(&stream->complete_lock);
    if (upto > before && atomic_load_explicit(&pymic_parked_count, memory_order_seq_cst) > 0)
        pymic_parked_poll();
    pymic_stream_release(stream);
}

/* Command `seq` finished on the thread that ran it. */
static inline void finish(pymic_stream *stream, uint64_t seq)
{
    if (__builtin_expect(atomic_load_explicit(&stream->completed, memory_order_acquire) ==
                             seq - 1,
                         1))
        complete(stream, seq);
    else
        pymic_command_complete(stream, seq);
}

/* Run claimed command `seq` and publish its completion, unless the
 * backend left it in flight. */
static void run_claimed(pymic_stream *stream, uint64_t seq, bool on_worker)
{
    pymic_command *cmd = slot_of(stream->ring, seq);
    bool invoke = cmd->kind == PYMIC_CMD_INVOKE;
    uint64_t start = invoke && time_this_run(stream, cmd->u.call.handle) ? pymic_now_ns() : 0;
    /* Before it is submitted: a backend may complete it on another thread
     * at once. */
    cmd->submitted_ns = start;
    uint64_t traced = pymic_trace_exec_begin(stream, seq);
    int result = PYMIC_COMMAND_DONE;
    bool hosts = invoke && stream->ops->release_thread;
    if ((cmd->kind == PYMIC_CMD_INVOKE || cmd->kind == PYMIC_CMD_COPY) &&
        pymic_stream_skips(stream, seq)) {
        start = 0; /* not run: what it depends on failed (failure.c) */
    } else if (on_worker) {
        worker_hosted_kernel |= hosts;
        result = pymic_command_execute(stream, cmd, seq);
    } else {
        caller_hosted_kernel |= hosts;
        result = stream->ops->run_on_caller ? stream->ops->run_on_caller(stream, cmd, seq)
                                            : pymic_command_execute(stream, cmd, seq);
    }
    /* A command in flight: its trace slice is its submission, and its
     * length is taken when it completes (note_in_flight_length). */
    if (result == PYMIC_COMMAND_DONE)
        cmd->submitted_ns = 0; /* (timed here, not by its completion) */
    if (start && result == PYMIC_COMMAND_DONE)
        note_kernel_ns(stream, cmd->u.call.handle, pymic_now_ns() - start);
    pymic_trace_exec_end(stream, seq, traced);
    if (result == PYMIC_COMMAND_DONE)
        finish(stream, seq);
}

/* Let go of what running kernels left on this thread (the host: its
 * OpenMP pool). */
static void release_thread(pymic_stream *stream)
{
    if (stream->ops->release_thread)
        stream->ops->release_thread();
}

/* Wait until every command up to `target` has completed: by polling the
 * backend if it has a poll (it completes commands only when asked), else
 * by sleeping on the counter. */
static void wait_completed(pymic_stream *stream, uint64_t target)
{
    if (atomic_load_explicit(&stream->completed, memory_order_acquire) >= target)
        return;
    if (stream->ops->poll) {
        while (atomic_load_explicit(&stream->completed, memory_order_acquire) < target)
            stream->ops->poll(stream);
        return;
    }
    pymic_wait_geq(&stream->done_q, &stream->completed, target);
}

/* A lazy worker: nap until a command has waited a whole nap unclaimed
 * while nobody ran anything (then laziness ends: nobody syncs soon) or a
 * kick comes.
 * After an idle while it dozes without a timer, still lazy: a publish
 * wakes it to nap again, so an idle stream costs nothing and the first
 * command after the pause is still left to a syncing caller. */
static void worker_nap(pymic_stream *stream)
{
    uint64_t seen_enqueued = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    uint64_t claimed_before = atomic_load_explicit(&stream->claimed, memory_order_acquire);
    uint64_t seen_claimed = claimed_before;
    for (int idle = 0;;) {
        bool deep = idle >= NAPS_BEFORE_SLEEP;
        if (worker_hosted_kernel &&
            (deep || atomic_load_explicit(&stream->claimed, memory_order_acquire) !=
                         claimed_before)) {
            /* Callers run the kernels now, each hosting its own OpenMP
             * team.  libgomp cuts every team's spinning to almost nothing
             * once its teams hold more threads than there are CPUs, so an
             * idle pool here would slow the callers' teams down: release
             * it. */
            release_thread(stream);
            worker_hosted_kernel = false;
        }
        uint32_t word = atomic_load_explicit(&stream->work_q.word, memory_order_seq_cst);
        uint32_t kicks = atomic_load_explicit(&stream->work_q.kicks, memory_order_seq_cst);
        if (!atomic_load_explicit(&stream->lazy, memory_order_relaxed))
            return;
        if (deep)
            pymic_doze(&stream->work_q, word, &stream->enqueued, seen_enqueued + 1,
                       UINT64_MAX, 1);
        else
            pymic_doze(&stream->work_q, word, NULL, 0, NAP_NS, 0);
        if (atomic_load_explicit(&stream->work_q.kicks, memory_order_acquire) != kicks)
            return; /* somebody waits for the worker */
        uint64_t enqueued = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
        uint64_t claimed = atomic_load_explicit(&stream->claimed, memory_order_acquire);
        if (deep) {
            idle = 0;
        } else if (claimed < seen_enqueued && claimed == seen_claimed) {
            /* A command waited a whole nap and nobody made progress. */
            atomic_store_explicit(&stream->lazy, 0, memory_order_relaxed);
            return;
        } else {
            idle = enqueued == seen_enqueued ? idle + 1 : 0;
        }
        seen_enqueued = enqueued;
        seen_claimed = claimed;
    }
}

/* Nothing to claim: wait until there may be. */
static void worker_wait(pymic_stream *stream)
{
    if (stream->ops->poll &&
        atomic_load_explicit(&stream->completed, memory_order_acquire) <
            atomic_load_explicit(&stream->claimed, memory_order_acquire)) {
        /* Commands in flight on a backend that completes them only when
         * polled: nobody may be waiting for them (a parked free is), so
         * the worker polls until they are done or more work comes. */
        stream->ops->poll(stream);
        return;
    }
    if (atomic_load_explicit(&stream->lazy, memory_order_relaxed)) {
        worker_nap(stream); /* the callers run the commands */
        return;
    }
    uint64_t claimed = atomic_load_explicit(&stream->claimed, memory_order_acquire);
    if (atomic_load_explicit(&stream->enqueued, memory_order_acquire) > claimed) {
        /* A syncing thread runs command `claimed`; the next may follow.
         * (Not polled: that thread waits for it, polling if need be.) */
        pymic_wait_geq_spin(&stream->done_q, &stream->completed, claimed, 0, UINT64_MAX);
        return;
    }
    uint64_t spin_ns = atomic_load_explicit(&pymic_global.spin_ns, memory_order_relaxed);
    if (pymic_spin_geq(&stream->enqueued, claimed + 1, spin_ns, &stream->lazy))
        return;
    if (atomic_load_explicit(&stream->lazy, memory_order_relaxed))
        worker_nap(stream);
    else
        pymic_wait_geq_spin(&stream->work_q, &stream->enqueued, claimed + 1, 0, UINT64_MAX);
}

static void unlink_from_device(pymic_stream *stream, bool orphan_failure)
{
    pymic_device *d = stream->device;
    pthread_mutex_lock(&d->lock);
    /* In the same step as leaving the list, so a device sync sees the
     * failure either on the stream or among the orphans. */
    if (orphan_failure)
        pymic_stream_orphan_failure(stream);
    for (pymic_stream **link = &d->streams; *link; link = &(*link)->next_in_device) {
        if (*link == stream) {
            *link = stream->next_in_device;
            break;
        }
    }
    for (pymic_stream **link = &d->busy; *link; link = &(*link)->next_busy) {
        if (*link == stream) {
            *link = stream->next_busy;
            atomic_store_explicit(&stream->busy_listed, 0, memory_order_relaxed);
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
}

/* The worker's last act: leave the device's lists (device syncs no
 * longer see the stream) and drop the owner's reference that destroy
 * handed it. */
static void worker_finish(pymic_stream *stream)
{
    stream->ops->worker_exit(stream);
    unlink_from_device(stream, true);
    /* Only once the stream is off the device's lists: a trace start that
     * frees retired buffers and then arms every listed stream must never
     * find a listed stream whose buffer it has just freed. */
    pymic_trace_stream_exit(stream);
    /* After STOP only a device sync that took the stream before it left
     * the lists may still look at the ring (the handle died at destroy);
     * the references that may keep the stream a while longer (use lists,
     * parked releases) only read its counters. */
    pymic_stream_drop_ring(stream);
    pymic_stream_release(stream);
}

void pymic_stream_drop_ring(pymic_stream *stream)
{
    if (atomic_fetch_sub_explicit(&stream->ring_users, 1, memory_order_acq_rel) != 1)
        return;
    free(stream->ring);
    stream->ring = NULL;
}

/* Commands a worker keeps in flight at most (fewer than the ring's
 * slots, so producers still find room while the window is full). */
#define IN_FLIGHT_WINDOW 64u

/* A record or an event wait that the backend carries out on the device
 * (backend.h: record, wait_mark): like an invoke, not a fence. */
static bool goes_to_device(pymic_stream *stream, const pymic_command *cmd)
{
    if (cmd->kind == PYMIC_CMD_RECORD)
        return stream->ops->record != NULL;
    return cmd->kind == PYMIC_CMD_WAIT_EVENT && pymic_mark_device_resolves(stream, cmd->u.mark);
}

void pymic_stream_fence(pymic_stream *stream, uint64_t seq)
{
    wait_completed(stream, seq - 1);
}

pymic_command *pymic_stream_command(pymic_stream *stream, uint64_t seq)
{
    return slot_of(stream->ring, seq);
}

/* The worker runs its claims in order.  Invokes and copies a backend
 * leaves in flight do not stop it: it submits the next ones, up to
 * IN_FLIGHT_WINDOW commands ahead of `completed`.  FREE, RECORD,
 * WAIT_EVENT and STOP are fences: each runs once every command before it
 * has completed -- memory goes back after its last use has run, an event
 * marks the point when everything before it has run, and an event wait
 * holds back what follows it (resolved here, on the host: the worker
 * waits for the mark, then submits the next command) -- except a RECORD,
 * and a wait on a mark of the same device, that the backend takes
 * (goes_to_device): those are submitted like invokes, and the device
 * orders the streams.  On a backend that completes every command before
 * its call returns, none of this ever waits. */
static void *worker_main(void *arg)
{
    pymic_stream *stream = arg;
    uint64_t own_end = 0;
    for (;;) {
        uint64_t end;
        uint64_t seq =
            try_claim(stream, UINT64_MAX, RUN_WORKER_ONLY, CLAIM_BATCH, own_end, &end);
        if (!seq) {
            worker_wait(stream);
            continue;
        }
        own_end = end;
        for (; seq <= end; seq++) {
            const pymic_command *cmd = slot_of(stream->ring, seq);
            int kind = cmd->kind;
            if (kind != PYMIC_CMD_INVOKE && kind != PYMIC_CMD_COPY &&
                !goes_to_device(stream, cmd))
                wait_completed(stream, seq - 1);
            else if (seq > IN_FLIGHT_WINDOW)
                wait_completed(stream, seq - IN_FLIGHT_WINDOW);
            /* STOP is the stream's last command: it ends every batch. */
            if (kind == PYMIC_CMD_STOP) {
                uint64_t traced = pymic_trace_exec_begin(stream, seq);
                pymic_trace_exec_end(stream, seq, traced);
                complete(stream, seq);
                worker_finish(stream);
                return NULL;
            }
            run_claimed(stream, seq, true);
        }
    }
}

/* Wait for `completed` to reach `target` while others run the commands: as
 * pymic_wait_geq_spin, except that on a backend with a poll op this
 * thread drives the completion itself, polling until then (the worker is
 * kicked first: it may have commands to submit before the target).  0 on
 * timeout. */
static int wait_for_runner(pymic_stream *stream, uint64_t target, uint64_t spin_ns,
                           uint64_t deadline)
{
    if (!stream->ops->poll)
        return pymic_wait_geq_spin(&stream->done_q, &stream->completed, target, spin_ns,
                                   deadline);
    /* A backend that completes commands only when polled: this thread
     * polls for the spin window (PYMIC_SPIN_NS, whatever `spin_ns` says:
     * the commands run on the device's side of a poll, not on this
     * thread's core), so a quick answer is taken here at once.  Then it
     * sleeps until the worker has completed the commands: the worker
     * polls whenever commands are in flight (worker_wait; the kick wakes
     * a napping one), pacing its polls as the backend does.  A second
     * poller would only double the wake-ups that take a core from the
     * kernel (on this node) or from the host's own work: a Python sync
     * that polled through a 20 ms dgemm on an MPI device on this node
     * yielded its core thousands of times a second. */
    pymic_kick(&stream->work_q);
    uint64_t poll_ns = atomic_load_explicit(&pymic_global.spin_ns, memory_order_relaxed);
    uint64_t polls_until = poll_ns ? pymic_now_ns() + poll_ns : 0;
    for (;;) {
        if (atomic_load_explicit(&stream->completed, memory_order_acquire) >= target)
            return 1;
        uint64_t now = pymic_now_ns();
        if (deadline != UINT64_MAX && now >= deadline)
            return 0;
        if (now >= polls_until)
            break;
        stream->ops->poll(stream);
    }
    return pymic_wait_geq_spin(&stream->done_q, &stream->completed, target, 0, deadline);
}

/* PYMIC_CALLER_RUNS=0 turns caller runs off on every device (each command
 * then runs on its stream's worker); read once, here, so that no backend
 * reads it on its own. */
static pthread_once_t caller_runs_once = PTHREAD_ONCE_INIT;
static bool caller_runs_on = true;

static void read_caller_runs(void)
{
    const char *text = getenv("PYMIC_CALLER_RUNS");
    caller_runs_on = !(text && strcmp(text, "0") == 0);
}

static bool caller_runs_enabled(void)
{
    pthread_once(&caller_runs_once, read_caller_runs);
    return caller_runs_on;
}

/* Wait until command `target` has completed, running on this thread the
 * commands `runs` allows where the backend lets it (see the top of this
 * section).  0 on timeout; deadline 0 waits no longer than it takes to
 * run what it may. */
static int stream_wait(pymic_stream *stream, uint64_t target, uint64_t deadline, int runs)
{
    if (atomic_load_explicit(&stream->completed, memory_order_acquire) >= target)
        return 1;
    bool may_run = runs != PYMIC_WAIT_RUNS_NOTHING && caller_runs_enabled() &&
                   stream->ops->caller_may_run && stream->ops->caller_may_run(stream->device);
    unsigned char min_class = runs == PYMIC_WAIT_RUNS_ANY ? RUN_ANY : RUN_QUICK;
    for (;;) {
        /* One command per claim: this thread runs it itself, so no other
         * core reads the counters it writes, and a timed wait looks at its
         * deadline after each. */
        uint64_t end;
        uint64_t seq = may_run ? try_claim(stream, target, min_class, 1, UINT64_MAX, &end) : 0;
        if (seq) {
            if (!atomic_load_explicit(&stream->lazy, memory_order_relaxed))
                atomic_store_explicit(&stream->lazy, 1, memory_order_relaxed);
            run_claimed(stream, seq, false);
            if (atomic_load_explicit(&stream->completed, memory_order_acquire) >= target)
                return 1;
            if (deadline != UINT64_MAX && pymic_now_ns() >= deadline)
                return 0;
            continue;
        }
        uint64_t claimed = atomic_load_explicit(&stream->claimed, memory_order_acquire);
        uint64_t completed = atomic_load_explicit(&stream->completed, memory_order_acquire);
        if (completed >= target)
            return 1;
        /* Somebody runs a command.  On the device's own cores a spinning
         * waiter would take a core from that command's OpenMP team: sleep
         * at once.  Elsewhere spin as usual; a poll does not wait. */
        uint64_t spin_ns = may_run || deadline == 0
                               ? 0
                               : atomic_load_explicit(&pymic_global.spin_ns, memory_order_relaxed);
        if (claimed > completed) {
            /* Waiting for a short command we could have run ourselves:
             * leave the next ones to us.  (Long ones stay the worker's, so
             * a program that overlaps them with its own work keeps doing
             * so.) */
            unsigned char running =
                atomic_load_explicit(&slot_of(stream->ring, completed + 1)->run_class,
                                     memory_order_relaxed);
            if (may_run && running == RUN_QUICK &&
                !atomic_load_explicit(&stream->lazy, memory_order_relaxed))
                atomic_store_explicit(&stream->lazy, 1, memory_order_relaxed);
            if (caller_hosted_kernel) {
                /* The worker runs kernels (and their teams) now: this
                 * thread's idle OpenMP pool would only make libgomp cut
                 * the spinning of every team (see worker_nap). */
                release_thread(stream);
                caller_hosted_kernel = false;
            }
            /* The runner goes on with later commands, or a sleeping waiter
             * kicks the worker (done_q.kick_on_sleep): wait for the end. */
            return wait_for_runner(stream, target, spin_ns, deadline);
        }
        if (may_run && atomic_load_explicit(&slot_of(stream->ring, claimed + 1)->run_class,
                                            memory_order_relaxed) >= min_class)
            continue; /* lost a race for it, and it is free again: look again */
        /* The next command is not started and not ours to run: the worker's. */
        pymic_kick(&stream->work_q);
        return wait_for_runner(stream, target, spin_ns, deadline);
    }
}

int pymic_stream_wait_until(pymic_stream *stream, uint64_t target, uint64_t deadline, int runs)
{
    return stream_wait(stream, target, deadline, runs);
}

void pymic_stream_retain(pymic_stream *stream)
{
    atomic_fetch_add_explicit(&stream->refs, 1, memory_order_relaxed);
}

void pymic_stream_release(pymic_stream *stream)
{
    if (atomic_fetch_sub_explicit(&stream->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* An inherited stream's lock may have been held by a parent thread at
     * the fork: it is never touched again, only its memory goes. */
    if (!pymic_stream_inherited(stream)) {
        pthread_mutex_destroy(&stream->enqueue_lock);
        pthread_mutex_destroy(&stream->failure_lock);
        pthread_mutex_destroy(&stream->complete_lock);
    }
    free(stream->ring);
    free(stream);
}

bool pymic_stream_inherited(const pymic_stream *stream)
{
    return pymic_generation_inherited(stream->fork_generation);
}

int pymic_stream_check(const pymic_stream *stream, const char *action)
{
    if (!stream)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s a NULL stream", action);
    if (pymic_stream_inherited(stream))
        return pymic_fail(PYMIC_ERR_SYSTEM,
                          "%s " PYMIC_STREAM_FMT ": the stream was created before fork() and "
                          "its worker thread exists only in the parent process",
                          action, PYMIC_STREAM_ARGS(stream));
    return PYMIC_OK;
}

int pymic_stream_create(int device, pymic_stream **stream_out)
{
    int status;
    pymic_device *d = pymic_device_open(device, "stream creation", &status);
    if (!d)
        return status;
    if (!stream_out)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "pymic_stream_create: device %d: stream output is NULL", device);
    pymic_stream *stream = aligned_alloc(64, sizeof *stream);
    pymic_command *ring = calloc(PYMIC_RING_SLOTS, sizeof *ring);
    if (!stream || !ring) {
        free(stream);
        free(ring);
        return pymic_fail(PYMIC_ERR_SYSTEM,
                          "stream creation on device %d: out of host memory", device);
    }
    memset(stream, 0, sizeof *stream);
    stream->device = d;
    stream->ops = d->ops;
    stream->ring = ring;
    stream->fork_generation = atomic_load(&pymic_global.fork_generation);
    stream->number = atomic_fetch_add_explicit(&d->streams_created, 1, memory_order_relaxed) + 1;
    atomic_init(&stream->refs, 1);
    atomic_init(&stream->ring_users, 1); /* the worker's */
    pthread_mutex_init(&stream->enqueue_lock, NULL);
    pthread_mutex_init(&stream->failure_lock, NULL);
    pthread_mutex_init(&stream->complete_lock, NULL);
    stream->done_q.kick_on_sleep = &stream->work_q;
    /* Listed before the worker starts: the worker unlinks it at STOP. */
    pthread_mutex_lock(&d->lock);
    stream->next_in_device = d->streams;
    d->streams = stream;
    pthread_mutex_unlock(&d->lock);
    status = d->ops->start_worker(stream, worker_main);
    if (status != PYMIC_OK) {
        unlink_from_device(stream, false);
        pymic_stream_release(stream);
        char prefix[48];
        snprintf(prefix, sizeof prefix, "stream creation on device %d", device);
        return pymic_fail_reworded(status, "pymic_stream_create", prefix);
    }
    /* Nobody joins a worker: it ends on its own after STOP. */
    pthread_detach(stream->worker);
    pymic_trace_stream_created(stream);
    *stream_out = stream;
    return PYMIC_OK;
}

int pymic_stream_destroy(pymic_stream *stream)
{
    if (!stream)
        return pymic_stream_check(stream, "destroying");
    if (pymic_stream_inherited(stream)) {
        /* No worker here to hand the reference to. */
        unlink_from_device(stream, false);
        pymic_stream_release(stream);
        return PYMIC_OK;
    }
    /* Two-phase, never blocking on the queue: STOP runs after everything
     * queued before it; the worker then leaves the device's list and drops
     * the owner's reference (worker_finish).  Only waiting for ring room
     * can block here, as for any enqueue. */
    /* A reference of our own for the publish: the worker may run STOP and
     * drop the owner's reference before publish has woken it and let go
     * of the stream's lock and wait queue. */
    pymic_stream_retain(stream);
    pymic_command *cmd = pymic_stream_reserve(stream);
    cmd->kind = PYMIC_CMD_STOP;
    pymic_stream_publish(stream);
    pymic_stream_release(stream);
    return PYMIC_OK;
}

int pymic_stream_sync(pymic_stream *stream)
{
    int status = pymic_stream_check(stream, "sync of");
    if (status != PYMIC_OK)
        return status;
    uint64_t target = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    uint64_t traced = pymic_trace_wait_begin();
    stream_wait(stream, target, UINT64_MAX, PYMIC_WAIT_RUNS_ANY);
    pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_STREAM, stream->device->id, stream, target,
                         PYMIC_OK);
    return pymic_stream_take_failure(stream, target, "sync of");
}

int pymic_stream_query(pymic_stream *stream)
{
    int status = pymic_stream_check(stream, "query of");
    if (status != PYMIC_OK)
        return status;
    uint64_t target = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    if (atomic_load_explicit(&stream->completed, memory_order_acquire) < target) {
        /* Somebody polls: a napping worker should not wait for its timer. */
        if (atomic_load_explicit(&stream->lazy, memory_order_relaxed))
            pymic_kick(&stream->work_q);
        return 0;
    }
    status = pymic_stream_take_failure(stream, target, "query of");
    return status == PYMIC_OK ? 1 : status;
}

int pymic_stream_device(const pymic_stream *stream)
{
    if (!stream)
        return pymic_stream_check(stream, "device of");
    return stream->device->id;
}

int pymic_stream_number(const pymic_stream *stream)
{
    if (!stream)
        return pymic_stream_check(stream, "number of");
    return stream->number;
}

uint64_t pymic_stream_last_enqueued(const pymic_stream *stream)
{
    if (!stream)
        return 0;
    return atomic_load_explicit(&((pymic_stream *)stream)->enqueued, memory_order_acquire);
}

uint64_t pymic_stream_completed(const pymic_stream *stream)
{
    if (!stream)
        return 0;
    return atomic_load_explicit(&((pymic_stream *)stream)->completed, memory_order_acquire);
}

int pymic_stream_capacity(const pymic_stream *stream)
{
    if (!stream)
        return pymic_stream_check(stream, "capacity of");
    /* pymic_stream_reserve lets sequence number s in once completed >=
     * s - PYMIC_RING_SLOTS: all PYMIC_RING_SLOTS slots may hold commands
     * that have not completed, the running one included. */
    return (int)PYMIC_RING_SLOTS;
}

static int wait_seq(pymic_stream *stream, uint64_t seq, uint64_t timeout_ns, int runs,
                    const char *op)
{
    int status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    status = pymic_wait_runs_check(runs, op);
    if (status != PYMIC_OK)
        return status;
    uint64_t last = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    if (seq > last)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s " PYMIC_STREAM_FMT ": command %llu was never enqueued (the last "
                          "is %llu)",
                          op, PYMIC_STREAM_ARGS(stream), (unsigned long long)seq,
                          (unsigned long long)last);
    uint64_t deadline = pymic_deadline(timeout_ns);
    uint64_t traced = pymic_trace_wait_begin();
    status = stream_wait(stream, seq, deadline, runs) ? PYMIC_OK : PYMIC_ERR_TIMEOUT;
    pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_STREAM, stream->device->id, stream, seq, status);
    if (status != PYMIC_OK)
        return PYMIC_ERR_TIMEOUT; /* expected by timed callers: no message */
    return pymic_stream_take_failure(stream, seq, op);
}

int pymic_stream_wait_seq(pymic_stream *stream, uint64_t seq)
{
    return wait_seq(stream, seq, UINT64_MAX, PYMIC_WAIT_RUNS_ANY, "sync of");
}

int pymic_stream_wait_seq_timeout(pymic_stream *stream, uint64_t seq, uint64_t timeout_ns)
{
    return wait_seq(stream, seq, timeout_ns, pymic_wait_runs_for_timeout(timeout_ns), "sync of");
}

int pymic_stream_wait_seq_runs(pymic_stream *stream, uint64_t seq, uint64_t timeout_ns, int runs)
{
    return wait_seq(stream, seq, timeout_ns, runs, "sync of");
}
