/*
 * backend.h -- how the generic engine reaches a device.
 *
 * The core (validation, each device's allocation table, streams and their
 * command rings, sequence numbers, events, use lists and parked releases,
 * error messages) is the same for every device.  What differs -- where
 * device memory comes from, how a copy and a kernel call are carried out,
 * how a library is opened and a kernel found -- goes through the
 * per-device table below.  Each device points at one table for its whole
 * life (device->ops, copied into stream->ops so the worker's hot path
 * reads it from the stream's read-mostly cache line): an invoke costs
 * exactly one indirect call over a direct one.  Nothing in the core reads
 * or writes device memory, calls a kernel handle or compares a device
 * address with a host address (unless host_addressable says they are one
 * space); device addresses are compared only with addresses of the same
 * device.
 *
 * Contracts common to every operation
 *   - No engine lock is held when an operation is called, except where
 *     the entry says otherwise; an operation never calls back into the
 *     public API (include/pymic.h), and calls into the core only through
 *     the core's calls for backends listed at the end of this file.
 *   - Operations report failure by return value; those that must explain
 *     it write a reason (no "device N:" prefix: the caller adds the
 *     operation and device) into `why`.
 *   - "Runner" means the thread that runs a stream's commands at that
 *     moment: the stream's worker thread, or -- where caller_may_run
 *     allows -- a thread that syncs on the stream and claimed the command
 *     ("caller runs", stream.c).  Commands of one stream are handed to the
 *     backend one at a time and in order (never two copy/invoke calls for
 *     one stream at once); calls for different streams of a device run
 *     concurrently.
 *   - A command "in flight" is one whose copy or invoke returned
 *     PYMIC_COMMAND_IN_FLIGHT: the backend has taken it and will carry it
 *     out, in the stream's order, and report it with
 *     pymic_command_complete (from any thread), after recording a failure
 *     if it failed.  Until then its ring slot, its arguments and the
 *     memory it uses stay put; the core keeps `completed` in order (a
 *     command completes once all before it have), so frees, parked
 *     releases, events and waits never see it done early.
 *
 * Implementations: host/ (the host device: memory of this process,
 * kernels called on the runner itself) and proc/ (the process device: a
 * device process per device, memory shared with it), both built in; any
 * other backend is a plugin found by name (registry.c): for
 * PYMIC_DEVICES=N the engine opens libpymic_N.so (beside libpymic, else in
 * the directories of PYMIC_BACKEND_PATH) and asks it for its table by
 * calling
 *
 *     const pymic_backend_ops *pymic_backend_N(unsigned abi_version);
 *
 * with PYMIC_BACKEND_ABI; the plugin returns NULL when it was built
 * against another version (and the table's own abi_version must match).
 * A plugin includes this header and engine.h (installed with pymic.h
 * under pymic_engine/) and links libpymic.  tests/c/plugins/loopback.c is
 * a complete one: device memory in a region of its own at addresses this
 * process cannot dereference, kernels found by number, commands completed
 * out of order by a progress thread (or, built as looppoll, by poll).
 */
#ifndef PYMIC_BACKEND_H
#define PYMIC_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The version of this table's layout and contracts; bumped whenever either
 * changes, so a plugin built against another one is refused by name. */
#define PYMIC_BACKEND_ABI 4u

/* What copy and invoke return: the command is done, or in flight (the
 * backend completes it later with pymic_command_complete). */
enum { PYMIC_COMMAND_DONE = 0, PYMIC_COMMAND_IN_FLIGHT = 1 };

/* The core's calls for backends are exported from libpymic (everything
 * else in it is hidden) but are not part of include/pymic.h's API. */
#define PYMIC_BACKEND_API __attribute__((visibility("default")))

struct pymic_device;
struct pymic_stream;
struct pymic_command;
struct pymic_block;
struct pymic_alloc;

