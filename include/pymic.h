/*
 * pymic.h -- public C API of libpymic, the pymic offload engine.
 *
 * libpymic runs compute kernels (functions in shared libraries) on offload
 * devices.  A device has its own memory and its own worker threads; work is
 * queued on streams and runs asynchronously.  Today's only backend is the
 * host device: a partition of this machine's cores with private memory.
 *
 * Conventions
 *   - Every call returns an int status: PYMIC_OK (0) on success, a negative
 *     PYMIC_ERR_* code on failure.  Query calls that answer yes/no return
 *     1 or 0 on success.  Outputs go through pointer parameters.
 *   - After a failure, pymic_last_error() returns a message for the calling
 *     thread naming the operation, the device and the reason.  A failed call
 *     changes nothing and leaves the engine usable.
 *   - Devices are numbered 0 .. count-1.  Device 0 always exists.
 *   - Device pointers are the addresses returned by pymic_mem_alloc.  Every
 *     allocation is tracked; transfers and frees are checked against it.
 *   - All calls are thread-safe.  Several host threads may enqueue into one
 *     stream; commands of one stream run in the order they were enqueued.
 *   - Destroying (streams, events, libraries) never waits for device work;
 *     resources are released once the work queued before has completed.
 *   - fork(): the child may create its own streams; the parent's streams
 *     and records pending on them give errors there, never hang.
 *   - The engine initialises itself on first use (reading PYMIC_DEVICES,
 *     PYMIC_DEBUG, PYMIC_SPIN_NS, PYMIC_MEMORY_LIMIT); pymic_init() lets a
 *     program do it explicitly and see configuration errors.
 */
#ifndef PYMIC_H
#define PYMIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define PYMIC_API
#else
#define PYMIC_API __attribute__((visibility("default")))
#endif

#define PYMIC_VERSION_MAJOR 0
#define PYMIC_VERSION_MINOR 1
#define PYMIC_VERSION_PATCH 0

/* Most arguments one kernel invocation may take. */
#define PYMIC_MAX_KERNEL_ARGS 128
/* Most scalar bytes one invocation may carry (each scalar rounded up to 16). */
#define PYMIC_MAX_SCALAR_BYTES (16 * PYMIC_MAX_KERNEL_ARGS)
/* Longest device kind / name strings, including the terminating NUL. */
#define PYMIC_NAME_MAX 64

/* ------------------------------------------------------------------ status */

enum pymic_status {
    PYMIC_OK = 0,
    PYMIC_ERR_INVALID_ARGUMENT = -1, /* NULL where an object is needed, zero size,
                                        bad alignment, unknown device number     */
    PYMIC_ERR_OUT_OF_MEMORY = -2,    /* device memory (or its limit) exhausted    */
    PYMIC_ERR_INVALID_POINTER = -3,  /* not a live allocation of this device;
                                        double free                              */
    PYMIC_ERR_OUT_OF_RANGE = -4,     /* transfer beyond the end of an allocation  */
    PYMIC_ERR_LIBRARY = -5,          /* shared object not found or not loadable   */
    PYMIC_ERR_KERNEL_NOT_FOUND = -6, /* library does not export that name         */
    PYMIC_ERR_WRONG_DEVICE = -7,     /* object belongs to another device          */
    PYMIC_ERR_TOO_MANY_ARGS = -8,    /* more than PYMIC_MAX_KERNEL_ARGS arguments
                                        or PYMIC_MAX_SCALAR_BYTES scalar bytes    */
    PYMIC_ERR_CONFIG = -9,           /* bad PYMIC_DEVICES / environment setting   */
    PYMIC_ERR_SYSTEM = -10,          /* the OS refused (thread creation, ...)     */
    PYMIC_ERR_NOT_RECORDED = -11,    /* event used before it was ever recorded    */
    PYMIC_ERR_TIMEOUT = -12,         /* a timed wait ended before its target; the
                                        work goes on and may be waited for again */
    PYMIC_ERR_DEVICE_LOST = -13      /* the device's process died or was killed
                                        (a kernel crashed, exited or timed out);
                                        see pymic_device_reset                   */
};

