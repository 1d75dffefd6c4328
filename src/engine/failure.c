/*
 * failure.c -- commands that fail on the worker, reported at the next
 * wait.
 *
 * A command fails asynchronously (its device was lost, a bounds check
 * found a kernel's write past an allocation, it waited for an event
 * recorded after a failure): nobody is there to return an error to, so
 * the stream keeps the oldest unreported failure with its sequence number
 * and the next sync, query or wait that covers it returns it as an error,
 * once.  What depends on a failed command fails with it: until the
 * failure is reported, the stream's later kernels and copies are not run
 * (frees, event records and event waits still are), and an event recorded
 * after it carries it to every stream that waits for the event.  A
 * destroyed stream hands an unreported failure to its device (orphans),
 * whose next sync reports it.  Device health is kept on the device
 * (generic): backends mark it lost, reset clears it and forgets the
 * failures of the commands it repaired.
 */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void record(pymic_stream *stream, uint64_t seq, int status, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&stream->failure_lock);
    /* The oldest unreported failure is kept (by sequence number: commands
     * in flight may fail out of order); one of a command that a reset
     * stopped (or that failed before it) is what the reset repaired. */
    uint64_t failed = atomic_load_explicit(&stream->failed_seq, memory_order_relaxed);
    if ((failed == 0 || seq < failed) && seq > stream->forgive_through) {
        vsnprintf(stream->failure, sizeof stream->failure, fmt, ap);
        stream->failed_status = status;
        stream->skipped_through = 0;
        atomic_store_explicit(&stream->failed_seq, seq, memory_order_release);
    }
    pthread_mutex_unlock(&stream->failure_lock);
}

void pymic_stream_fail(pymic_stream *stream, uint64_t seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(stream, seq, PYMIC_ERR_DEVICE_LOST, fmt, ap);
    va_end(ap);
}

void pymic_stream_fail_status(pymic_stream *stream, uint64_t seq, int status, const char *fmt,
                              ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(stream, seq, status, fmt, ap);
    va_end(ap);
}

bool pymic_stream_skips_slow(pymic_stream *stream, uint64_t seq)
{
    pthread_mutex_lock(&stream->failure_lock);
    uint64_t failed = atomic_load_explicit(&stream->failed_seq, memory_order_relaxed);
    bool skip = failed != 0 && failed < seq;
    /* Remembered so that a sync whose target lies before this command
     * does not clear a failure this command was skipped for. */
    if (skip && seq > stream->skipped_through)
        stream->skipped_through = seq;
    pthread_mutex_unlock(&stream->failure_lock);
    return skip;
}

/* Copy out and forget the unreported failure of a command up to `seq`;
 * false if there is none. */
static bool take(pymic_stream *stream, uint64_t seq, char *message, int *status_out)
{
    /* The common case, no failure up to `seq`, takes no lock. */
    uint64_t failed = atomic_load_explicit(&stream->failed_seq, memory_order_acquire);
    if (failed == 0 || failed > seq)
        return false;
    pthread_mutex_lock(&stream->failure_lock);
    failed = atomic_load_explicit(&stream->failed_seq, memory_order_relaxed);
    if (failed == 0 || failed > seq) {
        pthread_mutex_unlock(&stream->failure_lock); /* another waiter reported it */
        return false;
    }
    memcpy(message, stream->failure, sizeof stream->failure);
    message[sizeof stream->failure - 1] = '\0';
    *status_out = stream->failed_status;
    if (stream->skipped_through > seq) {
        /* Commands after this wait's target were skipped for it too: the
         * wait that covers them reports it again. */
        atomic_store_explicit(&stream->failed_seq, seq + 1, memory_order_relaxed);
    } else {
        atomic_store_explicit(&stream->failed_seq, 0, memory_order_relaxed);
        stream->skipped_through = 0;
    }
    pthread_mutex_unlock(&stream->failure_lock);
    return true;
}

int pymic_stream_take_failure(pymic_stream *stream, uint64_t seq, const char *action)
{
    char message[sizeof stream->failure];
    int status;
    if (!take(stream, seq, message, &status))
        return PYMIC_OK;
    return pymic_fail(status, "%s " PYMIC_STREAM_FMT ": %s", action, PYMIC_STREAM_ARGS(stream),
                      message);
}

int pymic_stream_take_failure_for_device(pymic_stream *stream, uint64_t seq)
{
    char message[sizeof stream->failure];
    int status;
    if (!take(stream, seq, message, &status))
        return PYMIC_OK;
    return pymic_fail(status, "sync of device %d: stream %d: %s", stream->device->id,
                      stream->number, message);
}

