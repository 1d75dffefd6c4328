/*
 * backend.c -- the host device's operation table (backend.h): device
 * memory is this process's memory, a kernel runs on the stream's worker
 * thread itself.
 */
#include "host.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static struct pymic_block_cache *cache_of(pymic_device *device)
{
    return device->backend;
}

static bool host_open(pymic_device *device)
{
    device->backend = pymic_block_cache_create();
    return device->backend != NULL;
}

/* PYMIC_CHECK=bounds: a mapping of its own per allocation, the block at
 * its end with at least PYMIC_CANARY_BYTES of canary on each side
 * (bounds.c).  Not cached (class_bytes 0: pymic_block_put unmaps it). */
static pymic_block *bounds_block_get(size_t nbytes, size_t alignment)
{
    size_t span = pymic_bounds_span(nbytes, alignment, PYMIC_CANARY_BYTES);
    pymic_block *block = calloc(1, sizeof *block);
    void *map = block ? mmap(NULL, span, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
    if (map == MAP_FAILED) {
        free(block);
        return NULL;
    }
    uintptr_t end = (uintptr_t)map + span - PYMIC_CANARY_BYTES;
    block->ptr = (void *)((end - nbytes) & ~(uintptr_t)(alignment - 1));
    block->map = map;
    block->map_bytes = span;
    block->class_bytes = 0;
    return block;
}

static pymic_block *host_block_get(pymic_device *device, size_t nbytes, size_t alignment)
{
    if (pymic_global.check_bounds)
        return bounds_block_get(nbytes, alignment);
    return pymic_block_get(cache_of(device), nbytes, alignment);
}

static void host_block_put(pymic_device *device, pymic_block *block)
{
    pymic_block_put(cache_of(device), block);
}

static void host_trim(pymic_device *device)
{
    pymic_block_cache_trim(cache_of(device));
}

static void host_worker_exit(pymic_stream *stream)
{
    pymic_copy_team_destroy(stream->backend_worker);
    stream->backend_worker = NULL;
}

/* Both sides are memory of this process, whatever the direction. */
static int host_copy(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    (void)seq;
    if (cmd->u.copy.overlap)
        memmove(cmd->u.copy.dst, cmd->u.copy.src, cmd->u.copy.nbytes);
    else
        pymic_copy_parallel((struct pymic_copy_team **)&stream->backend_worker, stream->device,
                        cmd->u.copy.dst, cmd->u.copy.src, cmd->u.copy.nbytes);
    return PYMIC_COMMAND_DONE;
}

/* The handle of a host kernel is its address in this process. */
static uint64_t host_kernel_find(pymic_device *device, void *library, const char *name,
                                 char *why, size_t why_len)
{
    return (uint64_t)(uintptr_t)pymic_host_kernel_find(device, library, name, why, why_len);
}

static void host_prefork(pymic_device *device)
{
    pymic_block_cache_prefork(cache_of(device));
}

static void host_postfork_parent(pymic_device *device)
{
    pymic_block_cache_postfork_parent(cache_of(device));
}

static void host_postfork_child(pymic_device *device)
{
    pymic_block_cache_after_fork(cache_of(device));
}

const pymic_backend_ops pymic_host_backend = {
    .abi_version = PYMIC_BACKEND_ABI,
    .kind = "host",
    .host_addressable = true, /* memory of this process */
    .cpu_specs = true,
    .open = host_open,
    .block_get = host_block_get,
    .block_put = host_block_put,
    .trim = host_trim,
    .bounds_arm = pymic_bounds_arm,
    .bounds_after_invoke = pymic_bounds_after_invoke,
    .start_worker = pymic_host_start_worker,
    .worker_exit = host_worker_exit,
    .copy = host_copy,
    .invoke = pymic_host_invoke,
    .caller_may_run = pymic_host_caller_may_run,
    .run_on_caller = pymic_host_run_on_caller,
    .release_thread = pymic_host_release_team,
    .library_open = pymic_host_library_open,
    .kernel_find = host_kernel_find,
    .library_close = pymic_host_library_close,
    .prefork = host_prefork,
    .postfork_parent = host_postfork_parent,
    .postfork_child = host_postfork_child,
};