/* Message describing the calling thread's most recent failure ("" if none).
 * The string stays valid until the next failing call on this thread. */
PYMIC_API const char *pymic_last_error(void);

/* Short constant name of a status code, e.g. "PYMIC_ERR_OUT_OF_RANGE". */
PYMIC_API const char *pymic_status_name(int status);

/* ----------------------------------------------------------------- engine */

/* Initialise the engine now (idempotent).  Parses PYMIC_DEVICES:
 *   "host"            one device on all cores of the process (default)
 *   "host*N"          N devices that split the cores evenly (N > cores:
 *                     devices share cores round-robin)
 *   "host:0-3;host:4,5"  explicit CPU lists, one device per ';'-item
 *   "host:auto"       one device per MPI rank of this node, the same list on
 *                     every rank; rank r's share of the cores is device r
 *                     (see pymic_local_device_index); devices of the other
 *                     ranks are set up only if used
 * PYMIC_MEMORY_LIMIT ("512M", "2G", bytes) bounds each device's memory.
 * PYMIC_SPIN_NS sets the spin window of waits (see pymic_set_spin_ns).
 * PYMIC_DEBUG >= 1 prints engine messages on stderr prefixed "PYMIC:". */
PYMIC_API int pymic_init(void);

/* Version as major*10000 + minor*100 + patch. */
PYMIC_API int pymic_version(void);

/* How long a waiter (host sync, idle worker) spins before it sleeps, in
 * nanoseconds.  Spinning makes small offloads fast; sleeping keeps an idle
 * process at ~0% CPU.  Default 50000 (50 us); 0 means sleep at once. */
PYMIC_API int pymic_set_spin_ns(uint64_t ns);
PYMIC_API int pymic_get_spin_ns(uint64_t *ns);

/* Debug level (PYMIC_DEBUG); messages go to stderr prefixed "PYMIC:". */
PYMIC_API int pymic_set_debug_level(int level);
PYMIC_API int pymic_get_debug_level(int *level);

/* ---------------------------------------------------------------- devices */

typedef struct pymic_device_info {
    int id;                       /* device number                          */
    char kind[PYMIC_NAME_MAX];    /* backend: "host", "proc" or a plugin's  */
    char name[PYMIC_NAME_MAX];    /* human-readable, e.g. "host:0-1"        */
    int ncores;                   /* cores (CPUs) the device runs on        */
    size_t memory_total;          /* bytes the device may hold (its limit)  */
    size_t memory_used;           /* bytes in live allocations              */
    int host_addressable;         /* 1 if this process can read and write the
                                     device's memory at its device addresses
                                     (host and proc devices); 0 if it lives
                                     elsewhere                              */
} pymic_device_info;

/* Number of devices (at least 1) in *count. */
PYMIC_API int pymic_device_count(int *count);
/* Fill *info for `device`; memory_used is read atomically with the limit. */
PYMIC_API int pymic_device_get_info(int device, pymic_device_info *info);

/* The CPU numbers of a device: writes up to `max` of them to `cpus`, the
 * total to *count. */
PYMIC_API int pymic_device_get_cpus(int device, int *cpus, int max, int *count);

/* The device this process calls its own, in *device.  Under
 * PYMIC_DEVICES=host:auto (or proc:auto) in an MPI job, every rank of a
 * node sees the same list, one device per local rank, and its own is
 * number local rank (the launcher's OMPI_COMM_WORLD_LOCAL_RANK,
 * MPI_LOCALRANKID or SLURM_LOCALID).  With other layouts, the node's
 * ranks are grouped in equal blocks over the devices: local rank *
 * count / local size (0 outside an MPI job).  CONFIG if the launcher's
 * variables are malformed. */
PYMIC_API int pymic_local_device_index(int *device);

/* Memory limit of a device in bytes (0 = back to the default: physical
 * memory divided among devices).  Fails with OUT_OF_MEMORY if below the
 * bytes already allocated. */
PYMIC_API int pymic_device_set_memory_limit(int device, size_t bytes);

/* Block until every stream of the device (as of this call) has drained.
 * Holds no lock while waiting: streams may be created and destroyed
 * meanwhile.  Returns the oldest unreported failure of one of them, or
 * else of a stream destroyed before it reported one (once each). */
