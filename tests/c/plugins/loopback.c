/*
 * loopback.c -- a complete backend plugin (libpymic_loopback.so), built by
 * the tests to prove the seam: PYMIC_DEVICES=loopback (or loopback*N)
 * gives devices whose memory this process cannot address at the device
 * addresses the engine hands out.
 *
 * Each device owns a region of host memory of its own (malloc'd); the
 * device address of byte `off` of the region is LOOPBACK_TAG | off, a
 * non-canonical address on every 64-bit machine pymic runs on, so any
 * read or write of device memory by the core at a device address would
 * fault at once.  Every device's addresses start at the same value, so
 * two loopback devices hand out equal addresses.  Copies and kernels
 * translate device addresses into the region before touching it; kernels
 * are C functions of a library the plugin dlopens in this process, called
 * with their pointer arguments translated.
 *
 * Commands complete asynchronously, as a remote device's would: copy and
 * invoke queue the command and return "in flight"; the device's progress
 * thread carries the queued commands out in order and then reports their
 * completion (pymic_command_complete) newest first, so the core sees
 * completions out of order and from a thread of the backend's.  Built with
 * LOOPBACK_POLLED (libpymic_looppoll.so, PYMIC_DEVICES=looppoll) there is
 * no progress thread: the backend has a poll operation, and the queued
 * commands run when a waiter (or the worker) calls it.  The threaded one
 * lets a syncing thread submit commands itself (caller runs), which then
 * waits for their completion as any waiter does.
 * Kernels whose name begins with "crash_" are refused at submission (they
 * would end the test process): the command fails and is done at once,
 * while commands before it may still be in flight.
 *
 * The same source builds a second plugin, libpymic_oldabi.so, that claims
 * another version of the backend interface (LOOPBACK_NAME, LOOPBACK_ABI),
 * for the registry's refusal.
 */
#include "backend.h"
#include "engine.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LOOPBACK_NAME
#define LOOPBACK_NAME loopback
#endif
#ifndef LOOPBACK_ABI
#define LOOPBACK_ABI PYMIC_BACKEND_ABI
#endif
#ifdef LOOPBACK_POLLED
#define POLLED true
#else
#define POLLED false
#endif
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define ENTRY_(name) pymic_backend_##name
#define ENTRY(name) ENTRY_(name)

/* Device addresses: the tag bit, plus the offset in the region. */
#define LOOPBACK_TAG ((uintptr_t)1 << 62)
/* Region size and allocation unit. */
#define REGION_BYTES ((size_t)32 << 20)
#define UNIT_BYTES ((size_t)256)
#define NUNITS (REGION_BYTES / UNIT_BYTES)

/* Kernels found, by handle: a kernel handle is 1 + its index here, a
 * number that is no address (the core must never call it). */
#define MAX_KERNELS 256

/* A command waiting to be carried out. */
typedef struct job {
    pymic_stream *stream;
    const pymic_command *cmd; /* its slot stays put until it completes */
    uint64_t seq;
    struct job *next;
} job;

typedef struct loopback_device {
    unsigned char *region;
    pthread_mutex_t lock;          /* guards `used` and the kernel table */
    unsigned char used[NUNITS];    /* 1: unit allocated */
    pymic_kernel_fn kernels[MAX_KERNELS]; /* NULL: refused (crash_...) */
    char names[MAX_KERNELS][64];
    int nkernels;
    /* Queued commands, oldest first; `polled`: run by poll, not by a
     * progress thread (`running`: somebody carries some out, and nobody
     * else may meanwhile: they run in order). */
    pthread_mutex_t jobs_lock;
    pthread_cond_t jobs_cond;
    job *head, *tail;
    bool polled, running;
} loopback_device;

static loopback_device *state_of(pymic_device *device)
{
    return device->backend;
}

/* The region's byte for device address `address` covering `nbytes`; the
 * core checked the range against the device's allocation table, so a miss
 * here is a bug in the core, and the plugin says so loudly. */
