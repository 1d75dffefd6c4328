/*
 * host.h -- the host backend's own declarations (see backend.h for the
 * contract it implements).
 */
#ifndef PYMIC_HOST_H
#define PYMIC_HOST_H

#include "../engine.h"

/* allocator.c: the caching allocator behind host-device memory. */
struct pymic_block_cache *pymic_block_cache_create(void);
void pymic_block_cache_destroy(struct pymic_block_cache *cache);
/* In the child of a fork: make the cache's lock usable again. */
void pymic_block_cache_after_fork(struct pymic_block_cache *cache);
void pymic_block_cache_prefork(struct pymic_block_cache *cache);
void pymic_block_cache_postfork_parent(struct pymic_block_cache *cache);
/* Drop every cached block (after waiting for parked frees, before an
 * allocation is refused for want of memory). */
void pymic_block_cache_trim(struct pymic_block_cache *cache);
/* NULL when the OS refuses. */
pymic_block *pymic_block_get(struct pymic_block_cache *cache, size_t nbytes, size_t alignment);
void pymic_block_put(struct pymic_block_cache *cache, pymic_block *block);


/* worker.c: start a worker thread pinned to the device's CPUs; on
 * failure the error (with the system's reason) is recorded. */
int pymic_host_start_worker(pymic_stream *stream, void *(*body)(void *));
/* True when the calling thread may run commands of `device` itself: every
 * CPU it may use belongs to the device (cached per thread). */
bool pymic_host_caller_may_run(const pymic_device *device);
/* Run one command on the calling (non-worker) thread, with the OpenMP team
 * size the worker would use. */
int pymic_host_run_on_caller(pymic_stream *stream, pymic_command *cmd, uint64_t seq);
/* Release the calling thread's OpenMP thread pool (libgomp keeps one per
 * thread that opened a team); the next team creates it again. */
void pymic_host_release_team(void);

/* kernel.c: libraries in this process, kernels called on the worker.
 * library_open loads the file open as `fd` and owns the descriptor (the
 * process device's server uses the same functions). */
void *pymic_host_library_open(pymic_device *device, int fd, const char *path, bool by_path,
                              char *why, size_t why_len);
void *pymic_host_kernel_find(pymic_device *device, void *handle, const char *name, char *why,
                             size_t why_len);
void pymic_host_library_close(pymic_device *device, void *handle);
int pymic_host_invoke(pymic_stream *stream, const pymic_command *cmd, uint64_t seq);

#endif /* PYMIC_HOST_H */
