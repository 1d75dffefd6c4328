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

int pymic_worker_start_pinned(pymic_stream *stream, void *(*body)(void *))
{
    return pymic_host_start_worker(stream, body);
}

/* ------------------------------------------------------------ caller runs */

/* The answer is cached per thread and device and recomputed every so many
 * calls, so a thread whose affinity changes is seen soon without paying a
 * system call in every sync. */
#define AFFINITY_RECHECK 4096

bool pymic_host_caller_may_run(const pymic_device *device)
{
    static _Thread_local const pymic_device *cached_device;
    static _Thread_local bool cached_answer;
    static _Thread_local unsigned cached_uses;
    if (cached_device == device && ++cached_uses < AFFINITY_RECHECK)
        return cached_answer;
    bool answer = false;
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof mine, &mine) == 0) {
        cpu_set_t outside;
        CPU_OR(&outside, &mine, &device->cpuset);
        /* Every CPU of mine is the device's iff mine | device == device. */
        answer = CPU_EQUAL(&outside, &device->cpuset);
    }
    cached_device = device;
    cached_answer = answer;
    cached_uses = 0;
    return answer;
}

int pymic_host_run_on_caller(pymic_stream *stream, pymic_command *cmd, uint64_t seq)
{
    /* A team opened by the kernel gets the device's core count, as on the
     * worker; the caller's own setting is restored afterwards. */
    int ncpus = stream->device->ncpus;
    int before = cmd->kind == PYMIC_CMD_INVOKE ? omp_get_max_threads() : ncpus;
    if (before != ncpus)
        omp_set_num_threads(ncpus);
    int result = pymic_command_execute(stream, cmd, seq);
    if (before != ncpus)
        omp_set_num_threads(before);
    return result;
}

void pymic_host_release_team(void)
{
    /* Ends the pool's threads (a no-op inside a parallel region); the
     * thread's ICVs, such as the worker's team size, stay as they are. */
    omp_pause_resource(omp_pause_soft, omp_get_initial_device());
}