static unsigned char *translate(pymic_device *device, uintptr_t address, size_t nbytes)
{
    uintptr_t offset = address - LOOPBACK_TAG;
    if (!(address & LOOPBACK_TAG) || offset > REGION_BYTES || nbytes > REGION_BYTES - offset) {
        fprintf(stderr, "loopback: device %d given %#lx (%zu bytes), not its memory\n",
                device->id, (unsigned long)address, nbytes);
        abort();
    }
    return state_of(device)->region + offset;
}

/* ------------------------------------------------- carrying commands out */

static void do_copy(pymic_device *device, const pymic_command *cmd)
{
    size_t n = cmd->u.copy.nbytes;
    uintptr_t dst = (uintptr_t)cmd->u.copy.dst, src = (uintptr_t)cmd->u.copy.src;
    switch (cmd->u.copy.dir) {
    case PYMIC_COPY_H2D:
        memcpy(translate(device, dst, n), (const void *)src, n);
        break;
    case PYMIC_COPY_D2H:
        memcpy((void *)dst, translate(device, src, n), n);
        break;
    default:
        memmove(translate(device, dst, n), translate(device, src, n), n);
        break;
    }
}

/* Arguments by kind: device addresses become region addresses, scalars
 * are read where the command keeps them, other addresses pass as they
 * are. */
static void do_invoke(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    loopback_device *d = state_of(stream->device);
    void *args[PYMIC_MAX_KERNEL_ARGS];
    for (int i = 0; i < cmd->nargs; i++) {
        switch (cmd->arg_kind[i]) {
        case PYMIC_ARG_DEVICE:
            args[i] = translate(stream->device, (uintptr_t)cmd->args[i], 0);
            break;
        case PYMIC_ARG_SCALAR:
            args[i] = (void *)(cmd->scalars + cmd->arg_offset[i]);
            break;
        default:
            args[i] = cmd->args[i];
            break;
        }
    }
    uint64_t index = cmd->u.call.kernel_handle - 1;
    pthread_mutex_lock(&d->lock);
    pymic_kernel_fn fn = d->kernels[index];
    pthread_mutex_unlock(&d->lock);
    (void)seq;
    pymic_kernel_call(fn, cmd->nargs, args); /* refused ones never get here */
}

static void carry_out(const job *j)
{
    if (j->cmd->kind == PYMIC_CMD_COPY)
        do_copy(j->stream->device, j->cmd);
    else
        do_invoke(j->stream, j->cmd, j->seq);
}

/* Take every queued command (with jobs_lock held). */
static job *take_jobs(loopback_device *d)
{
    job *all = d->head;
    d->head = d->tail = NULL;
    return all;
}

/* Carry out the jobs in order, then report them complete newest first:
 * the core must keep `completed` in order whatever order they come in. */
static void run_jobs(job *all)
{
    job *done = NULL;
    while (all) {
        job *j = all;
        all = j->next;
        carry_out(j);
        j->next = done;
        done = j;
    }
    while (done) {
        job *j = done;
        done = j->next;
        pymic_command_complete(j->stream, j->seq);
        free(j);
    }
}

static void *progress_main(void *arg)
{
    loopback_device *d = arg;
    pthread_mutex_lock(&d->jobs_lock);
    for (;;) {
        while (!d->head)
            pthread_cond_wait(&d->jobs_cond, &d->jobs_lock);
        job *all = take_jobs(d);
        pthread_mutex_unlock(&d->jobs_lock);
        run_jobs(all);
        pthread_mutex_lock(&d->jobs_lock);
    }
    return NULL;
}

/* Queue command `seq`: it is in flight from now on. */
static int submit(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    loopback_device *d = state_of(stream->device);
    if (atomic_load(&stream->device->lost)) {
        pymic_stream_fail(stream, seq, "%s", stream->device->lost_why);
        return PYMIC_COMMAND_DONE;
    }
    job *j = malloc(sizeof *j);
    if (!j) {
        pymic_stream_fail_status(stream, seq, PYMIC_ERR_SYSTEM, "loopback: out of memory");
        return PYMIC_COMMAND_DONE;
    }
    *j = (job){stream, cmd, seq, NULL};
    pthread_mutex_lock(&d->jobs_lock);
    if (d->tail)
        d->tail->next = j;
    else
        d->head = j;
    d->tail = j;
    pthread_cond_signal(&d->jobs_cond);
    pthread_mutex_unlock(&d->jobs_lock);
    return PYMIC_COMMAND_IN_FLIGHT;
}

