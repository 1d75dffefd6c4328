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

#include <stdlib.h>
#include <string.h>

static pymic_command *slot_of(pymic_command *ring, uint64_t seq)
{
    return &ring[(seq - 1) & (PYMIC_RING_SLOTS - 1)];
}

pymic_command *pymic_stream_reserve(pymic_stream *stream)
{
    pthread_mutex_lock(&stream->enqueue_lock);
    uint64_t seq = atomic_load_explicit(&stream->enqueued, memory_order_relaxed) + 1;
    if (seq > PYMIC_RING_SLOTS) {
        uint64_t room = seq - PYMIC_RING_SLOTS;
        uint64_t traced = PYMIC_TRACE_WAIT_BEGIN_IF(atomic_load(&stream->completed) < room);
        pymic_wait_geq(&stream->done_q, &stream->completed, room);
        pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_ROOM, stream->device->id, stream, room,
                             PYMIC_OK);
    }
    return slot_of(stream->ring, seq);
}

void pymic_stream_publish(pymic_stream *stream)
{
    uint64_t seq = atomic_load_explicit(&stream->enqueued, memory_order_relaxed) + 1;
    pymic_trace_enqueue(stream, slot_of(stream->ring, seq), seq);
    /* seq_cst store: ordered before reading the worker's sleeper count. */
    atomic_store_explicit(&stream->enqueued, seq, memory_order_seq_cst);
    pthread_mutex_unlock(&stream->enqueue_lock);
    pymic_notify(&stream->work_q);
}

void pymic_stream_cancel(pymic_stream *stream)
{
    pthread_mutex_unlock(&stream->enqueue_lock);
}

static void unlink_from_device(pymic_stream *stream)
{
    pymic_device *d = stream->device;
    pthread_mutex_lock(&d->lock);
    for (pymic_stream **link = &d->streams; *link; link = &(*link)->next_in_device) {
        if (*link == stream) {
            *link = stream->next_in_device;
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
}

/* The worker's last act: leave the device's list (device syncs no longer
 * see the stream) and drop the owner's reference that destroy handed it. */
static void worker_finish(pymic_stream *stream)
{
    pymic_trace_stream_exit(stream);
    stream->ops->worker_exit(stream);
    unlink_from_device(stream);
    pymic_stream_release(stream);
}

static void *worker_main(void *arg)
{
    pymic_stream *stream = arg;
    pymic_command *ring = stream->ring;
    for (uint64_t seq = 1;; seq++) {
        pymic_wait_geq(&stream->work_q, &stream->enqueued, seq);
        pymic_command *cmd = slot_of(ring, seq);
        int kind = cmd->kind;
        uint64_t traced = pymic_trace_exec_begin(stream, seq);
        if (kind != PYMIC_CMD_STOP)
            pymic_command_execute(stream, cmd);
        pymic_trace_exec_end(stream, seq, traced);
        pymic_store_and_notify(&stream->done_q, &stream->completed, seq);
        /* Parked frees and unloads may have been waiting for this command.
         * seq_cst pairs with the count's increment in pymic_release_after:
         * either this worker sees the item, or its parker sees `completed`. */
        if (atomic_load_explicit(&pymic_parked_count, memory_order_seq_cst) > 0)
            pymic_parked_poll();
        if (kind == PYMIC_CMD_STOP) {
            worker_finish(stream);
            return NULL;
        }
    }
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
    if (!pymic_stream_inherited(stream))
        pthread_mutex_destroy(&stream->enqueue_lock);
    free(stream->ring);
    free(stream);
}

bool pymic_stream_inherited(const pymic_stream *stream)
{
    return pymic_generation_inherited(stream->fork_generation);
}

int pymic_stream_check(const pymic_stream *stream, const char *op)
{
    if (!stream)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: stream is NULL", op);
    if (pymic_stream_inherited(stream))
        return pymic_fail(PYMIC_ERR_SYSTEM,
                          "%s: device %d: the stream was created before fork() and its worker "
                          "thread exists only in the parent process",
                          op, stream->device->id);
    return PYMIC_OK;
}

int pymic_stream_create(int device, pymic_stream **stream_out)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, "pymic_stream_create", &status);
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
                          "pymic_stream_create: device %d: out of host memory", device);
    }
    memset(stream, 0, sizeof *stream);
    stream->device = d;
    stream->ops = d->ops;
    stream->ring = ring;
    stream->fork_generation = atomic_load(&pymic_global.fork_generation);
    atomic_init(&stream->refs, 1);
    pthread_mutex_init(&stream->enqueue_lock, NULL);
    /* Listed before the worker starts: the worker unlinks it at STOP. */
    pthread_mutex_lock(&d->lock);
    stream->next_in_device = d->streams;
    d->streams = stream;
    pthread_mutex_unlock(&d->lock);
    status = d->ops->start_worker(stream, worker_main);
    if (status != PYMIC_OK) {
        unlink_from_device(stream);
        pymic_stream_release(stream);
        return status;
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
        return pymic_stream_check(stream, "pymic_stream_destroy");
    if (pymic_stream_inherited(stream)) {
        /* No worker here to hand the reference to. */
        unlink_from_device(stream);
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
    int status = pymic_stream_check(stream, "pymic_stream_sync");
    if (status != PYMIC_OK)
        return status;
    uint64_t target = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    uint64_t traced = pymic_trace_wait_begin();
    pymic_wait_geq(&stream->done_q, &stream->completed, target);
    pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_STREAM, stream->device->id, stream, target,
                         PYMIC_OK);
    return pymic_stream_take_failure(stream, target, "pymic_stream_sync");
}