PYMIC_API int pymic_device_sync(int device);
/* The same, giving up with TIMEOUT after `timeout_ns` nanoseconds. */
PYMIC_API int pymic_device_sync_timeout(int device, uint64_t timeout_ns);
/* The same, saying which commands the calling thread may run itself while
 * it waits (PYMIC_WAIT_RUNS_*, see pymic_stream_wait_seq_runs). */
PYMIC_API int pymic_device_sync_runs(int device, uint64_t timeout_ns, int runs);
/* For tests and tools: how many streams the device-wide waits of `device`
 * (device syncs, library unloads) have looked at so far.  They look only
 * at streams that have had commands since the last such wait found them
 * idle, so idle streams cost a device sync nothing. */
PYMIC_API int pymic_device_sync_visits(int device, uint64_t *visits);

/* ---------------------------------------------------------------- streams */

typedef struct pymic_stream pymic_stream;

/* A new stream on `device`, with its own worker thread pinned to the
 * device's cores.  Streams of one device run concurrently. */
PYMIC_API int pymic_stream_create(int device, pymic_stream **stream);

/* Destroy the stream without waiting: everything enqueued before still
 * runs, in order, and the stream's resources go when its worker has passed
 * the last command.  The handle is dead at once (do not use it again);
 * device syncs and library unloads still see the stream until it has
 * drained.  Only a full command ring can make this call wait (for room). */
PYMIC_API int pymic_stream_destroy(pymic_stream *stream);

/* Block until everything enqueued so far has completed. */
PYMIC_API int pymic_stream_sync(pymic_stream *stream);

/* 1 if everything enqueued so far has completed, 0 if not. */
PYMIC_API int pymic_stream_query(pymic_stream *stream);

/* The device number of a stream (negative status if stream is NULL). */
PYMIC_API int pymic_stream_device(const pymic_stream *stream);
/* The stream's number on its device: 1, 2, ... in the order the device's
 * streams were created; error messages name streams by it ("sync of
 * stream 3 on device 0: ...").  Negative status if stream is NULL. */
PYMIC_API int pymic_stream_number(const pymic_stream *stream);

/* Sequence numbers: each enqueued command gets the next number (starting at
 * 1).  last_enqueued is the newest command's number, completed the number
 * up to which every command has finished.  A host object used by a command
 * enqueued before reading last_enqueued may be released once completed has
 * reached that value (this is how the Python layer keeps buffers alive). */
PYMIC_API uint64_t pymic_stream_last_enqueued(const pymic_stream *stream);
PYMIC_API uint64_t pymic_stream_completed(const pymic_stream *stream);

/* Block until the stream's completed sequence number reaches `seq`. */
PYMIC_API int pymic_stream_wait_seq(pymic_stream *stream, uint64_t seq);
/* The same, giving up with TIMEOUT after `timeout_ns` nanoseconds.  Timed
 * waits let a caller stay responsive (the Python layer waits in slices and
 * checks for Ctrl-C between them); nothing is cancelled by a timeout.
 * TIMEOUT is an expected outcome and leaves pymic_last_error() as it was. */
PYMIC_API int pymic_stream_wait_seq_timeout(pymic_stream *stream, uint64_t seq,
                                            uint64_t timeout_ns);

/* Which commands a waiting thread may run itself instead of leaving them
 * to the stream's worker ("caller runs", docs/design.md "Threads, cores,
 * spinning and sleeping"), where the device allows it at all.  A command
 * run on the waiting thread cannot be interrupted and its wait cannot
 * return before it ends, so a wait that must stay responsive runs only
 * quick commands: frees, event records, copies up to 16 MiB, kernels
 * whose last run on the stream was short.  The calls above choose for
 * their caller: an untimed wait runs any command, a timed wait only quick
 * ones (it must return near its deadline), a timeout of 0 (a poll)
 * none. */
