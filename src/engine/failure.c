/*
 * failure.c -- commands that fail on the worker, reported at the next
 * wait.
 *
 * A command fails asynchronously (its device was lost, a bounds check
 * found a kernel's write past an allocation): nobody is there to return
 * an error to, so the stream keeps the oldest unreported failure with its
 * sequence number and the next sync, query or wait that covers it returns
 * it as an error, once.  Device health is kept on the device (generic):
 * backends mark it lost, reset clears it.
 */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void record(pymic_stream *stream, uint64_t seq, int status, const char *fmt, va_list ap)
{
    /* Only the worker writes; the reader clears failed_seq after copying
     * the message, so the message is never rewritten while it is read. */
    if (atomic_load_explicit(&stream->failed_seq, memory_order_acquire) != 0)
        return;
    vsnprintf(stream->failure, sizeof stream->failure, fmt, ap);
    stream->failed_status = status;
    atomic_store_explicit(&stream->failed_seq, seq, memory_order_release);
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

int pymic_stream_take_failure(pymic_stream *stream, uint64_t seq, const char *op)
{
    uint64_t failed = atomic_load_explicit(&stream->failed_seq, memory_order_acquire);
    if (failed == 0 || failed > seq)
        return PYMIC_OK;
    char message[sizeof stream->failure];
    memcpy(message, stream->failure, sizeof message);
    int status = stream->failed_status;
    message[sizeof message - 1] = '\0';
    /* Two threads waiting at once: one of them reports it. */
    if (!atomic_compare_exchange_strong(&stream->failed_seq, &failed, 0))
        return PYMIC_OK;
    return pymic_fail(status, "%s: %s", op, message);
}

char *pymic_stream_copy_failure(pymic_stream *stream, int *status)
{
    if (atomic_load_explicit(&stream->failed_seq, memory_order_acquire) == 0)
        return NULL;
    /* Only this (worker) thread writes the message; a reader may clear
     * failed_seq meanwhile, which leaves the message as it is. */
    *status = stream->failed_status;
    return strdup(stream->failure);
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
    pymic_device *d = pymic_device_lookup(device, "pymic_device_lost", &status);
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
    pymic_device *d = pymic_device_open(device, "pymic_device_reset", &status);
    if (!d)
        return status;
    if (!d->ops->reset)
        return PYMIC_OK; /* nothing to restart */
    return d->ops->reset(d);
}
