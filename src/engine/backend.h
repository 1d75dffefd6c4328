/*
 * backend.h -- how the generic engine reaches a device.
 *
 * The core (validation, the allocation table, streams and their command
 * rings, sequence numbers, events, use lists and parked releases, error
 * messages) is the same for every device.  What differs -- where device
 * memory comes from, how a copy and a kernel call are carried out, how a
 * library is opened and a kernel found -- goes through the per-device
 * table below.  Each device points at one table for its whole life
 * (device->ops, copied into stream->ops so the worker's hot path reads
 * it from the stream's read-mostly cache line): an invoke costs exactly
 * one indirect call over a direct one.
 *
 * Contracts common to every operation
 *   - No engine lock is held when an operation is called, except where
 *     the entry says otherwise; an operation never calls back into the
 *     public API.
 *   - Operations report failure by return value; those that must explain
 *     it write a reason (no "device N:" prefix: the caller adds the
 *     operation and device) into `why`.
 *   - "Worker" means the stream's own worker thread, running one command:
 *     the operation may block for as long as the command takes, and no
 *     other command of that stream runs meanwhile.
 *
 * Implementations: host/ (the host device: memory of this process,
 * kernels called on the worker thread itself) and proc/ (the process
 * device: a device process per device, memory shared with it).
 */
#ifndef PYMIC_BACKEND_H
#define PYMIC_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

struct pymic_device;
struct pymic_stream;
struct pymic_command;
struct pymic_block;

typedef struct pymic_backend_ops {
    /* What pymic_device_info.kind reports ("host"). */
    const char *kind;
    /* Device memory is mapped in the engine's process at the device
     * addresses (pymic_device_info.host_addressable): the Python layer
     * may then hand it to other libraries (DLPack) without a copy. */
    bool host_addressable;
    /* A thread that syncs on the device's own cores may carry out the
     * stream's next command itself (ops->copy / ops->invoke on that
     * thread instead of the worker; stream.c "Who runs a command"): the
     * backend's commands may run on any thread. */
    bool caller_runs;

    /* ---- device life.  Called once per device, before its first
     * stream, allocation or library, with the device's open lock held
     * (no other engine lock): by engine initialisation on the
     * initialising thread, or -- for a device set up on first use
     * (host:auto's entries of the node's other ranks) -- on the thread
     * of that first use.  Sets up device->backend; false if the system
     * refuses (out of memory). */
    bool (*open)(struct pymic_device *device);

    /* ---- memory.  Any thread; the allocation table's lock is NOT held
     * (the generic core has already counted the bytes against the
     * device's limit).  block_get returns a block whose ptr is aligned to
     * `alignment` (a power of two) and covers nbytes, or NULL when the
     * system has no memory.  block_put may run on a worker (a parked
     * release), so it must not wait for any stream.  trim gives cached
     * memory back to the system (before an allocation is refused). */
    struct pymic_block *(*block_get)(struct pymic_device *device, size_t nbytes,
                                     size_t alignment);
    void (*block_put)(struct pymic_device *device, struct pymic_block *block);
    void (*trim)(struct pymic_device *device);

    /* ---- streams.  start_worker runs on the creating thread with the
     * stream listed on its device (device->lock not held): it starts
     * stream->worker running body(stream) wherever the device runs, or
     * records the error and fails.  worker_exit runs on the worker after
     * its STOP command, before the stream leaves its device: it releases
     * what the backend kept per worker. */
    int (*start_worker)(struct pymic_stream *stream, void *(*body)(void *));
    void (*worker_exit)(struct pymic_stream *stream);

    /* ---- commands, on the worker.  copy carries out a PYMIC_CMD_COPY
     * (cmd->u.copy: direction, already-checked ranges, overlap flag);
     * invoke calls cmd->u.call.fn with cmd->args, returning when the
     * kernel has returned. */
    void (*copy)(struct pymic_stream *stream, const struct pymic_command *cmd);
    void (*invoke)(struct pymic_stream *stream, const struct pymic_command *cmd);

    /* ---- libraries.  Any thread.  library_open loads the regular file
     * open as `fd` for the device -- that very file (the handle is the
     * backend's).  With `by_path`, `path` is absolute and the backend
     * may load the file by that name (so `$ORIGIN` names its directory)
     * if the object the loader returns is mapped from the file open as
     * `fd`; else, and always without `by_path`, it loads the descriptor
     * and `path` only names the file in reasons.  It owns `fd` from the
     * call on: it closes it on failure, or once the file is no longer
     * needed.  kernel_find returns the
     * address, as the device sees it, of function `name` defined by the
     * library itself (not by its dependencies, not a data object), or
     * NULL with the reason.  kernel_find is called with the engine's
     * library lock held, so it must not take it.  library_close runs
     * once no queued command can call into the library any more (it may
     * run on a worker: a parked release). */
    void *(*library_open)(struct pymic_device *device, int fd, const char *path, bool by_path,
                          char *why, size_t why_len);
    void *(*kernel_find)(struct pymic_device *device, void *handle, const char *name,
                         char *why, size_t why_len);
    void (*library_close)(struct pymic_device *device, void *handle);

    /* ---- health.  reset (NULL: nothing to restart) runs on the caller
     * of pymic_device_reset, not concurrently with other use of the
     * device: it makes a lost (or live) device usable afresh, clearing
     * device->lost and bumping device->generation.  A backend that loses
     * its device calls pymic_device_mark_lost (any thread), and fails
     * each later command with pymic_stream_fail; loss is generic state,
     * read by the core with pymic_device_lost. */
    int (*reset)(struct pymic_device *device);

    /* ---- fork().  Called by the engine's pthread_atfork handlers, in its
     * fixed lock order (engine.c): prefork takes the backend's locks of
     * this device, postfork_parent releases them, postfork_child makes
     * them fresh in the child. */
    void (*prefork)(struct pymic_device *device);
    void (*postfork_parent)(struct pymic_device *device);
    void (*postfork_child)(struct pymic_device *device);
} pymic_backend_ops;

/* The host device (host/) and the process device (proc/). */
extern const pymic_backend_ops pymic_host_backend;
extern const pymic_backend_ops pymic_proc_backend;

#endif /* PYMIC_BACKEND_H */
