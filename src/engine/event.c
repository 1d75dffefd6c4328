/*
 * event.c -- events: markers recorded in streams.
 *
 * Every record makes a new *mark*: the point in one stream's order that
 * the record captured.  The event points at its newest mark only.  A wait
 * (stream wait_event, event sync, query) takes the mark that was newest
 * when it was called and holds a reference to it, so re-recording the
 * event later never changes what an earlier wait waits for -- CUDA's rule.
 *
 * Destroying an event drops the owner's reference to its newest mark and
 * returns at once; queued RECORD and WAIT commands hold their own
 * references, so the last of them frees the mark (cuEventDestroy, uv_close).
 *
 * One lock for all events guards the "newest mark" pointers: it is held
 * for a few instructions, and a single lock is what the fork handlers can
 * take in a fixed order.
 */
#include "engine.h"

#include <stdlib.h>

struct pymic_event {
    pymic_mark *latest; /* guarded by event_lock; NULL until recorded */
};

static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;

/* Numbers of marks recorded on devices that resolve event waits
 * themselves (pymic_mark.backend_id). */
static _Atomic uint64_t marks_numbered;

static int check_event(const pymic_event *event, const char *op)
{
    if (!event)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: event is NULL", op);
    return PYMIC_OK;
}

int pymic_event_create(pymic_event **event_out)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    if (!event_out)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_event_create: output is NULL");
    pymic_event *event = calloc(1, sizeof *event);
    if (!event)
        return pymic_fail(PYMIC_ERR_SYSTEM, "pymic_event_create: out of host memory");
    *event_out = event;
    return PYMIC_OK;
}

void pymic_mark_release(pymic_mark *mark)
{
    if (mark && atomic_fetch_sub_explicit(&mark->refs, 1, memory_order_acq_rel) == 1) {
        /* No command and no wait holds it any more: the device may forget
         * its point too. */
        if (mark->backend_id && mark->owner->ops->mark_forget)
            mark->owner->ops->mark_forget(mark->owner, mark->backend_id);
        free(mark->failure);
        free(mark);
    }
}

int pymic_event_destroy(pymic_event *event)
{
    int status = check_event(event, "destroying an event");
    if (status != PYMIC_OK)
        return status;
    pymic_mark_release(event->latest); /* nobody else reaches the event now */
    free(event);
    return PYMIC_OK;
}

/* The event's newest mark with a reference for the caller, or NULL with
 * NOT_RECORDED recorded for operation `op`. */
static pymic_mark *take_latest(pymic_event *event, const char *op)
{
    pthread_mutex_lock(&event_lock);
    pymic_mark *mark = event->latest;
    if (mark)
        atomic_fetch_add_explicit(&mark->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&event_lock);
    if (!mark)
        pymic_fail(PYMIC_ERR_NOT_RECORDED, "%s: the event was never recorded", op);
    return mark;
}

/* A pending mark that only a thread of the parent process could complete:
 * waiting for it here would never end. */
static int check_reachable(const pymic_mark *mark, const char *op)
{
    if (atomic_load_explicit(&mark->done, memory_order_acquire) == 0 &&
        pymic_generation_inherited(mark->fork_generation))
        return pymic_fail(PYMIC_ERR_SYSTEM,
                          "%s: the event was recorded on a stream of device %d before "
                          "fork(); its worker exists only in the parent process",
                          op, mark->device);
    return PYMIC_OK;
}