int pymic_stream_query(pymic_stream *stream)
{
    int status = pymic_stream_check(stream, "pymic_stream_query");
    if (status != PYMIC_OK)
        return status;
    uint64_t target = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    if (atomic_load_explicit(&stream->completed, memory_order_acquire) < target)
        return 0;
    status = pymic_stream_take_failure(stream, target, "pymic_stream_query");
    return status == PYMIC_OK ? 1 : status;
}

int pymic_stream_device(const pymic_stream *stream)
{
    if (!stream)
        return pymic_stream_check(stream, "pymic_stream_device");
    return stream->device->id;
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
        return pymic_stream_check(stream, "pymic_stream_capacity");
    /* pymic_stream_reserve lets sequence number s in once completed >=
     * s - PYMIC_RING_SLOTS: all PYMIC_RING_SLOTS slots may hold commands
     * that have not completed, the running one included. */
    return (int)PYMIC_RING_SLOTS;
}

static int wait_seq(pymic_stream *stream, uint64_t seq, uint64_t timeout_ns, const char *op)
{
    int status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    uint64_t last = atomic_load_explicit(&stream->enqueued, memory_order_acquire);
    if (seq > last)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s: device %d: sequence number %llu was never enqueued (last is %llu)",
                          op, stream->device->id, (unsigned long long)seq,
                          (unsigned long long)last);
    uint64_t traced = pymic_trace_wait_begin();
    status = pymic_wait_geq_timeout(&stream->done_q, &stream->completed, seq, timeout_ns)
                 ? PYMIC_OK
                 : PYMIC_ERR_TIMEOUT;
    pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_STREAM, stream->device->id, stream, seq, status);
    if (status != PYMIC_OK)
        return PYMIC_ERR_TIMEOUT; /* expected by timed callers: no message */
    return pymic_stream_take_failure(stream, seq, op);
}

int pymic_stream_wait_seq(pymic_stream *stream, uint64_t seq)
{
    return wait_seq(stream, seq, UINT64_MAX, "pymic_stream_wait_seq");
}

int pymic_stream_wait_seq_timeout(pymic_stream *stream, uint64_t seq, uint64_t timeout_ns)
{
    return wait_seq(stream, seq, timeout_ns, "pymic_stream_wait_seq_timeout");
}