static int loopback_copy(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    return submit(stream, cmd, seq);
}

static int loopback_invoke(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    loopback_device *d = state_of(stream->device);
    uint64_t index = cmd->u.call.kernel_handle - 1;
    pthread_mutex_lock(&d->lock);
    bool refused = d->kernels[index] == NULL;
    pthread_mutex_unlock(&d->lock);
    if (refused) {
        pymic_stream_fail_status(stream, seq, PYMIC_ERR_SYSTEM,
                                 "device %d: the loopback device refuses kernel '%s'",
                                 stream->device->id, d->names[index]);
        return PYMIC_COMMAND_DONE;
    }
    return submit(stream, cmd, seq);
}

/* Polled: whoever waits carries the queued commands out, one poller at a
 * time. */
static void loopback_poll(pymic_stream *stream)
{
    loopback_device *d = state_of(stream->device);
    pthread_mutex_lock(&d->jobs_lock);
    job *all = d->running ? NULL : take_jobs(d);
    if (all)
        d->running = true;
    pthread_mutex_unlock(&d->jobs_lock);
    if (!all) {
        sched_yield(); /* another poller runs them, or none are queued */
        return;
    }
    run_jobs(all);
    pthread_mutex_lock(&d->jobs_lock);
    d->running = false;
    pthread_mutex_unlock(&d->jobs_lock);
}

/* Any thread that syncs may submit the next command itself ("caller
 * runs"): submitting is cheap, and the command then is in flight like one
 * the worker submitted.  (The polled variant leaves it to the worker.) */
static bool loopback_caller_may_run(const pymic_device *device)
{
    (void)device;
    return true;
}

/* ----------------------------------------------------------- the device */

static bool loopback_open(pymic_device *device)
{
    loopback_device *d = calloc(1, sizeof *d);
    if (!d)
        return false;
    d->region = calloc(1, REGION_BYTES);
    if (!d->region) {
        free(d);
        return false;
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->jobs_lock, NULL);
    pthread_cond_init(&d->jobs_cond, NULL);
    d->polled = POLLED;
    device->backend = d;
    pthread_t progress;
    if (!d->polled) {
        /* Lives as long as the process, like the device. */
        if (pthread_create(&progress, NULL, progress_main, d) != 0)
            return false;
        pthread_detach(progress);
    }
    return true;
}

/* First fit over the unit map, at a multiple of the alignment. */
static pymic_block *loopback_block_get(pymic_device *device, size_t nbytes, size_t alignment)
{
    loopback_device *d = state_of(device);
    size_t units = (nbytes + UNIT_BYTES - 1) / UNIT_BYTES;
    size_t step = alignment > UNIT_BYTES ? alignment / UNIT_BYTES : 1;
    pymic_block *block = calloc(1, sizeof *block);
    if (!block || units > NUNITS)
        goto none;
    pthread_mutex_lock(&d->lock);
    for (size_t first = 0; first + units <= NUNITS; first += step) {
        size_t n = 0;
        while (n < units && !d->used[first + n])
            n++;
        if (n == units) {
            memset(d->used + first, 1, units);
            pthread_mutex_unlock(&d->lock);
            block->ptr = (void *)(LOOPBACK_TAG | (first * UNIT_BYTES));
            block->map_bytes = units;
            return block;
        }
    }
    pthread_mutex_unlock(&d->lock);
none:
    free(block);
    return NULL;
}

static void loopback_block_put(pymic_device *device, pymic_block *block)
{
    loopback_device *d = state_of(device);
    size_t first = ((uintptr_t)block->ptr - LOOPBACK_TAG) / UNIT_BYTES;
    pthread_mutex_lock(&d->lock);
    memset(d->used + first, 0, block->map_bytes);
    pthread_mutex_unlock(&d->lock);
    free(block);
}