int pymic_event_record(pymic_event *event, pymic_stream *stream)
{
    static const char op[] = "event record on";
    int status = check_event(event, "event record");
    if (status == PYMIC_OK)
        status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    pymic_mark *mark = calloc(1, sizeof *mark);
    if (!mark)
        return pymic_fail(PYMIC_ERR_SYSTEM, "%s " PYMIC_STREAM_FMT ": out of host memory", op,
                          PYMIC_STREAM_ARGS(stream));
    atomic_init(&mark->refs, 2); /* the RECORD command + the event's pointer */
    mark->fork_generation = stream->fork_generation;
    mark->device = stream->device->id;
    mark->trace_number = pymic_trace_event_record_number();
    if (stream->ops->record) {
        /* Recorded through the backend: waits on this device may be
         * resolved there (stream.c). */
        mark->owner = stream->device;
        mark->owner_generation = atomic_load(&stream->device->generation);
        mark->backend_id = atomic_fetch_add_explicit(&marks_numbered, 1,
                                                     memory_order_relaxed) + 1;
    }
    pymic_command *cmd = pymic_stream_reserve(stream);
    cmd->kind = PYMIC_CMD_RECORD;
    cmd->u.mark = mark;
    /* Swapped while the slot is reserved: two threads recording the same
     * event on one stream leave it pointing at the later command. */
    pthread_mutex_lock(&event_lock);
    pymic_mark *old = event->latest;
    event->latest = mark;
    pthread_mutex_unlock(&event_lock);
    pymic_stream_publish(stream);
    pymic_mark_release(old);
    return PYMIC_OK;
}

void pymic_mark_execute_record(pymic_stream *stream, pymic_mark *mark, uint64_t seq)
{
    /* A command before this record failed (and was not reported yet):
     * waits on the event report it too.  (Or the record itself, when its
     * backend could not carry it to the device.) */
    mark->failure = pymic_stream_copy_failure(stream, seq, &mark->failure_status);
    mark->stamp_ns = pymic_now_ns();
    pymic_store_and_notify(&mark->q, &mark->done, 1);
    pymic_mark_release(mark);
}

int pymic_stream_wait_event(pymic_stream *stream, pymic_event *event)
{
    static const char op[] = "wait_event";
    int status = check_event(event, op);
    if (status == PYMIC_OK)
        status = pymic_stream_check(stream, "wait_event on");
    if (status != PYMIC_OK)
        return status;
    pymic_mark *mark = take_latest(event, op);
    if (!mark)
        return PYMIC_ERR_NOT_RECORDED;
    status = check_reachable(mark, op);
    if (status != PYMIC_OK) {
        pymic_mark_release(mark);
        return status;
    }
    pymic_command *cmd = pymic_stream_reserve(stream);
    cmd->kind = PYMIC_CMD_WAIT_EVENT;
    cmd->u.mark = mark; /* the reference goes with the command */
    pymic_stream_publish(stream);
    return PYMIC_OK;
}

/* Wait `seq` of `stream` waited for `mark`, which is done. */
static void fail_if_failed(pymic_stream *stream, const pymic_mark *mark, uint64_t seq)
{
    /* The record came after a failure on its stream: what this stream
     * does next depends on the failed work, so it fails too (and skips
     * its kernels and copies until a sync reports it). */
    if (mark->failure)
        pymic_stream_fail_status(stream, seq, mark->failure_status,
                                 "%s (this stream waited for an event recorded after that "
                                 "on device %d)",
                                 mark->failure, mark->device);
}

void pymic_mark_execute_wait(pymic_stream *stream, pymic_mark *mark, uint64_t seq)
{
    pymic_wait_geq(&mark->q, &mark->done, 1);
    fail_if_failed(stream, mark, seq);
    pymic_mark_release(mark);
}

bool pymic_mark_device_resolves(const pymic_stream *stream, const pymic_mark *mark)
{
    return stream->ops->wait_mark && mark->owner == stream->device &&
           mark->owner_generation == atomic_load(&stream->device->generation) &&
           atomic_load_explicit(&mark->done, memory_order_acquire) == 0;
}

void pymic_mark_wait_resolved(pymic_stream *stream, uint64_t seq, bool failed_on_device)
{
    /* The command (in flight, not completed) still holds its reference. */
    pymic_mark *mark = pymic_stream_command(stream, seq)->u.mark;
    /* The device reached the record before it answered this wait, so the
     * record's own answer is on its way to the host: this waits for that
     * stream's poll (its worker polls while it has commands in flight).
     * So once this stream has passed the wait, the event is done here too
     * (as on every device: what waited for it has run, so has it). */
    pymic_wait_geq(&mark->q, &mark->done, 1);
    if (mark->failure)
        fail_if_failed(stream, mark, seq);
    else if (failed_on_device)
        /* The failure was reported on the recording stream between its
         * record's submission and its answer: the device skipped what
         * followed all the same, so this stream reports why. */
        pymic_stream_fail_status(stream, seq, PYMIC_ERR_SYSTEM,
                                 "event wait (command %llu): the event was recorded on device "
                                 "%d after a command that failed there; what follows the wait "
                                 "on this stream was not run",
                                 (unsigned long long)seq, mark->device);
}