enum {
    PYMIC_WAIT_RUNS_NOTHING = 0, /* run nothing: only wait */
    PYMIC_WAIT_RUNS_QUICK = 1,   /* run commands known to end soon */
    PYMIC_WAIT_RUNS_ANY = 2      /* run whatever the worker has not started */
};
/* pymic_stream_wait_seq_timeout with an explicit choice: `runs` is one of
 * PYMIC_WAIT_RUNS_*, independent of the timeout (UINT64_MAX: none). */
PYMIC_API int pymic_stream_wait_seq_runs(pymic_stream *stream, uint64_t seq,
                                         uint64_t timeout_ns, int runs);

/* How many commands may be outstanding (enqueued and not yet completed,
 * the running one included) before an enqueue blocks: an enqueue blocks
 * while last_enqueued - completed == capacity, until the oldest command
 * completes.  A caller that must not block (e.g. one holding a lock other
 * threads need) can wait for room first:
 *     if (last_enqueued + k - completed > capacity)
 *         pymic_stream_wait_seq(stream, last_enqueued + k - capacity);
 * The same for every stream (the size of its command ring); negative
 * status (INVALID_ARGUMENT) if `stream` is NULL. */
PYMIC_API int pymic_stream_capacity(const pymic_stream *stream);

/* ----------------------------------------------------------------- events */

typedef struct pymic_event pymic_event;

/* A new, never-recorded event (query/sync on it give NOT_RECORDED; CUDA
 * would call a never-recorded event complete, pymic calls it an error). */
PYMIC_API int pymic_event_create(pymic_event **event);
/* Destroy the event without waiting: queued records and waits keep what
 * they need and complete normally. */
PYMIC_API int pymic_event_destroy(pymic_event *event);

/* Enqueue a marker: the event completes (and takes its timestamp) when the
 * stream reaches this point.  Re-recording moves the event to the new point
 * for calls made from then on; waits queued before keep waiting for the
 * record they saw (events are snapshots, as in CUDA). */
PYMIC_API int pymic_event_record(pymic_event *event, pymic_stream *stream);

/* Later commands of `stream` wait until the event's record as of this call
 * has completed (a later re-record does not change that).  If a command
 * before that record failed, the wait fails `stream` with the same cause:
 * its later kernels and copies are not run and its next sync returns the
 * failure.  The host does not block.  The event may be on any device.  NOT_RECORDED if the event
 * was never recorded.  The event may be destroyed while the wait is still
 * queued.  In a child of fork(), a record still pending on a parent's
 * stream is SYSTEM (it can never complete there). */
PYMIC_API int pymic_stream_wait_event(pymic_stream *stream, pymic_event *event);

/* Block until the event's record as of this call has completed.
 * NOT_RECORDED if never recorded; SYSTEM in a fork() child for a record
 * pending on a parent's stream. */
PYMIC_API int pymic_event_sync(pymic_event *event);
/* The same, giving up with TIMEOUT after `timeout_ns` nanoseconds. */
PYMIC_API int pymic_event_sync_timeout(pymic_event *event, uint64_t timeout_ns);

/* 1 if completed, 0 if pending; NOT_RECORDED if never recorded. */
PYMIC_API int pymic_event_query(pymic_event *event);

/* Seconds from `start` to `end`; both must have completed (else
 * INVALID_ARGUMENT) and been recorded (else NOT_RECORDED). */
PYMIC_API int pymic_event_elapsed(pymic_event *start, pymic_event *end, double *seconds);

/* ---------------------------------------------------------- device memory */

/* Allocate `nbytes` (> 0) of device memory aligned to `alignment` (a power
 * of two; 0 means 64).  Synchronous.  Short of memory, it first waits for
 * the memory already freed on any stream of the device to come back (frees
 * still queued behind other commands, and frees waiting for other streams'
 * last uses); the OUT_OF_MEMORY message says how much was pending release. */
PYMIC_API int pymic_mem_alloc(int device, size_t nbytes, size_t alignment, void **device_ptr);
/* The same, except that it never waits: memory freed but not yet back
 * counts as used.  Callers that must not block where they are (the Python
 * layer holds the GIL) try this first and call pymic_mem_alloc where they
 * may wait. */
PYMIC_API int pymic_mem_alloc_nowait(int device, size_t nbytes, size_t alignment,
                                     void **device_ptr);