/* The region is all the device can hold. */
static size_t loopback_memory_capacity(pymic_device *device)
{
    (void)device;
    return REGION_BYTES;
}

static int loopback_start_worker(pymic_stream *stream, void *(*body)(void *))
{
    return pymic_worker_start_pinned(stream, body);
}

static void loopback_worker_exit(pymic_stream *stream)
{
    (void)stream;
}

/* The kernels run in this process: load the open file through its
 * descriptor's name. */
static void *loopback_library_open(pymic_device *device, int fd, const char *path, bool by_path,
                                   char *why, size_t why_len)
{
    (void)device;
    (void)by_path;
    char name[64];
    snprintf(name, sizeof name, "/proc/self/fd/%d", fd);
    void *handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        snprintf(why, why_len, "cannot load \"%s\": %s", path, dlerror());
    close(fd);
    return handle;
}

static uint64_t loopback_kernel_find(pymic_device *device, void *handle, const char *name,
                                     char *why, size_t why_len)
{
    loopback_device *d = state_of(device);
    void *address = dlsym(handle, name);
    if (!address) {
        snprintf(why, why_len, "no kernel \"%s\"", name);
        return 0;
    }
    pymic_kernel_fn fn;
    memcpy(&fn, &address, sizeof fn);
    if (strncmp(name, "crash_", 6) == 0)
        fn = NULL; /* refused when invoked */
    uint64_t found = 0;
    pthread_mutex_lock(&d->lock);
    if (d->nkernels < MAX_KERNELS) {
        snprintf(d->names[d->nkernels], sizeof d->names[0], "%s", name);
        d->kernels[d->nkernels++] = fn;
        found = (uint64_t)d->nkernels;
    }
    pthread_mutex_unlock(&d->lock);
    if (!found)
        snprintf(why, why_len, "the loopback device's kernel table is full");
    return found;
}

static void loopback_library_close(pymic_device *device, void *handle)
{
    (void)device;
    dlclose(handle);
}

static void loopback_prefork(pymic_device *device)
{
    pthread_mutex_lock(&state_of(device)->jobs_lock);
    pthread_mutex_lock(&state_of(device)->lock);
}

static void loopback_postfork_parent(pymic_device *device)
{
    pthread_mutex_unlock(&state_of(device)->lock);
    pthread_mutex_unlock(&state_of(device)->jobs_lock);
}

/* The progress thread is the parent's: a fork()ed child cannot use the
 * device. */
static void loopback_postfork_child(pymic_device *device)
{
    loopback_device *d = state_of(device);
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->jobs_lock, NULL);
    pthread_cond_init(&d->jobs_cond, NULL);
    d->head = d->tail = NULL; /* the parent's commands */
    d->running = false;
    if (!d->polled)
        pymic_device_mark_lost(device, "device %d: a loopback device's progress thread "
                               "exists only in the process that opened it", device->id);
}

static const pymic_backend_ops loopback_ops = {
    .abi_version = LOOPBACK_ABI,
    .kind = STRINGIFY(LOOPBACK_NAME),
    .host_addressable = false,
    .open = loopback_open,
    .block_get = loopback_block_get,
    .block_put = loopback_block_put,
    .memory_capacity = loopback_memory_capacity,
    .start_worker = loopback_start_worker,
    .worker_exit = loopback_worker_exit,
    .copy = loopback_copy,
    .invoke = loopback_invoke,
    .poll = POLLED ? loopback_poll : NULL,
    .caller_may_run = POLLED ? NULL : loopback_caller_may_run,
    .library_open = loopback_library_open,
    .kernel_find = loopback_kernel_find,
    .library_close = loopback_library_close,
    .prefork = loopback_prefork,
    .postfork_parent = loopback_postfork_parent,
    .postfork_child = loopback_postfork_child,
};

__attribute__((visibility("default"))) const pymic_backend_ops *
ENTRY(LOOPBACK_NAME)(unsigned abi_version);

const pymic_backend_ops *ENTRY(LOOPBACK_NAME)(unsigned abi_version)
{
    return abi_version == LOOPBACK_ABI ? &loopback_ops : NULL;
}