typedef struct pymic_backend_ops {
    /* PYMIC_BACKEND_ABI as the backend was built. */
    unsigned abi_version;
    /* The backend's name: what PYMIC_DEVICES calls it and what
     * pymic_device_info.kind reports ("host"). */
    const char *kind;
    /* Device memory is mapped in the engine's process at the device
     * addresses (pymic_device_info.host_addressable): the Python layer
     * may then hand it to other libraries (DLPack) without a copy. */
    bool host_addressable;

    /* ---- configuration (at engine initialisation, on the initialising
     * thread, no lock held).  PYMIC_DEVICES accepts "N" and "N*COUNT"
     * for every backend; the CPUs of the process are split over the
     * devices of such an entry (a device's worker threads run there).
     * With cpu_specs, "N:CPUS" (a CPU list such as 0-3,6) and "N:auto"
     * (host:auto) are accepted too.  Otherwise "N:TEXT" goes to
     * parse_spec (NULL: refused), which says whether TEXT is a valid
     * specification (else false with the reason in `why`); the device
     * keeps TEXT in device->spec for open to read. */
    bool cpu_specs;
    bool (*parse_spec)(const char *text, char *why, size_t why_len);

    /* ---- device life.  Called once per device, before its first
     * stream, allocation or library, with the device's open lock held
     * (no other engine lock): by engine initialisation on the
     * initialising thread, or -- for a device set up on first use
     * (host:auto's entries of the node's other ranks) -- on the thread
     * of that first use.  Sets up device->backend; false if the system
     * refuses (out of memory). */
    bool (*open)(struct pymic_device *device);

    /* ---- memory.  block_get runs on the allocating thread, no lock held
     * (the core has already counted the bytes against the device's
     * limit); it returns a block whose ptr (the device address handed to
     * the user) is aligned to `alignment` (a power of two) and covers
     * nbytes, or NULL when the device has no memory.  trim (NULL:
     * nothing cached) runs on the allocating thread, no lock held, before
     * an allocation is refused: it gives cached memory back.
     * block_put runs (a) on the allocating thread when the allocation
     * could not be tracked, no lock held; (b) on the thread that runs a
     * FREE command (a runner), no lock held, when no other stream still
     * uses the memory; (c) otherwise as a parked release, with the
     * engine's parked-release lock held, on whichever thread polls the
     * parked releases next: a runner after any command (or at a FREE),
     * a thread in pymic_mem_alloc, pymic_device_sync or
     * pymic_library_unload, or the backend's own thread inside
     * pymic_command_complete.  So block_put
     * must not wait for any command to complete, nor for the thread that
     * calls pymic_command_complete. */
    struct pymic_block *(*block_get)(struct pymic_device *device, size_t nbytes,
                                     size_t alignment);
    void (*block_put)(struct pymic_device *device, struct pymic_block *block);
    void (*trim)(struct pymic_device *device);
    /* The bytes the device can hold, which its default memory limit
     * becomes (PYMIC_MEMORY_LIMIT overrides it); NULL: the host's memory
     * (or its cgroup's limit) divided by the number of devices, right for
     * devices whose memory is this machine's.  Called once, right after
     * open, on the same thread with the same lock held. */
    size_t (*memory_capacity)(struct pymic_device *device);

    /* ---- PYMIC_CHECK=bounds.  bounds_arm (NULL: the backend cannot
     * check bounds, and PYMIC_CHECK=bounds is refused at initialisation
     * naming the device kind) prepares the checks of a new allocation
     * before it is visible to any command: on the allocating thread, no
     * lock held.  bounds_after_invoke (NULL: the backend checks inside its
     * invoke, e.g. a remote engine reporting a damaged canary with the
     * command's failure) runs on whoever ran the invoke, right after it,
     * and reports damage with pymic_stream_fail_status.  A host-
     * addressable backend whose blocks leave room for canaries (bounds.c:
     * pymic_bounds_span) uses the core's canaries, pymic_bounds_arm and
     * pymic_bounds_after_invoke, which read and write device memory at
     * the device addresses; no other backend may.  bounds_after_invoke is
     * not called for an invoke left in flight: such a backend checks when
     * the kernel has run, and fails the command before completing it. */
    void (*bounds_arm)(struct pymic_device *device, const struct pymic_alloc *alloc);
    void (*bounds_after_invoke)(struct pymic_stream *stream, const struct pymic_command *cmd);

    /* ---- streams.  start_worker runs on the creating thread with the
     * stream listed on its device (device->lock not held): it starts
     * stream->worker running body(stream) (pymic_worker_start_pinned: a
     * thread on the device's CPUs), or records the error and fails.
     * worker_exit runs on the worker after its STOP command -- every
     * command of the stream has completed by then -- before the stream
     * leaves its device: it releases what the backend kept per worker
     * (stream->backend_worker). */
    int (*start_worker)(struct pymic_stream *stream, void *(*body)(void *));
    void (*worker_exit)(struct pymic_stream *stream);

    /* ---- commands, on the stream's runner (its worker, or a syncing
     * thread where caller_may_run allows), no lock held, one call at a
     * time per stream; `seq` is the command's sequence number.  copy
     * carries out a PYMIC_CMD_COPY (cmd->u.copy: direction, ranges
     * already checked against the device's allocations, overlap flag:
     * only a d2d copy, or any copy on a host-addressable device, may
     * overlap); invoke runs the kernel of handle cmd->u.call.kernel_handle
     * with cmd->nargs arguments.  Each argument has a kind (engine.h, enum
     * pymic_arg_kind: DEVICE, a device address inside a live allocation of
     * the device; SCALAR, arg_size[i] bytes at cmd->scalars +
     * arg_offset[i]; ADDRESS, any other value, NULL included, passed on as
     * is); cmd->args[i] holds what a kernel of this process would be given
     * (the host backend passes it unchanged).  Each returns
     * PYMIC_COMMAND_DONE once the command has been carried out (a failure
     * recorded with pymic_stream_fail* first), or PYMIC_COMMAND_IN_FLIGHT
     * (see "in flight" above).  The runner may block in either for as long
     * as it takes; while commands are in flight the worker goes on
     * submitting the stream's next copies and invokes (at most 64 ahead of
     * `completed`), but runs a FREE and STOP only once every command
     * before it has completed; an event RECORD and an event WAIT too,
     * unless the backend resolves event waits itself (record, wait_mark
     * below): then they are submitted like invokes.  A
     * command already submitted when one before it fails is not held back
     * by the core: the backend decides whether it still runs (the core
     * skips only commands not yet submitted).
     * poll (NULL: the backend completes commands by itself, e.g. from a
     * progress thread) drives the completion of the stream's commands in
     * flight: the worker calls it in a loop whenever commands are in
     * flight (idle, at a fence, with a full window), and a thread waiting
     * for such a command (a sync, a device sync) calls it in a loop for
     * the spin window (PYMIC_SPIN_NS), then sleeps until the worker has
     * completed it.  So it may run on several threads at once for the
     * same stream, with no lock held; it paces itself (a call that finds
     * nothing done may yield or sleep, longer the longer the wait). */
    int (*copy)(struct pymic_stream *stream, const struct pymic_command *cmd, uint64_t seq);
    int (*invoke)(struct pymic_stream *stream, const struct pymic_command *cmd, uint64_t seq);
    /* Drive completion of this stream's commands in flight (NULL: the
     * backend completes them by itself, e.g. from a progress thread).
     * With a poll, the worker calls it in a loop while commands are in
     * flight, and a waiting thread for its spin window (see above). */
    void (*poll)(struct pymic_stream *stream);

    /* ---- events resolved on the device (all three NULL: every event
     * wait is resolved on the host -- the waiting stream's worker waits,
     * once every command before the wait has completed, until the
     * recording stream's runner has completed the record).  A backend
     * whose device can order its own streams sets record and wait_mark
     * (and mark_forget), so a wait between two streams of one device
     * costs no round trip through the host:
     *   record runs on the stream's runner (as copy and invoke, no lock
     *   held, in stream order, possibly while commands before it are in
     *   flight) for every RECORD of a stream of the device: it hands the
     *   point cmd->u.mark->backend_id (a number unique in this process,
     *   never 0) to the device, to be marked there once every command
     *   before it has been carried out; if pymic_stream_failed_before
     *   (stream, seq) says so -- or a command before it fails on the
     *   device, or the device skipped the record's commands -- the point
     *   is marked failed.  It returns PYMIC_COMMAND_IN_FLIGHT (completed
     *   later with pymic_command_complete, after the failure of any
     *   command before it was recorded) or PYMIC_COMMAND_DONE (e.g. the
     *   device is lost: the record failed with pymic_stream_fail first).
     *   Either way the core sets the host's mark (its failure, `done`)
     *   when `completed` passes the record, so event sync, query, elapsed
     *   and waits on the host keep working.
     *   wait_mark runs on the stream's worker, no lock held, for a WAIT
     *   whose mark was recorded on this very device (same generation:
     *   not before a reset) and is not done yet; other waits -- an event
     *   of another device, a mark already done -- the core resolves on
     *   the host.  It hands the wait for point backend_id to the device:
     *   what the stream sends after it runs only once the point is
     *   marked, and a point marked failed makes the wait fail and skips
     *   what follows it on the stream until the failure is reported (the
     *   core's rule).  It returns PYMIC_COMMAND_IN_FLIGHT, and completes
     *   the wait with pymic_command_complete -- once the device let it go
     *   on, after pymic_mark_wait_resolved(stream, seq, failed), no lock
     *   held: it blocks until the record has completed on the host too
     *   (so the event is done once this stream has passed the wait) and
     *   fails the wait if the record came after a failure; a device lost
     *   or reset meanwhile fails the wait with pymic_stream_fail* and
     *   completes it, never leaving it pending.
     *   Or it returns PYMIC_COMMAND_DONE without doing anything (e.g. the
     *   device is lost): the core then waits on the host as above.  The
     *   worker goes on submitting after a wait in flight.
     *   mark_forget runs when the host's mark is freed -- no command,
     *   event or wait refers to it any more, so the device will see no
     *   wait for the point -- on any thread, possibly with a stream's
     *   completion lock held: it only notes the number (the device may
     *   drop the point later), never waits nor calls into the core. */
    int (*record)(struct pymic_stream *stream, const struct pymic_command *cmd, uint64_t seq);
    int (*wait_mark)(struct pymic_stream *stream, const struct pymic_command *cmd, uint64_t seq);
    void (*mark_forget)(struct pymic_device *device, uint64_t backend_id);

    /* ---- caller runs (never with PYMIC_CALLER_RUNS=0, which the core
     * reads for every backend).  caller_may_run (NULL: never) runs on a thread
     * about to wait in a sync of the device, no lock held: whether that
     * thread may run the stream's next commands itself (the host: when its
     * CPUs are all the device's; any backend whose submission is cheap
     * may say yes -- a command it leaves in flight is then waited for as
     * any other).  run_on_caller (NULL: pymic_command_execute as it is)
     * runs one command on such a thread and returns what that returned
     * (the host sets the OpenMP team size around it).  release_thread
     * (NULL: nothing) runs on a worker or a syncing thread that ran
     * kernels and will not run more for a while: it lets go of what they
     * left on the thread (the host: its OpenMP pool). */
    bool (*caller_may_run)(const struct pymic_device *device);
    int (*run_on_caller)(struct pymic_stream *stream, struct pymic_command *cmd, uint64_t seq);
    void (*release_thread)(void);

    /* ---- libraries.  library_open runs on the loading thread, no lock
     * held.  It loads the regular file
     * open as `fd` for the device -- that very file (the handle is the
     * backend's).  With `by_path`, `path` is absolute and the backend
     * may load the file by that name (so `$ORIGIN` names its directory)
     * if the object the loader returns is mapped from the file open as
     * `fd`; else, and always without `by_path`, it loads the descriptor
     * and `path` only names the file in reasons.  It owns `fd` from the
     * call on: it closes it on failure, or once the file is no longer
     * needed.  kernel_find returns an opaque non-zero handle of function
     * `name` defined by the library itself (not by its dependencies, not
     * a data object), or 0 with the reason: the core stores it and hands
     * it back to invoke (cmd->u.call.kernel_handle), never calls or reads
     * it; pymic_kernel_address reports it (the host and process backends'
     * handle is the function's address in the process that runs it).
     * kernel_find runs on the looking-up thread with the engine's library
     * lock held (it must not call anything that takes it).  library_close
     * runs once no queued command can call into the library any more:
     * on the loading thread when the library could not be tracked, on the
     * unloading thread when every stream of the device had already passed
     * its commands (no lock held), or else as a parked release, with the
     * parked-release lock held on any thread that polls them (see
     * block_put): it must not wait for a command to complete. */
    void *(*library_open)(struct pymic_device *device, int fd, const char *path, bool by_path,
                          char *why, size_t why_len);
    uint64_t (*kernel_find)(struct pymic_device *device, void *handle, const char *name,
                            char *why, size_t why_len);
    void (*library_close)(struct pymic_device *device, void *handle);

    /* ---- health.  reset (NULL: nothing to restart) runs on the thread
     * that called pymic_device_reset, no lock held -- while the device's
     * workers may be running or submitting commands (it is what stops a
     * kernel that never returns).  It makes a lost (or live) device usable
     * afresh, clearing device->lost and bumping device->generation; the
     * failures of commands that had been claimed when reset was called
     * are forgotten, and every command in flight must be completed
     * (failed) by the backend.  A backend that loses its device calls
     * pymic_device_mark_lost (any thread), and fails each later command
     * with pymic_stream_fail; loss is generic state, read by the core
     * with pymic_device_lost. */
    int (*reset)(struct pymic_device *device);

    /* ---- fork().  Called by the engine's pthread_atfork handlers for
     * devices that are open, in its fixed lock order (engine.c): with
     * every device's open lock, the trace and library locks, every
     * stream list, the event and the parked-release locks held, before
     * the allocation tables' locks.  prefork takes the backend's locks of
     * this device, postfork_parent releases them, postfork_child makes
     * them fresh in the child (where the backend's threads do not exist).
     * Each may be NULL (nothing to do). */
    void (*prefork)(struct pymic_device *device);
    void (*postfork_parent)(struct pymic_device *device);
    void (*postfork_child)(struct pymic_device *device);
} pymic_backend_ops;