/* Stream-ordered free: the memory is released after every command enqueued
 * on `stream` before this call has completed, *and* after every command of
 * any other stream that used the allocation (a copy to or from it, or an
 * invoke given a pointer into it) -- uses are recorded automatically.  The
 * pointer is dead at once: using or freeing it again is INVALID_POINTER.
 * Memory that waits for other streams still counts as used until they have
 * passed their last use; a device sync or an allocation short of memory
 * returns it. */
PYMIC_API int pymic_mem_free(pymic_stream *stream, void *device_ptr);

/* Describe the live allocation containing `device_ptr` (which may point
 * inside it): its start and size.  INVALID_POINTER if there is none. */
PYMIC_API int pymic_mem_query(int device, const void *device_ptr, void **base, size_t *nbytes);

/* Raw address of `device_ptr` + `offset` as the device's code sees it,
 * after checking it lies inside a live allocation. */
PYMIC_API int pymic_mem_translate(int device, const void *device_ptr, size_t offset, uintptr_t *address);

/* Asynchronous copies, ordered in `stream`.  Device-side ranges are
 * [ptr + offset, ptr + offset + nbytes) and must lie inside one live
 * allocation of the stream's device (OUT_OF_RANGE otherwise; INVALID_POINTER
 * for an unknown pointer, WRONG_DEVICE for another device's memory).  The
 * host buffer must stay valid until the copy completes.  nbytes == 0 is
 * INVALID_ARGUMENT. */
PYMIC_API int pymic_memcpy_h2d(pymic_stream *stream, void *device_dst, size_t dst_offset,
                               const void *host_src, size_t nbytes);
PYMIC_API int pymic_memcpy_d2h(pymic_stream *stream, void *host_dst, const void *device_src,
                               size_t src_offset, size_t nbytes);
PYMIC_API int pymic_memcpy_d2d(pymic_stream *stream, void *device_dst, size_t dst_offset,
                               const void *device_src, size_t src_offset, size_t nbytes);

/* -------------------------------------------------------------- libraries */

typedef struct pymic_library pymic_library;
typedef struct pymic_kernel pymic_kernel;

/* Load a shared object on a device.  `path` is opened once (relative to
 * the working directory; no search) and what the device runs is that open
 * file: a library rebuilt at the same path (a new file) is a new library
 * with the new code, while the same file loaded twice (through any path)
 * is one object for the system loader.  The device loads it by its path
 * (so `$ORIGIN` in its run path names its directory) when the object the
 * loader returns for that path is the open file (same device and inode),
 * and else through the descriptor (/proc/self/fd/N): a rebuilt library
 * whose old file is still loaded under that name.  Failure is LIBRARY with
 * the file and the reason (missing, not a regular file, wrong format,
 * undefined symbol). */
PYMIC_API int pymic_library_load(int device, const char *path, pymic_library **library);

/* pymic_library_load for a file the caller opened from `path` as `fd`
 * (for reading; the caller keeps its descriptor): the device runs that
 * file, loaded by `path` when that gives this very file, as above. */
PYMIC_API int pymic_library_load_opened(int device, int fd, const char *path,
                                        pymic_library **library);

/* The same for a file the caller has open as `fd` and checked, loaded
 * only through the descriptor, never by a name: a caller that checked it
 * with fstat knows what runs, whatever a path names meanwhile (pymic's
 * compile cache).  `$ORIGIN` in its run path names /proc/self/fd.  `path`
 * is only its name, for messages and pymic_library_path. */
PYMIC_API int pymic_library_load_fd(int device, int fd, const char *path,
                                    pymic_library **library);

/* Unload without waiting: the shared object is closed once every stream of
 * the device has passed what was queued when this was called.  The library
 * handle and its kernel handles are dead at once. */
PYMIC_API int pymic_library_unload(pymic_library *library);

/* The path the library was loaded from; the device it is loaded on. */
PYMIC_API const char *pymic_library_path(const pymic_library *library);
PYMIC_API int pymic_library_device(const pymic_library *library);

