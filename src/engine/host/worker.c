/*
 * worker.c -- starting a stream's worker thread on the host device.
 *
 * The thread is created with the device's CPU set as its affinity, so it
 * never runs elsewhere, and it sizes its OpenMP team to the device: a
 * kernel that opens a parallel region gets one thread per device core, and
 * those threads inherit the worker's affinity mask.
 */
#include "host.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker_start {
    pymic_stream *stream;
    void *(*body)(void *);
} worker_start;

static void *worker_trampoline(void *arg)
{
    worker_start start = *(worker_start *)arg;
    free(arg);
    omp_set_num_threads(start.stream->device->ncpus);
    return start.body(start.stream);
}

int pymic_host_start_worker(pymic_stream *stream, void *(*body)(void *))
{
    int device = stream->device->id;
    worker_start *start = malloc(sizeof *start);
    if (!start)
        return pymic_fail(PYMIC_ERR_SYSTEM, "pymic_stream_create: device %d: out of host memory",
                          device);
    start->stream = stream;
    start->body = body;

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setaffinity_np(&attr, sizeof stream->device->cpuset, &stream->device->cpuset);
    int rc = pthread_create(&stream->worker, &attr, worker_trampoline, start);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(start);
        /* EINVAL here usually means the device's CPUs are no longer in the
         * process affinity mask. */
        return pymic_fail(PYMIC_ERR_SYSTEM,
                          "pymic_stream_create: device %d: cannot start a worker thread on %s: %s",
                          device, stream->device->name, strerror(rc));
    }
    return PYMIC_OK;
}
