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

int pymic_device_snapshot(pymic_device *device, pymic_use **uses_out, int *count_out)
{
    pthread_mutex_lock(&device->lock);
    int n = 0;
    for (pymic_stream *s = device->streams; s; s = s->next_in_device)
        n++;
    pymic_use *uses = n ? malloc(sizeof *uses * (size_t)n) : NULL;
    if (n && !uses) {
        pthread_mutex_unlock(&device->lock);
        return pymic_fail(PYMIC_ERR_SYSTEM, "device %d: out of host memory", device->id);
    }
    int k = 0;
    for (pymic_stream *s = device->streams; s; s = s->next_in_device) {
        if (pymic_stream_inherited(s))
            continue; /* inherited across fork(): nothing will ever run */
        pymic_stream_retain(s);
        uses[k].stream = s;
        uses[k].seq = atomic_load_explicit(&s->enqueued, memory_order_acquire);
        k++;
    }
    pthread_mutex_unlock(&device->lock);
    *uses_out = uses;
    *count_out = k;
    return PYMIC_OK;
}

/* The streams are snapshotted under the device lock, each retained, and
 * waited for with no lock held: other threads may create and destroy
 * streams meanwhile, and a stream destroyed during the wait stays readable
 * until its reference is dropped. */
static int device_sync(int device, uint64_t timeout_ns, const char *op)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    uint64_t start = pymic_now_ns();
    uint64_t traced = pymic_trace_wait_begin();
    pymic_use *uses;
    int n;
    status = pymic_device_snapshot(d, &uses, &n);
    if (status != PYMIC_OK)
        return status;
    for (int i = 0; i < n; i++) {
        pymic_stream *s = uses[i].stream;
        uint64_t spent = pymic_now_ns() - start;
        uint64_t left = spent >= timeout_ns ? 0 : timeout_ns - spent;
        if (status == PYMIC_OK && !pymic_wait_geq_timeout(&s->done_q, &s->completed,
                                                          uses[i].seq, left))
            status = PYMIC_ERR_TIMEOUT;
        if (status == PYMIC_OK)
            status = pymic_stream_take_failure_for_device(s, uses[i].seq);
        pymic_stream_release(s);
    }
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
    return device_sync(device, UINT64_MAX, "sync");
}

int pymic_device_sync_timeout(int device, uint64_t timeout_ns)
{
    return device_sync(device, timeout_ns, "sync");
}