/* Find a function the library defines by name (not a data object, not a
 * symbol of a library it depends on).  The handle is owned by the library,
 * cached (same name, same handle) and valid until the library is unloaded.
 * KERNEL_NOT_FOUND names kernel, library and reason. */
PYMIC_API int pymic_kernel_find(pymic_library *library, const char *name, pymic_kernel **kernel);

/* A kernel's name, its function's address, its device and its library
 * (NULL / negative status for a NULL kernel).  On a process device the
 * address is the device process's: never call it from the host.  On a
 * device of another backend (a plugin) it is that backend's opaque kernel
 * handle, which names the kernel there and is no address at all. */
PYMIC_API const char *pymic_kernel_name(const pymic_kernel *kernel);
PYMIC_API void *pymic_kernel_address(const pymic_kernel *kernel);
PYMIC_API int pymic_kernel_device(const pymic_kernel *kernel);
PYMIC_API pymic_library *pymic_kernel_library(const pymic_kernel *kernel);

/* ----------------------------------------------------------------- invoke */

/* One kernel argument.  The kernel receives one pointer per argument:
 *   size == 0: `data` itself (a device pointer, or NULL);
 *   size  > 0: a pointer to a copy of the `size` bytes at `data`, taken at
 *              enqueue time and aligned to 16 bytes (scalars).          */
typedef struct pymic_arg {
    const void *data;
    size_t size;
} pymic_arg;

/* Enqueue `kernel` with `nargs` arguments (0 .. PYMIC_MAX_KERNEL_ARGS).
 * WRONG_DEVICE if the kernel was found on another device than the stream's.
 * Never allocates: a full command ring makes the caller wait for room. */
PYMIC_API int pymic_invoke(pymic_stream *stream, const pymic_kernel *kernel, int nargs,
                           const pymic_arg *args);


/* ---------------------------------------------------------------- tracing */

/* A timeline of every command (enqueue time on the host, start and end on
 * the device, kernel name, bytes moved, stream and device) and of the
 * host's waits.  pymic.trace / PYMIC_TRACE turn it into a Chrome/Perfetto
 * trace file.  While off, recording costs one relaxed load per command. */

/* Kinds of traced commands. */
enum pymic_trace_command_kind {
    PYMIC_TRACE_INVOKE = 1,
    PYMIC_TRACE_COPY_H2D = 2,
    PYMIC_TRACE_COPY_D2H = 3,
    PYMIC_TRACE_COPY_D2D = 4,
    PYMIC_TRACE_FREE = 5,
    PYMIC_TRACE_RECORD_EVENT = 6,
    PYMIC_TRACE_WAIT_EVENT = 7
};

/* Kinds of host waits. */
enum pymic_trace_wait_kind {
    PYMIC_TRACE_WAIT_STREAM = 1, /* stream sync, waiting for a sequence number */
    PYMIC_TRACE_WAIT_EVENT_SYNC = 2,
    PYMIC_TRACE_WAIT_DEVICE = 3, /* device sync                                 */
    PYMIC_TRACE_WAIT_ROOM = 4    /* an enqueue waiting for room in a full ring  */
};

/* Longest kernel name kept in a trace record, including the NUL (longer
 * names are cut). */
#define PYMIC_TRACE_NAME_MAX 96

typedef struct pymic_trace_command {
    uint64_t enqueue_ns;   /* host clock (CLOCK_MONOTONIC) at enqueue     */
    uint64_t start_ns;     /* worker started it; 0 if it had not started  */
    uint64_t end_ns;       /* worker finished it; 0 if it had not ended   */
    uint64_t seq;          /* its sequence number in its stream           */
    uint64_t bytes;        /* bytes moved (copies), else 0                */
    /* RECORD_EVENT and WAIT_EVENT: the number of the event record this
     * command makes or waits for (the same number in both, and in the
     * `target` of an event sync waiting for it); 0 for other commands and
     * for a record made while no trace was recording. */
    uint64_t event_record;
    int device;
    int stream;            /* trace-wide stream number (from 1)           */
    int kind;              /* PYMIC_TRACE_INVOKE ...                      */
    int host_thread;       /* OS thread id of the enqueuing thread        */
    uint32_t site;         /* what the site hook returned, 0 without one  */
    char name[PYMIC_TRACE_NAME_MAX]; /* kernel name, or "h2d", "free", ... */
    /* Where the device runs in a process of its own with its own clock (an
     * MPI device): the command's span there -- the kernel's run, the copy
     * into or out of device memory -- translated to the host clock, and
     * the bound of the translation's error (the device's clock is read
     * against the host's in a round trip; docs/tools.md).  0 elsewhere. */
    uint64_t device_start_ns;
    uint64_t device_end_ns;
    uint64_t device_clock_error_ns;
} pymic_trace_command;

