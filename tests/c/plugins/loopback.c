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
 * The same source builds a second plugin, libpymic_oldabi.so, that claims
 * another version of the backend interface (LOOPBACK_NAME, LOOPBACK_ABI),
 * for the registry's refusal.
 */
#include "backend.h"
#include "engine.h"

#include <dlfcn.h>
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

typedef struct loopback_device {
    unsigned char *region;
    pthread_mutex_t lock;          /* guards `used` and the kernel table */
    unsigned char used[NUNITS];    /* 1: unit allocated */
    pymic_kernel_fn kernels[MAX_KERNELS];
    int nkernels;
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
    device->backend = d;
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

static void loopback_copy(pymic_stream *stream, const pymic_command *cmd)
{
    pymic_device *device = stream->device;
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
static void loopback_invoke(pymic_stream *stream, const pymic_command *cmd)
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
    pthread_mutex_lock(&d->lock);
    pymic_kernel_fn fn = d->kernels[cmd->u.call.kernel_handle - 1];
    pthread_mutex_unlock(&d->lock);
    pymic_kernel_call(fn, cmd->nargs, args);
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
    uint64_t found = 0;
    pthread_mutex_lock(&d->lock);
    if (d->nkernels < MAX_KERNELS) {
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
    pthread_mutex_lock(&state_of(device)->lock);
}

static void loopback_postfork_parent(pymic_device *device)
{
    pthread_mutex_unlock(&state_of(device)->lock);
}

static void loopback_postfork_child(pymic_device *device)
{
    pthread_mutex_init(&state_of(device)->lock, NULL);
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
