/*
 * device.c -- device queries, memory limits and device-wide sync.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pymic_device *pymic_device_lookup(int id, const char *op, int *status)
{
    *status = pymic_ensure_init();
    if (*status != PYMIC_OK)
        return NULL;
    if (id < 0 || id >= pymic_global.ndevices) {
        *status = pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                             "%s: device %d does not exist (devices are 0..%d)", op, id,
                             pymic_global.ndevices - 1);
        return NULL;
    }
    return &pymic_global.devices[id];
}

pymic_device *pymic_device_open(int id, const char *op, int *status)
{
    pymic_device *d = pymic_device_lookup(id, op, status);
    if (d && (*status = pymic_device_ensure_open(d, op)) != PYMIC_OK)
        return NULL;
    return d;
}

int pymic_device_count(int *count)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    if (!count)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_device_count: count is NULL");
    *count = pymic_global.ndevices;
    return PYMIC_OK;
}

int pymic_device_get_info(int device, pymic_device_info *info)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, "device info", &status);
    if (!d)
        return status;
    if (!info)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "pymic_device_get_info: device %d: info is NULL", device);
    memset(info, 0, sizeof *info);
    info->id = d->id;
    snprintf(info->kind, sizeof info->kind, "%s", d->ops->kind);
    snprintf(info->name, sizeof info->name, "%s", d->name);
    info->ncores = d->ncpus;
    info->host_addressable = d->ops->host_addressable;
    pymic_memory_usage(d, &info->memory_total, &info->memory_used);
    return PYMIC_OK;
}

int pymic_device_get_cpus(int device, int *cpus, int max, int *count)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, "device CPUs", &status);
    if (!d)
        return status;
    if (!count || max < 0 || (max > 0 && !cpus))
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "pymic_device_get_cpus: device %d: NULL output or negative max",
                          device);
    for (int i = 0; i < d->ncpus && i < max; i++)
        cpus[i] = d->cpus[i];
    *count = d->ncpus;
    return PYMIC_OK;
}

/* ------------------------------------------------------------------
 * Which streams have work
 *
 * A device-wide wait (device sync, library unload) concerns only the
 * streams with commands not yet completed, and a device may have
 * thousands of idle ones.  So the device keeps a second list, `busy`: a
 * publish puts its stream there when it is not listed, and a device-wide
 * wait that finds a listed stream idle (all its commands completed, no
 * failure left to report) takes it off.  A stream is on the
 * list exactly while its `busy_listed` flag is set; both change only
 * under the device lock, and a publish reads the flag without it (one
 * load from the line it writes anyway).  So a stream costs a device-wide
 * wait nothing once one wait has found it idle, until it gets work again.
 *
 * No stream with work is missed: a publish stores `enqueued`, then reads
 * the flag; a wait that found the stream idle clears the flag, then
 * reads `enqueued` again, and keeps the stream listed if a command came
 * (all four seq_cst).  Either the publisher sees the flag clear and lists
 * the stream itself, or the wait sees the new command.  Hence every
 * command whose publish returned before a device-wide wait began belongs
 * to a stream on the list that wait walks (or has completed).
 * ------------------------------------------------------------------ */

void pymic_device_list_busy(pymic_stream *stream)
{
    pymic_device *d = stream->device;
    pthread_mutex_lock(&d->lock);
    if (!atomic_exchange_explicit(&stream->busy_listed, 1, memory_order_seq_cst)) {
        stream->next_busy = d->busy;
        d->busy = stream;
    }
    pthread_mutex_unlock(&d->lock);
}

/* Whether a device-wide wait has anything to do with `s`: commands not
 * yet completed, or a failure not yet reported (a device sync reports
 * it; the runner records it before it publishes `completed`). */
static bool has_work(pymic_stream *s)
{
    return atomic_load_explicit(&s->completed, memory_order_seq_cst) <
               atomic_load_explicit(&s->enqueued, memory_order_seq_cst) ||
           atomic_load_explicit(&s->failed_seq, memory_order_acquire) != 0;
}

/* With the device lock held: whether `s` has work; an idle stream (or one
 * inherited across fork(), where nothing will ever run) is unlisted,
 * unless a command came while it was. */
static bool still_busy(pymic_stream *s)
{
    if (pymic_stream_inherited(s))
        return false;
    if (has_work(s))
        return true;
    atomic_store_explicit(&s->busy_listed, 0, memory_order_seq_cst);
    if (has_work(s)) {
        atomic_store_explicit(&s->busy_listed, 1, memory_order_relaxed);
        return true;
    }
    return false;
}