/* The host device (host/) and the process device (proc/). */
extern const pymic_backend_ops pymic_host_backend;
extern const pymic_backend_ops pymic_proc_backend;

/* ---- the core's calls for backends (declared in engine.h, exported from
 * libpymic with PYMIC_BACKEND_API: the only libpymic symbols a plugin may
 * use besides include/pymic.h's API, which operations must not call):
 *   pymic_stream_fail(stream, seq, ...), pymic_stream_fail_status(...)
 *       command `seq` failed: recorded (the oldest unreported failure by
 *       sequence number is kept) and reported by the next wait that covers
 *       it.  Any thread; before completing the command.
 *   pymic_command_complete(stream, seq)
 *       a command left in flight is done.  Any thread, no backend lock
 *       held (it may run parked releases: block_put, library_close); the
 *       stream may be gone once it returns for the stream's last command.
 *   pymic_stream_failed_before(stream, seq), pymic_mark_wait_resolved(...)
 *       for record and wait_mark (see there).
 *   pymic_device_mark_lost(device, ...)
 *       the device is gone (first reason wins).  Any thread.
 *   pymic_worker_start_pinned(stream, body)
 *       a worker thread on the device's CPUs, for start_worker.
 *   pymic_kernel_call(fn, nargs, args)
 *       call a C kernel of this process with nargs pointer arguments.
 *   pymic_fail, pymic_log, pymic_now_ns
 *       record an error message (start_worker), the debug log, the clock.
 */

/* What a plugin's entry point is. */
typedef const pymic_backend_ops *(*pymic_backend_entry)(unsigned abi_version);

/* The backend called `name` (registry.c): built in, or the plugin
 * libpymic_<name>.so, loaded once and kept for the process's life.  NULL
 * with the reason in `why` (which file was looked for where, and why it
 * could not be used). */
const pymic_backend_ops *pymic_backend_find(const char *name, char *why, size_t why_len);

#endif /* PYMIC_BACKEND_H */