typedef struct pymic_trace_wait {
    uint64_t start_ns;
    uint64_t end_ns;
    uint64_t target;       /* stream sync: the sequence number awaited;
                              event sync: the event record's number (as
                              pymic_trace_command.event_record), 0 if it
                              was recorded while no trace was recording   */
    int kind;              /* PYMIC_TRACE_WAIT_STREAM ...                 */
    int device;            /* -1 for an event sync                        */
    int stream;            /* stream number, -1 if not a stream's wait    */
    int host_thread;       /* OS thread id of the waiting thread          */
    int timed_out;         /* a timed wait that gave up (TIMEOUT)         */
    uint32_t site;         /* what the site hook returned, 0 without one  */
} pymic_trace_wait;

/* Start recording, with room for `commands_per_stream` commands per stream
 * (0: the default, 262144); later commands are counted as dropped.
 * Records of the previous trace are discarded.  INVALID_ARGUMENT if a
 * trace is already being recorded. */
PYMIC_API int pymic_trace_start(size_t commands_per_stream);

/* Stop recording (idempotent).  Commands enqueued while recording still
 * get their start and end when they run. */
PYMIC_API int pymic_trace_stop(void);

/* 1 while recording, else 0. */
PYMIC_API int pymic_trace_active(void);

/* Copy out what the current (or last) trace recorded: commands sorted by
 * stream and sequence number, waits in the order they ended.  Both arrays
 * are malloc'd (free them with pymic_trace_free); *dropped receives the
 * commands and waits that found their buffer full.  Any pointer may be
 * NULL to skip that part. */
PYMIC_API int pymic_trace_read(pymic_trace_command **commands, size_t *ncommands,
                               pymic_trace_wait **waits, size_t *nwaits, uint64_t *dropped);
PYMIC_API void pymic_trace_free(void *records);

/* Call sites.  While a trace records, the engine calls `hook` on the
 * thread that enqueues each command, just before the command is published
 * and with the stream's enqueue lock held, and on the thread that waited
 * when a host wait ends, and keeps what it returns in the record's `site`
 * (a number the caller gives meaning to: pymic's Python layer numbers the
 * Python source locations it sees).  The hook must not block or enqueue.
 * NULL (the default) records 0.  Not called while no trace records. */
typedef uint32_t (*pymic_trace_site_hook)(void);
PYMIC_API void pymic_trace_set_site_hook(pymic_trace_site_hook hook);

/* The trace-wide number of a stream (as in pymic_trace_command.stream),
 * or 0 if the stream has never been traced. */
PYMIC_API int pymic_trace_stream_number(const pymic_stream *stream);

/* ------------------------------------------------------- device health */

/* Start device `device` afresh.  On a process device ("proc") the device
 * process is killed if it still runs and a new one is started: libraries
 * loaded before must be loaded again (their kernels fail with
 * PYMIC_ERR_LIBRARY), streams keep working, and device memory stays
 * allocated with the contents the old process left (free it or overwrite
 * it).  The failures of commands that had started when it was called
 * (the kernel it stops included) are forgotten: the next sync reports only
 * what runs after it.  Must not run concurrently with other use of the
 * device.  On a host device there is nothing to restart (failures are
 * forgotten all the same): PYMIC_OK. */
PYMIC_API int pymic_device_reset(int device);

/* 1 if the device is lost (its process died: commands fail with
 * PYMIC_ERR_DEVICE_LOST until pymic_device_reset), else 0; the reason is
 * copied into `why` (may be NULL). */
PYMIC_API int pymic_device_lost(int device, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif

#endif /* PYMIC_H */