char *pymic_stream_copy_failure(pymic_stream *stream, uint64_t through, int *status)
{
    if (atomic_load_explicit(&stream->failed_seq, memory_order_acquire) == 0)
        return NULL;
    pthread_mutex_lock(&stream->failure_lock);
    char *copy = NULL;
    /* (A command after `through` may have failed first when commands are
     * in flight: it is not the record's business.) */
    uint64_t failed = atomic_load_explicit(&stream->failed_seq, memory_order_relaxed);
    if (failed != 0 && failed <= through) {
        *status = stream->failed_status;
        copy = strdup(stream->failure);
    }
    pthread_mutex_unlock(&stream->failure_lock);
    return copy;
}

bool pymic_stream_failed_before(pymic_stream *stream, uint64_t seq)
{
    uint64_t failed = atomic_load_explicit(&stream->failed_seq, memory_order_acquire);
    return failed != 0 && failed < seq;
}

void pymic_stream_forgive(pymic_stream *stream, uint64_t seq)
{
    pthread_mutex_lock(&stream->failure_lock);
    if (seq > stream->forgive_through)
        stream->forgive_through = seq;
    uint64_t failed = atomic_load_explicit(&stream->failed_seq, memory_order_relaxed);
    if (failed != 0 && failed <= seq) {
        atomic_store_explicit(&stream->failed_seq, 0, memory_order_relaxed);
        stream->skipped_through = 0;
    }
    pthread_mutex_unlock(&stream->failure_lock);
}

/* A failure whose stream is gone. */
struct pymic_orphan {
    struct pymic_orphan *next;
    int status;
    char message[];
};

void pymic_stream_orphan_failure(pymic_stream *stream)
{
    if (atomic_load_explicit(&stream->failed_seq, memory_order_acquire) == 0)
        return;
    pthread_mutex_lock(&stream->failure_lock);
    struct pymic_orphan *orphan = NULL;
    if (atomic_load_explicit(&stream->failed_seq, memory_order_relaxed) != 0) {
        size_t length = strnlen(stream->failure, sizeof stream->failure - 1);
        orphan = malloc(sizeof *orphan + length + 1);
        if (orphan) {
            orphan->next = NULL;
            orphan->status = stream->failed_status;
            memcpy(orphan->message, stream->failure, length);
            orphan->message[length] = '\0';
        } else {
            pymic_log(1, "out of host memory; lost the failure: %s", stream->failure);
        }
        atomic_store_explicit(&stream->failed_seq, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(&stream->failure_lock);
    if (!orphan)
        return;
    struct pymic_orphan **tail = &stream->device->orphans;
    while (*tail)
        tail = &(*tail)->next;
    *tail = orphan;
}

int pymic_device_take_orphan(pymic_device *device)
{
    pthread_mutex_lock(&device->lock);
    struct pymic_orphan *orphan = device->orphans;
    if (orphan)
        device->orphans = orphan->next;
    pthread_mutex_unlock(&device->lock);
    if (!orphan)
        return PYMIC_OK;
    int status = pymic_fail(orphan->status, "sync of device %d: %s (on a stream destroyed "
                            "since)", device->id, orphan->message);
    free(orphan);
    return status;
}

void pymic_device_mark_lost(pymic_device *device, const char *fmt, ...)
{
    if (atomic_load_explicit(&device->lost, memory_order_acquire))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(device->lost_why, sizeof device->lost_why, fmt, ap);
    va_end(ap);
    atomic_store_explicit(&device->lost, 1, memory_order_release);
    pymic_log(1, "%s", device->lost_why);
}

int pymic_device_lost(int device, char *why, size_t why_len)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, "device health", &status);
    if (!d)
        return status;
    int lost = atomic_load_explicit(&d->lost, memory_order_acquire);
    if (why && why_len)
        snprintf(why, why_len, "%s", lost ? d->lost_why : "");
    return lost;
}

int pymic_device_reset(int device)
{
    int status;
    pymic_device *d = pymic_device_open(device, "reset", &status);
    if (!d)
        return status;
    /* The failures of commands that had started by now are what the
     * reset repairs, the killed kernel's included (its failure is
     * recorded once the reset has stopped it): nobody reports them
     * later, so the next sync reports only commands run after it. */
    pymic_use *uses;
    int n;
    status = pymic_device_snapshot(d, &uses, &n);
    if (status != PYMIC_OK)
        return status;
    for (int i = 0; i < n; i++)
        pymic_stream_forgive(uses[i].stream,
                             atomic_load_explicit(&uses[i].stream->claimed,
                                                  memory_order_acquire));
    status = d->ops->reset ? d->ops->reset(d) : PYMIC_OK; /* host: nothing to restart */
    if (status != PYMIC_OK) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "reset of device %d", device);
        pymic_fail_reworded(status, "pymic_device_reset", prefix);
    }
    for (int i = 0; i < n; i++)
        pymic_stream_release(uses[i].stream);
    free(uses);
    return status;
}
