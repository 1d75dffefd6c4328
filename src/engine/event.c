/*
 * event.c -- events: markers recorded in streams.
 *
 * An event counts generations: each record takes the next one and the
 * worker that reaches the marker publishes it as done.  Waiting for "the
 * event as last recorded" is then waiting until done >= that generation,
 * which stays correct when the event is re-recorded meanwhile.
 *
 * Queued record and wait commands hold a reference, so destroying an event
 * while a stream still has to look at it is safe.
 */
#include "engine.h"

#include <stdlib.h>

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
    atomic_init(&event->refs, 1);
    pthread_mutex_init(&event->lock, NULL);
    *event_out = event;
    return PYMIC_OK;
}

void pymic_event_release(pymic_event *event)
{
    if (atomic_fetch_sub_explicit(&event->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&event->lock);
        free(event);
    }
}

int pymic_event_destroy(pymic_event *event)
{
    int status = check_event(event, "pymic_event_destroy");
    if (status != PYMIC_OK)
        return status;
    uint64_t target = atomic_load_explicit(&event->recorded, memory_order_acquire);
    pymic_wait_geq(&event->q, &event->done, target);
    pymic_event_release(event);
    return PYMIC_OK;
}

int pymic_event_record(pymic_event *event, pymic_stream *stream)
{
    int status = check_event(event, "pymic_event_record");
    if (status == PYMIC_OK)
        status = pymic_stream_check(stream, "pymic_event_record");
    if (status != PYMIC_OK)
        return status;
    atomic_fetch_add_explicit(&event->refs, 1, memory_order_relaxed);
    pymic_command *cmd = pymic_stream_reserve(stream);
    /* Taking the generation under the stream's enqueue lock keeps
     * generations in enqueue order within one stream. */
    uint64_t generation = atomic_fetch_add_explicit(&event->recorded, 1, memory_order_acq_rel) + 1;
    cmd->kind = PYMIC_CMD_RECORD;
    cmd->u.event.event = event;
    cmd->u.event.generation = generation;
    pymic_stream_publish(stream);
    return PYMIC_OK;
}

void pymic_event_execute_record(pymic_event *event, uint64_t generation)
{
    uint64_t now = pymic_now_ns();
    pthread_mutex_lock(&event->lock);
    if (generation > event->stamp_generation) {
        event->stamp_generation = generation;
        event->stamp_ns = now;
    }
    if (generation > atomic_load_explicit(&event->done, memory_order_relaxed))
        atomic_store_explicit(&event->done, generation, memory_order_seq_cst);
    pthread_mutex_unlock(&event->lock);
    pymic_notify(&event->q);
    pymic_event_release(event);
}

int pymic_stream_wait_event(pymic_stream *stream, pymic_event *event)
{
    static const char op[] = "pymic_stream_wait_event";
    int status = check_event(event, op);
    if (status == PYMIC_OK)
        status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    uint64_t generation = atomic_load_explicit(&event->recorded, memory_order_acquire);
    if (generation == 0)
        return pymic_fail(PYMIC_ERR_NOT_RECORDED, "%s: device %d: the event was never recorded",
                          op, stream->device->id);
    atomic_fetch_add_explicit(&event->refs, 1, memory_order_relaxed);
    pymic_command *cmd = pymic_stream_reserve(stream);
    cmd->kind = PYMIC_CMD_WAIT_EVENT;
    cmd->u.event.event = event;
    cmd->u.event.generation = generation;
    pymic_stream_publish(stream);
    return PYMIC_OK;
}

void pymic_event_execute_wait(pymic_event *event, uint64_t generation)
{
    pymic_wait_geq(&event->q, &event->done, generation);
    pymic_event_release(event);
}

static int event_sync(pymic_event *event, uint64_t timeout_ns, const char *op)
{
    int status = check_event(event, op);
    if (status != PYMIC_OK)
        return status;
    uint64_t target = atomic_load_explicit(&event->recorded, memory_order_acquire);
    if (target == 0)
        return pymic_fail(PYMIC_ERR_NOT_RECORDED, "%s: the event was never recorded", op);
    uint64_t traced = pymic_trace_wait_begin();
    status = pymic_wait_geq_timeout(&event->q, &event->done, target, timeout_ns)
                 ? PYMIC_OK
                 : PYMIC_ERR_TIMEOUT;
    pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_EVENT_SYNC, -1, NULL, target, status);
    return status;
}

int pymic_event_sync(pymic_event *event)
{
    return event_sync(event, UINT64_MAX, "pymic_event_sync");
}

int pymic_event_sync_timeout(pymic_event *event, uint64_t timeout_ns)
{
    return event_sync(event, timeout_ns, "pymic_event_sync_timeout");
}

int pymic_event_query(pymic_event *event)
{
    int status = check_event(event, "pymic_event_query");
    if (status != PYMIC_OK)
        return status;
    uint64_t target = atomic_load_explicit(&event->recorded, memory_order_acquire);
    if (target == 0)
        return pymic_fail(PYMIC_ERR_NOT_RECORDED, "pymic_event_query: the event was never recorded");
    return atomic_load_explicit(&event->done, memory_order_acquire) >= target;
}

static int check_recorded(pymic_event *event, const char *which)
{
    if (atomic_load_explicit(&event->recorded, memory_order_acquire) == 0)
        return pymic_fail(PYMIC_ERR_NOT_RECORDED,
                          "pymic_event_elapsed: the %s event was never recorded", which);
    return PYMIC_OK;
}

/* The timestamp of the event's latest record, if it has completed. */
static int completed_stamp(pymic_event *event, const char *which, uint64_t *stamp)
{
    uint64_t target = atomic_load_explicit(&event->recorded, memory_order_acquire);
    pthread_mutex_lock(&event->lock);
    bool done = event->stamp_generation >= target;
    *stamp = event->stamp_ns;
    pthread_mutex_unlock(&event->lock);
    if (!done)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "pymic_event_elapsed: the %s event has not completed yet", which);
    return PYMIC_OK;
}

int pymic_event_elapsed(pymic_event *start, pymic_event *end, double *seconds)
{
    if (!start || !end || !seconds)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "pymic_event_elapsed: NULL event or output");
    uint64_t t0 = 0, t1 = 0;
    int status = check_recorded(start, "start");
    if (status == PYMIC_OK)
        status = check_recorded(end, "end");
    if (status == PYMIC_OK)
        status = completed_stamp(start, "start", &t0);
    if (status == PYMIC_OK)
        status = completed_stamp(end, "end", &t1);
    if (status != PYMIC_OK)
        return status;
    *seconds = ((double)t1 - (double)t0) * 1e-9;
    return PYMIC_OK;
}