static int event_sync(pymic_event *event, uint64_t timeout_ns, const char *op)
{
    int status = check_event(event, op);
    if (status != PYMIC_OK)
        return status;
    pymic_mark *mark = take_latest(event, op);
    if (!mark)
        return PYMIC_ERR_NOT_RECORDED;
    status = check_reachable(mark, op);
    uint64_t traced = pymic_trace_wait_begin();
    if (status == PYMIC_OK && !pymic_wait_geq_timeout(&mark->q, &mark->done, 1, timeout_ns))
        status = PYMIC_ERR_TIMEOUT;
    pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_EVENT_SYNC, mark->device, NULL,
                         mark->trace_number, status);
    if (status == PYMIC_OK && mark->failure)
        status = pymic_fail(mark->failure_status, "%s: %s", op, mark->failure);
    pymic_mark_release(mark);
    return status;
}

int pymic_event_sync(pymic_event *event)
{
    return event_sync(event, UINT64_MAX, "sync of an event");
}

int pymic_event_sync_timeout(pymic_event *event, uint64_t timeout_ns)
{
    return event_sync(event, timeout_ns, "sync of an event");
}

int pymic_event_query(pymic_event *event)
{
    static const char op[] = "query of an event";
    int status = check_event(event, op);
    if (status != PYMIC_OK)
        return status;
    pymic_mark *mark = take_latest(event, op);
    if (!mark)
        return PYMIC_ERR_NOT_RECORDED;
    int done = atomic_load_explicit(&mark->done, memory_order_acquire) != 0;
    if (done && mark->failure)
        done = pymic_fail(mark->failure_status, "%s: %s", op, mark->failure);
    pymic_mark_release(mark);
    return done;
}

int pymic_event_elapsed(pymic_event *start, pymic_event *end, double *seconds)
{
    static const char op[] = "elapsed time between events";
    if (!start || !end || !seconds)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: NULL event or output", op);
    pymic_mark *marks[2] = {take_latest(start, op), take_latest(end, op)};
    static const char *const which[2] = {"start", "end"};
    int status = PYMIC_OK;
    for (int i = 0; i < 2 && status == PYMIC_OK; i++)
        if (!marks[i])
            status = pymic_fail(PYMIC_ERR_NOT_RECORDED, "%s: the %s event was never recorded",
                                op, which[i]);
    for (int i = 0; i < 2 && status == PYMIC_OK; i++)
        if (atomic_load_explicit(&marks[i]->done, memory_order_acquire) == 0)
            status = pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                                "%s: the %s event has not completed yet", op, which[i]);
    if (status == PYMIC_OK) {
        /* Both reached on one device that stamps its marks: its clock. */
        bool on_device = marks[0]->device_stamp_ns && marks[1]->device_stamp_ns &&
                         marks[0]->owner == marks[1]->owner &&
                         marks[0]->owner_generation == marks[1]->owner_generation;
        uint64_t from = on_device ? marks[0]->device_stamp_ns : marks[0]->stamp_ns;
        uint64_t to = on_device ? marks[1]->device_stamp_ns : marks[1]->stamp_ns;
        *seconds = ((double)to - (double)from) * 1e-9;
    }
    pymic_mark_release(marks[0]);
    pymic_mark_release(marks[1]);
    return status;
}

void pymic_event_prefork(void)
{
    pthread_mutex_lock(&event_lock);
}

void pymic_event_postfork_parent(void)
{
    pthread_mutex_unlock(&event_lock);
}

void pymic_event_postfork_child(void)
{
    pthread_mutex_init(&event_lock, NULL);
}