/* Every busy stream of `device` with its newest sequence number, each
 * retained (and with `ring` a ring user too), into `small` (room for
 * `nsmall`) or, when more are busy, a malloc'd array; *count_out of them
 * (none: *uses_out is `small`). */
static int snapshot_busy(pymic_device *device, bool ring, pymic_use *small, int nsmall,
                         pymic_use **uses_out, int *count_out)
{
    pthread_mutex_lock(&device->lock);
    int n = 0, visited = 0;
    for (pymic_stream **link = &device->busy; *link; visited++) {
        pymic_stream *s = *link;
        if (still_busy(s)) {
            n++;
            link = &s->next_busy;
        } else {
            *link = s->next_busy;
        }
    }
    atomic_fetch_add_explicit(&device->sync_visits, (uint64_t)visited, memory_order_relaxed);
    pymic_use *uses = n <= nsmall ? small : malloc(sizeof *uses * (size_t)n);
    if (n > nsmall && !uses) {
        pthread_mutex_unlock(&device->lock);
        return pymic_fail(PYMIC_ERR_SYSTEM, "device %d: out of host memory", device->id);
    }
    int k = 0;
    for (pymic_stream *s = device->busy; s; s = s->next_busy) {
        pymic_stream_retain(s);
        if (ring)
            atomic_fetch_add_explicit(&s->ring_users, 1, memory_order_relaxed);
        uses[k].stream = s;
        uses[k].seq = atomic_load_explicit(&s->enqueued, memory_order_acquire);
        k++;
    }
    pthread_mutex_unlock(&device->lock);
    *uses_out = uses;
    *count_out = k;
    return PYMIC_OK;
}

int pymic_device_snapshot(pymic_device *device, pymic_use **uses_out, int *count_out)
{
    return snapshot_busy(device, false, NULL, 0, uses_out, count_out);
}

/* Busy streams are snapshotted under the device lock, each retained, and
 * waited for with no lock held: other threads may create and destroy
 * streams meanwhile, and a stream destroyed during the wait stays
 * readable, ring included, until this sync drops it.  Each is waited for as a
 * stream sync waits (pymic_stream_wait_until): commands this thread may
 * run it runs, and a stream already done costs two loads. */
static int device_sync(int device, uint64_t timeout_ns, int runs, const char *op)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    status = pymic_wait_runs_check(runs, "device sync");
    if (status != PYMIC_OK)
        return status;
    uint64_t deadline = pymic_deadline(timeout_ns);
    uint64_t traced = pymic_trace_wait_begin();
    pymic_use small[16], *uses;
    int n;
    status = snapshot_busy(d, true, small, (int)(sizeof small / sizeof small[0]), &uses, &n);
    if (status != PYMIC_OK)
        return status;
    for (int i = 0; i < n; i++) {
        pymic_stream *s = uses[i].stream;
        if (status == PYMIC_OK && !pymic_stream_wait_until(s, uses[i].seq, deadline, runs))
            status = PYMIC_ERR_TIMEOUT;
        if (status == PYMIC_OK)
            status = pymic_stream_take_failure_for_device(s, uses[i].seq);
        pymic_stream_drop_ring(s);
        pymic_stream_release(s);
    }
    if (uses != small)
        free(uses);
    /* Streams destroyed before anybody synced them leave their failures
     * to the device. */
    if (status == PYMIC_OK)
        status = pymic_device_take_orphan(d);
    /* What was parked for these streams can go now: after a device sync,
     * memory freed on one stream and used by another is back. */
    if (status == PYMIC_OK && atomic_load_explicit(&pymic_parked_count, memory_order_acquire))
        pymic_parked_poll();
    pymic_trace_wait_end(traced, PYMIC_TRACE_WAIT_DEVICE, device, NULL, 0, status);
    return status;
}

int pymic_device_sync(int device)
{
    return device_sync(device, UINT64_MAX, PYMIC_WAIT_RUNS_ANY, "sync");
}

int pymic_device_sync_timeout(int device, uint64_t timeout_ns)
{
    return device_sync(device, timeout_ns, pymic_wait_runs_for_timeout(timeout_ns), "sync");
}

int pymic_device_sync_runs(int device, uint64_t timeout_ns, int runs)
{
    return device_sync(device, timeout_ns, runs, "sync");
}

int pymic_device_sync_visits(int device, uint64_t *visits)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, "pymic_device_sync_visits", &status);
    if (!d)
        return status;
    if (!visits)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "pymic_device_sync_visits: device %d: visits is NULL", device);
    *visits = atomic_load_explicit(&d->sync_visits, memory_order_relaxed);
    return PYMIC_OK;
}
