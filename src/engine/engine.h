/*
 * engine.h -- internal declarations shared by the files of libpymic.
 *
 * Nothing here is public API: the library is built with -fvisibility=hidden
 * and include/pymic.h forms the API.  The few calls marked
 * PYMIC_BACKEND_API are exported for backend plugins (backend.h, "the
 * core's calls for backends"); this header is installed for them, but
 * only those calls and the fields backend.h names are theirs to use.
 *
 * Object map
 *   engine   one global: the devices parsed from PYMIC_DEVICES, tunables
 *   device   a CPU set, a memory limit, the list of its streams
 *   stream   a ring of commands and one worker thread that runs them
 *   event    a generation counter advanced by record commands
 *   alloc    one tracked device allocation (in its device's allocation table)
 *   library  a dlopen handle and the kernels found in it
 */
#ifndef PYMIC_ENGINE_H
#define PYMIC_ENGINE_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "pymic.h"
#include "wait.h"

#define PYMIC_FORMAT(a, b) __attribute__((format(printf, a, b)))

/* ------------------------------------------------------------- errors */

/* Record `status` with a formatted message for the calling thread and return
 * `status`, so a failing call can end with `return pymic_fail(...)`.
 * Messages begin with what the caller did, in the caller's terms ("sync of
 * stream 3 on device 0: ...", "allocation of 64 bytes on device 1: ..."),
 * not with the engine function's name; a stream is named by
 * PYMIC_STREAM_FMT / PYMIC_STREAM_ARGS. */
PYMIC_BACKEND_API int pymic_fail(int status, const char *fmt, ...) PYMIC_FORMAT(2, 3);

/* Say the calling thread's last message again in the caller's terms: a
 * leading "<engine_op>: " (and "device N: ") that a backend wrote gives way
 * to `prefix`.  Returns `status`. */
int pymic_fail_reworded(int status, const char *engine_op, const char *prefix);

/* Print "PYMIC: ..." on stderr when the debug level is at least `level`. */
PYMIC_BACKEND_API void pymic_log(int level, const char *fmt, ...) PYMIC_FORMAT(2, 3);
#define PYMIC_STREAM_FMT "stream %d on device %d"
#define PYMIC_STREAM_ARGS(s) (s)->number, (s)->device->id

/* ------------------------------------------------------------- config */

/* One device as described by PYMIC_DEVICES, before any thread exists. */
typedef struct pymic_device_spec {
    int ncpus;
    int *cpus; /* sorted, distinct */
    const pymic_backend_ops *ops; /* its backend (registry.c) */
    char *spec; /* malloc'd "TEXT" of "N:TEXT" for a backend's parse_spec,
                 * else NULL */
    bool own;  /* host:auto: this MPI rank's own share */
    bool lazy; /* set up on first use, not at initialisation (host:auto's
                  entries for the node's other ranks) */
} pymic_device_spec;

/* The CPUs a PYMIC_DEVICES string is resolved against, ascending. */
typedef struct pymic_host_cpus {
    const int *avail; /* the process affinity mask */
    int navail;
    const int *node;  /* the node's CPUs as this job sees them (see
                       * pymic_node_cpus); NULL if unknown */
    int nnode;
} pymic_host_cpus;

/* Parse a PYMIC_DEVICES string against the CPUs the process may use
 * ("host:auto" also reads the MPI launcher's variables); each entry's
 * backend is found by its name (pymic_backend_find).  On success *specs
 * is a malloc'd array of *count specs (free with pymic_free_device_specs)
 * and `note` says how host:auto chose its CPUs (empty without host:auto).
 * On failure returns PYMIC_ERR_CONFIG and writes the reason to `why`. */
int pymic_parse_devices(const char *text, const pymic_host_cpus *cpus,
                        pymic_device_spec **specs, int *count, char *why, size_t why_len,
                        char *note, size_t note_len);

/* The device this process calls its own (pymic_local_device_index): the
 * first host:auto entry marked `own`; without host:auto, the device of this
 * rank when the node's local ranks are grouped in equal blocks over the
 * `count` devices (local rank * count / local size; 0 without a launcher).
 * PYMIC_ERR_CONFIG with the reason in `why` for malformed launcher
 * variables. */
int pymic_local_device(const pymic_device_spec *specs, int count, int *index, char *why,
                       size_t why_len);

/* The node's CPUs as this process's job sees them: its cgroup's cpuset,
 * else the online CPUs.  A malloc'd ascending list; PYMIC_ERR_SYSTEM if
 * neither can be read. */
int pymic_node_cpus(int **cpus, int *count);
void pymic_free_device_specs(pymic_device_spec *specs, int count);

/* Parse "512M", "2G", "1048576" into bytes; false on a malformed string. */
bool pymic_parse_size(const char *text, size_t *bytes);

/* Largest memory limit accepted (sizes shown as signed 64-bit numbers by
 * tools and Python stay positive). */
#define PYMIC_MEMORY_LIMIT_MAX ((size_t)1 << 62)

/* This process's cgroup paths, from /proc/self/cgroup under `root` ("/"
 * on a live system; tests pass a directory of their own): in cgroup v1 the
 * path in the hierarchy that lists `controller` (copied to v1), in v2 the
 * unified path (copied to v2); "" for the hierarchy's root.  Returns which
 * were found (PYMIC_CGROUP_V1 | PYMIC_CGROUP_V2), 0 if none. */
#define PYMIC_CGROUP_V1 1
#define PYMIC_CGROUP_V2 2
int pymic_cgroup_paths(const char *root, const char *controller, char *v1, char *v2, size_t len);

/* The memory limit of this process's cgroup (v2 memory.max, else v1
 * memory.limit_in_bytes), looked up below `root` ("/" on a live system; a
 * test passes a directory of its own), or 0 when there is none. */
size_t pymic_cgroup_memory_limit(const char *root);

/* ------------------------------------------------------------- devices */

typedef struct pymic_device {
    int id;
    int ncpus;
    int *cpus;
    cpu_set_t cpuset;
    char name[PYMIC_NAME_MAX];

    pthread_mutex_t lock;      /* guards the stream lists and orphans     */
    _Atomic int streams_created; /* numbers streams for messages          */
    struct pymic_stream *streams;
    /* The streams that may have work: device-wide waits walk only these
     * (device.c, "Which streams have work"). */
    struct pymic_stream *busy;
    /* Streams looked at by device-wide waits so far
     * (pymic_device_sync_visits). */
    _Atomic uint64_t sync_visits;
    /* Failures of destroyed streams that nobody had reported, oldest
     * first: the next device syncs report them (failure.c). */
    struct pymic_orphan *orphans;
    /* The device's allocation table (memory.c): its live allocations
     * sorted by address, and those freed whose memory is not back yet.
     * Each device has its own (two devices may hand out equal
     * addresses); table.lock also guards the byte counts below. */
    struct pymic_alloc_table {
        pthread_mutex_t lock;
        struct pymic_alloc **entries;
        size_t count, capacity;
        struct pymic_alloc *pending_head;
    } table;
    size_t memory_limit;       /* guarded by table.lock                   */
    size_t memory_default;     /* what a limit of 0 restores (idem)       */
    size_t memory_used;        /* idem                                    */
    size_t memory_pending;     /* idem: of memory_used, bytes freed and
                                * waiting for their FREE command or for
                                * other streams' last uses               */

    /* The backend (backend.h) and its per-device state: `ops` set at
     * initialisation, `backend` by ops->open, which runs once, before the
     * device's first stream, allocation or library: at initialisation, or
     * for a lazy device (host:auto's entries of the other ranks) on first
     * use (pymic_device_open).  `opened` (release) says it has; open_lock
     * serialises the opening and keeps fork() out of it. */
    const pymic_backend_ops *ops;
    void *backend;
    /* "TEXT" of PYMIC_DEVICES's "N:TEXT" for a backend with parse_spec
     * (backend.h), else NULL. */
    char *spec;
    _Atomic int opened;
    pthread_mutex_t open_lock;

    /* Health, generic: a backend that loses the device (its process died)
     * writes the reason, then sets `lost` (release); reset clears both
     * and bumps `generation`, which libraries and kernels carry so that
     * one loaded before a reset is refused after it. */
    _Atomic int lost;
    char lost_why[384];
    _Atomic unsigned generation;

    /* PYMIC_CHECK=bounds: kernels of this device between their start and
     * the check of the canaries after them (bounds.c). */
    _Atomic int bounds_kernels;
} pymic_device;

/* Mark `device` lost with the formatted reason (first reason wins). */
PYMIC_BACKEND_API void pymic_device_mark_lost(pymic_device *device, const char *fmt, ...)
    PYMIC_FORMAT(2, 3);

typedef struct pymic_engine {
    int ndevices;
    pymic_device *devices;
    /* pymic_local_device_index: this rank's own device (config.c's
     * pymic_local_device), or -1 with the reason in local_device_why. */
    int local_device;
    char local_device_why[256];
    size_t default_memory_limit;
    _Atomic uint64_t spin_ns;
    _Atomic int debug_level;
    /* PYMIC_KERNEL_TIMEOUT: a kernel on a process device running longer
     * is killed with its process (0: no watchdog). */
    _Atomic uint64_t kernel_timeout_ns;
    /* PYMIC_CHECK=bounds (bounds.c): canaries around every allocation,
     * checked after each invoke; guard pages on process devices. */
    bool check_bounds;
    /* Bumped in the child of every fork(): streams of an older generation
     * belong to the parent, and their workers do not exist here. */
    _Atomic unsigned fork_generation;
} pymic_engine;

extern pymic_engine pymic_global;

/* Initialise on first use; returns the (sticky) init status, setting the
 * thread's error message when it is a failure. */
int pymic_ensure_init(void);

/* The device `id` after initialising, or NULL with the error recorded
 * (operation `op` names the caller in the message). */
pymic_device *pymic_device_lookup(int id, const char *op, int *status);
/* The same, with its backend set up (ops->open on first use of a lazy
 * device): for the calls that reach the backend -- streams, allocations,
 * libraries, reset.  Queries (info, CPUs, sync, memory limits) need not. */
pymic_device *pymic_device_open(int id, const char *op, int *status);
/* Set up `device`'s backend if it is not yet (engine.c). */
int pymic_device_ensure_open(pymic_device *device, const char *op);

/* ----------------------------------------------------------- commands */

typedef void (*pymic_kernel_fn)(void);

enum pymic_command_kind {
    PYMIC_CMD_INVOKE,
    PYMIC_CMD_COPY,
    PYMIC_CMD_FREE,
    PYMIC_CMD_RECORD,
    PYMIC_CMD_WAIT_EVENT,
    PYMIC_CMD_STOP
};

struct pymic_alloc;
struct pymic_mark;

/* Which sides of a copy are device memory (backends may care). */
enum pymic_copy_dir { PYMIC_COPY_H2D, PYMIC_COPY_D2H, PYMIC_COPY_D2D };

/* What an invoke argument is (pymic_command.arg_kind).  The host backend
 * only reads `args` (a kernel of this process takes them as they are);
 * a backend whose kernels run elsewhere reads the kinds to carry each
 * argument over. */
enum pymic_arg_kind {
    /* Any other pointer value, NULL included: passed on unchanged
     * (args[i]).  The engine knows nothing of what it points to. */
    PYMIC_ARG_ADDRESS = 0,
    /* A pointer into a live allocation of the stream's device, checked
     * and recorded as used when the invoke was enqueued: args[i] is the
     * device address. */
    PYMIC_ARG_DEVICE = 1,
    /* Scalar bytes: arg_size[i] bytes at scalars + arg_offset[i] (16-byte
     * aligned); args[i] points there, in this process. */
    PYMIC_ARG_SCALAR = 2,
};

/* One ring slot.  Scalars are copied into `scalars` so the kernel's pointer
 * stays valid until the slot is recycled, which happens only after the
 * command has completed. */
typedef struct pymic_command {
    int kind;
    int nargs;
    /* Who may run it (stream.c), written at publish; atomic so a syncing
     * thread may look before it claims the command. */
    _Atomic unsigned char run_class;
    /* Set by pymic_command_complete when the command finished while one
     * before it had not; cleared as `completed` passes it (stream.c). */
    _Atomic unsigned char finished;
    /* INVOKE whose run is timed (stream.c): when it was submitted, so that
     * one the backend leaves in flight is timed when it completes; 0 when
     * it is not timed, or was timed by its runner. */
    uint64_t submitted_ns;
    /* RECORD, WAIT_EVENT: handed to the backend's record / wait_mark
     * (events resolved on the device, backend.h); the core then finishes
     * the mark's part when `completed` passes the command (stream.c).
     * Written by the runner before the command completes. */
    unsigned char on_device;
    int scalar_bytes; /* INVOKE: bytes of `scalars` in use */
    union {
        struct {
            /* The backend's opaque kernel handle (kernel_find), passed
             * back to its invoke unchanged. */
            uint64_t kernel_handle;
            const struct pymic_kernel *handle; /* for messages */
        } call;
        struct {
            void *dst;
            const void *src;
            size_t nbytes;
            bool overlap;
            int dir; /* enum pymic_copy_dir */
        } copy;
        struct pymic_alloc *alloc;
        struct pymic_mark *mark; /* RECORD, WAIT_EVENT */
    } u;
    void *args[PYMIC_MAX_KERNEL_ARGS];
    /* INVOKE, per argument below nargs: enum pymic_arg_kind, and for a
     * SCALAR its place in `scalars`. */
    unsigned char arg_kind[PYMIC_MAX_KERNEL_ARGS];
    uint16_t arg_offset[PYMIC_MAX_KERNEL_ARGS];
    uint16_t arg_size[PYMIC_MAX_KERNEL_ARGS];
    _Alignas(16) unsigned char scalars[PYMIC_MAX_SCALAR_BYTES];
} pymic_command;

/* Ring capacity in commands: a power of two so the slot index is a mask. */
#define PYMIC_RING_SLOTS 128u

struct pymic_stream {
    /* Set at creation, read by everyone: kept apart from the lines the
     * producers and the worker write, so reading them never misses. */
    pymic_device *device;
    const pymic_backend_ops *ops;        /* device->ops, one load nearer  */
    pymic_command *ring;
    pthread_t worker;
    unsigned fork_generation;            /* see pymic_engine             */
    int number;                          /* 1, 2, ... per device         */
    struct pymic_stream *next_in_device; /* guarded by device->lock */
    struct pymic_stream *next_busy;      /* idem, while busy_listed     */
    /* The owner's reference (handed to the worker by destroy, dropped when
     * it reaches STOP) plus one for each holder that must still read the
     * counters: device-sync snapshots, allocation uses, parked releases.
     * The memory goes with the last reference. */
    _Atomic int refs;
    /* Holders that may still read the ring: the worker until it has
     * passed STOP, and device syncs (which wait as a stream sync does,
     * looking at the next commands) while they wait.  The ring goes with
     * the last of them (pymic_stream_drop_ring), before the stream's
     * memory when references outlive them. */
    _Atomic int ring_users;

    /* Producers serialise on `enqueue_lock`; the worker is the only
     * consumer.  `enqueued` is the sequence number of the newest published
     * command, `completed` the one up to which all have run.  Each counter
     * shares a cache line only with the wait queue of its readers. */
    _Alignas(64) pthread_mutex_t enqueue_lock;
    /* Under enqueue_lock: the newest sequence number known to fit in the
     * ring (completed + PYMIC_RING_SLOTS as last read), so reserving
     * reads `completed` only when this is used up. */
    uint64_t room_until;
    _Alignas(64) _Atomic uint64_t enqueued;
    pymic_waitq work_q;        /* the worker sleeps here when idle        */
    /* Set while the stream is on its device's busy list (changed under
     * the device lock; read by every publish, next to `enqueued`). */
    _Atomic int busy_listed;
    _Alignas(64) _Atomic uint64_t completed;
    pymic_waitq done_q;        /* host syncs and blocked producers        */
    /* Commands are run by whoever claims them: the worker, or a thread
     * waiting in a sync ("caller runs", stream.c).  `claimed` is the newest
     * command somebody has taken to run; commands may be claimed only
     * while completed == claimed, so they still run one at a time, in
     * order (the worker's claim may take several: it runs them in order
     * and publishes `completed` after each).
     * `lazy` is set while syncing threads run the commands themselves: the
     * idle worker then naps instead of spinning or being woken. */
    _Atomic uint64_t claimed;

    /* Read at every publish, written rarely: a line of their own. */
    _Alignas(64) _Atomic int lazy;
    /* What recent kernels' runs on this stream say about their length,
     * keyed by kernel (stream.c); rewritten only when a verdict changes. */
    struct {
        _Atomic(const struct pymic_kernel *) kernel;
        _Atomic int state;
    } kernel_length[32];
    /* Runs of each kernel_length entry's kernel since its length was
     * last measured (stream.c): written by whoever runs the commands, so
     * a line apart from what producers read. */
    _Alignas(64) _Atomic unsigned kernel_unmeasured[32];

    /* The backend's per-worker state (the host's helpers for big
     * copies); created and destroyed by the worker only. */
    _Alignas(64) void *backend_worker;
    _Atomic(struct pymic_trace_buf *) trace; /* trace.c: NULL until traced */

    /* The oldest failure not yet reported (failure.c): its sequence
     * number (0: none).  Read without a lock on every command (a stream
     * with a failure runs no more kernels or copies until it is
     * reported); everything else about it is guarded by failure_lock,
     * which only the rare failure paths take. */
    _Alignas(64) _Atomic uint64_t failed_seq;
    pthread_mutex_t failure_lock;
    /* Serialises completions of commands that finish out of order
     * (pymic_command_complete); a command that finishes while every one
     * before it has completed is published without it. */
    pthread_mutex_t complete_lock;
    /* When the last timed invoke left in flight completed (complete_lock):
     * the next one's length counts from then, not from its submission,
     * since it waited behind that one on the device. */
    uint64_t in_flight_done_ns;
    int failed_status;
    uint64_t skipped_through; /* newest command skipped for the failure  */
    uint64_t forgive_through; /* reset: failures up to here are dropped  */
    char failure[640];
};

/* On the worker, while it runs command `seq`: record that the command
 * failed (kept if an older failure is still unreported). */
PYMIC_BACKEND_API void pymic_stream_fail(pymic_stream *stream, uint64_t seq, const char *fmt,
                                         ...) PYMIC_FORMAT(3, 4);
/* The unreported failure of a command up to `seq`, if any, as an error of
 * `action` on the stream ("sync of" gives "sync of stream 3 on device 0:
 * ...", then forgotten); else PYMIC_OK. */
int pymic_stream_take_failure(pymic_stream *stream, uint64_t seq, const char *action);
/* The same for a sync of the whole device ("sync of device 0: stream 3:
 * ..."). */
int pymic_stream_take_failure_for_device(pymic_stream *stream, uint64_t seq);
/* On the worker: a copy of the stream's unreported failure of a command
 * up to `through` (malloc'd, or NULL when there is none) and its status. */
char *pymic_stream_copy_failure(pymic_stream *stream, uint64_t through, int *status);
/* The same with the status the report will have (pymic_stream_fail:
 * PYMIC_ERR_DEVICE_LOST). */
PYMIC_BACKEND_API void pymic_stream_fail_status(pymic_stream *stream, uint64_t seq, int status,
                                                const char *fmt, ...) PYMIC_FORMAT(4, 5);
/* True when command `seq` (an invoke or a copy) must not run because a
 * command before it on its stream failed and nobody has been told yet:
 * what depends on a failed command fails with it.  One relaxed load while
 * the stream is healthy. */
bool pymic_stream_skips_slow(pymic_stream *stream, uint64_t seq);
static inline bool pymic_stream_skips(pymic_stream *stream, uint64_t seq)
{
    if (__builtin_expect(atomic_load_explicit(&stream->failed_seq, memory_order_relaxed) == 0,
                         1))
        return false;
    return pymic_stream_skips_slow(stream, seq);
}
/* Drop the failures of commands up to `seq` (reported or not): reset
 * repairs what they broke. */
void pymic_stream_forgive(pymic_stream *stream, uint64_t seq);

/* The worker of a destroyed stream at STOP: hand an unreported failure
 * to the device (device->lock held by the caller). */
void pymic_stream_orphan_failure(pymic_stream *stream);
/* The oldest failure of a destroyed stream of `device`, as an error of a
 * sync of the device (then forgotten); else PYMIC_OK. */
int pymic_device_take_orphan(pymic_device *device);

/* Keep a stream's memory (and so its counters) alive / let it go. */
void pymic_stream_retain(pymic_stream *stream);
void pymic_stream_release(pymic_stream *stream);
/* Stop using the ring of a stream (see ring_users); the last user frees
 * it.  A new user counts itself in under the device lock while the
 * stream is on a device list, i.e. before its worker has dropped its own
 * use. */
void pymic_stream_drop_ring(pymic_stream *stream);

/* True once the stream's commands up to `seq` have run.  (seq_cst: see
 * the parked-release handshake in stream.c's worker loop.) */
static inline bool pymic_stream_passed(pymic_stream *stream, uint64_t seq)
{
    return atomic_load_explicit(&stream->completed, memory_order_seq_cst) >= seq;
}

/* PYMIC_OK if `stream` can take commands in this process; else the error
 * (NULL stream, or a stream inherited across fork()) for `action` on it
 * ("invoke on" gives "invoke on stream 3 on device 0: ..."). */
int pymic_stream_check(const pymic_stream *stream, const char *action);
/* True for a stream created before a fork() in this (child) process. */
bool pymic_stream_inherited(const pymic_stream *stream);

/* Reserve the next slot (waiting for room), with enqueue_lock held on
 * return.  The caller fills the slot and calls pymic_stream_publish. */
pymic_command *pymic_stream_reserve(pymic_stream *stream);
/* The sequence number the reserved slot will have (enqueue lock held). */
static inline uint64_t pymic_stream_reserved_seq(pymic_stream *stream)
{
    return atomic_load_explicit(&stream->enqueued, memory_order_relaxed) + 1;
}
/* Publish the reserved slot, release the lock, wake the worker if it
 * sleeps. */
void pymic_stream_publish(pymic_stream *stream);
/* Give the reserved slot up unpublished and release the lock. */
void pymic_stream_cancel(pymic_stream *stream);

/* Wait until command `target` of `stream` has completed, running on
 * this thread the commands `runs` (PYMIC_WAIT_RUNS_*) allows where the
 * device lets a waiting thread run any (stream.c, "Who runs a command");
 * `deadline` from pymic_deadline.  1 once reached, 0 on timeout.  Reports
 * no failure. */
/* On the stream's worker: wait until every command before `seq` has
 * completed (an event wait the backend did not take turns into a fence). */
void pymic_stream_fence(pymic_stream *stream, uint64_t seq);
/* The ring slot of command `seq` (not yet completed, or still held). */
pymic_command *pymic_stream_command(pymic_stream *stream, uint64_t seq);
int pymic_stream_wait_until(pymic_stream *stream, uint64_t target, uint64_t deadline,
                            int runs);

/* What the public waits without a choice of their own run: any command
 * when untimed, none in a poll (timeout 0), quick ones otherwise (a timed
 * wait must return near its deadline). */
int pymic_wait_runs_for_timeout(uint64_t timeout_ns);
/* PYMIC_OK if `runs` is a PYMIC_WAIT_RUNS_* value, else a failure naming
 * `op`. */
int pymic_wait_runs_check(int runs, const char *op);

/* The deadline on the monotonic clock of a wait of `timeout_ns`:
 * UINT64_MAX for none (timeout UINT64_MAX), 0 for a poll (timeout 0,
 * which runs no command), else now + timeout. */
uint64_t pymic_deadline(uint64_t timeout_ns);

/* Put `stream` on its device's busy list unless it is there (device.c);
 * pymic_stream_publish calls it when it finds busy_listed clear. */
void pymic_device_list_busy(pymic_stream *stream);

/* Run command `seq` (invoke.c, memory.c, event.c): PYMIC_COMMAND_DONE, or
 * PYMIC_COMMAND_IN_FLIGHT when the backend completes it later. */
int pymic_command_execute(pymic_stream *stream, pymic_command *cmd, uint64_t seq);

/* A backend completes command `seq` of `stream` that its copy or invoke
 * left in flight (any thread, no backend lock held: it may run parked
 * releases, which call block_put and library_close).  A failure is
 * recorded first (pymic_stream_fail).  `completed` still advances in
 * order: a command completes once every command before it has.  Once it
 * returns for the stream's last command, the stream may be gone: the
 * backend must not touch it after that. */
PYMIC_BACKEND_API void pymic_command_complete(pymic_stream *stream, uint64_t seq);

/* A kernel found in a library (library.c); invoke reads it directly. */
struct pymic_kernel {
    char *name;
    unsigned generation; /* the device's, when found */
    /* The backend's handle (kernel_find): never called or read by the
     * core, only handed back to ops->invoke. */
    uint64_t handle;
    pymic_library *library;
    pymic_device *device;
    struct pymic_kernel *next;
};

/* --------------------------------------------------------------- events */

/* One record of an event: the point in one stream's order that the record
 * captured.  An event only points at its newest mark; waits and syncs take
 * a reference to the mark that was newest when *they* were called, so a
 * later re-record never changes what an earlier wait waits for. */
typedef struct pymic_mark {
    _Atomic int refs;          /* event's latest pointer + queued commands
                                  + waiters                                */
    _Atomic uint64_t done;     /* 0 pending, 1 once its stream reached it  */
    uint64_t stamp_ns;         /* written before done is set               */
    unsigned fork_generation;  /* of the stream that will complete it      */
    int device;                /* of that stream, for messages             */
    uint64_t trace_number;     /* links the record to its waits in a trace
                                  (0: recorded while not tracing)         */
    /* Set by the RECORD when a command before it on its stream failed
     * (failure.c): a copy of that failure, reported by waits on the mark.
     * Written before `done`. */
    char *failure;
    int failure_status;
    pymic_waitq q;
    /* Recorded on a stream of a device whose backend resolves event waits
     * itself (backend.h: record, wait_mark): that device, its generation
     * when the record was enqueued, and the mark's number there (unique
     * per process, never 0), by which the backend names the point to the
     * device; the backend's mark_forget is told it when the mark is
     * freed.  NULL / 0 on other devices. */
    pymic_device *owner;
    unsigned owner_generation;
    uint64_t backend_id;
    /* Such a backend's word of when the device reached the mark, by the
     * device's clock (0: none), written before the record completes:
     * the time between two marks of one device is measured by it, not by
     * when this process learned of each (stamp_ns), which may be late. */
    uint64_t device_stamp_ns;
} pymic_mark;

void pymic_mark_release(pymic_mark *mark);
/* The record of command `seq` reached its point: the failure before it
 * (if any) copied into the mark, the mark done, the command's reference
 * released.  Every command before `seq` has completed. */
void pymic_mark_execute_record(pymic_stream *stream, pymic_mark *mark, uint64_t seq);
/* Event wait `seq` resolved on the host: wait for the mark, fail `seq`
 * if the record came after a failure, release the command's reference. */
void pymic_mark_execute_wait(pymic_stream *stream, pymic_mark *mark, uint64_t seq);
/* Whether the backend resolves the wait for `mark` on `stream`'s device
 * (same device and generation, a backend with wait_mark, not yet done). */
bool pymic_mark_device_resolves(const pymic_stream *stream, const pymic_mark *mark);
/* For backends that resolve event waits (backend.h):
 * pymic_stream_failed_before: whether the stream holds an unreported
 * failure of a command before `seq` (a record of `seq` then carries it);
 * pymic_mark_wait_resolved: the device let wait `seq` go on (and says
 * whether the record it waited for came after a failure): wait until the
 * record has completed on the host too, then fail `seq` as a host-side
 * wait would. */
PYMIC_BACKEND_API bool pymic_stream_failed_before(pymic_stream *stream, uint64_t seq);
PYMIC_BACKEND_API void pymic_mark_wait_resolved(pymic_stream *stream, uint64_t seq,
                                                bool failed_on_device);

/* ------------------------------------------------------ parked releases */

/* A use of something by a stream: it is over once the stream's completed
 * counter reaches `seq`.  Each use holds a reference to its stream. */
typedef struct pymic_use {
    pymic_stream *stream;
    uint64_t seq;
} pymic_use;

/* Run release(arg) once every use has passed (at once if they already
 * have), then drop the uses' stream references.  Takes over `uses` (a
 * malloc'd array, may be NULL when n == 0).  Never waits: what cannot be
 * released yet is parked and released by the next poll. */
void pymic_release_after(pymic_use *uses, int n, void (*release)(void *), void *arg);

/* Release every parked item whose uses have passed.  Workers call it after
 * each command while anything is parked (see pymic_parked_count). */
void pymic_parked_poll(void);
/* Block until nothing is parked (for the out-of-memory path). */
void pymic_parked_drain(void);
extern _Atomic int pymic_parked_count;

/* A snapshot of every stream of `device` that has work, with its newest
 * sequence number (each retained): "everything queued on this device so
 * far" (idle streams have passed it already).  On success *uses is
 * malloc'd (NULL when no stream has work). */
int pymic_device_snapshot(pymic_device *device, pymic_use **uses, int *count);

/* ------------------------------------------------------------ fork safety */

/* Fork handlers of each file that owns a global lock.  Prepare takes the
 * file's locks, parent releases them, child makes them fresh; engine.c's
 * one pthread_atfork registration calls them in the engine's lock order
 * (see there). */
void pymic_memory_prefork(void);
void pymic_memory_postfork_parent(void);
void pymic_memory_postfork_child(void);
void pymic_event_prefork(void);
void pymic_event_postfork_parent(void);
void pymic_event_postfork_child(void);
void pymic_library_prefork(void);
void pymic_library_postfork_parent(void);
void pymic_library_postfork_child(void);
void pymic_parked_prefork(void);
void pymic_parked_postfork_parent(void);
void pymic_parked_postfork_child(void);
void pymic_trace_prefork(void);
void pymic_trace_postfork_parent(void);
void pymic_trace_postfork_child(void);
/* True for an object made before a fork() of this (child) process whose
 * completion depends on a thread that exists only in the parent. */
bool pymic_generation_inherited(unsigned fork_generation);

/* --------------------------------------------------------------- memory */

/* A tracked allocation.  `block` is what the host allocator handed out.
 * `uses` lists every stream that has queued a command touching the
 * allocation, with the newest such command (guarded by the table lock):
 * freeing waits for all of them, not only for the freeing stream. */
typedef struct pymic_alloc {
    void *base;
    size_t nbytes;
    pymic_device *device;
    struct pymic_block *block;
    int nuses, uses_capacity;
    pymic_use *uses;
    /* Once freed (guarded by the table lock): the FREE command (stream,
     * retained, and sequence number) and the device's list of freed
     * allocations whose memory is not back yet, which an allocation short
     * of memory waits for. */
    pymic_use freed_by;
    struct pymic_alloc *pending_prev, *pending_next;
} pymic_alloc;

/* With the stream's enqueue lock held and the slot of `seq` reserved:
 * check that [ptr + offset, ptr + offset + nbytes) lies inside one live
 * allocation of the stream's device and record the use by command `seq`.
 * `what` names the side ("destination", ...) in the error message. */
int pymic_memory_claim(const char *op, const char *what, pymic_stream *stream,
                       const void *ptr, size_t offset, size_t nbytes, uint64_t seq);
/* Record the use, by invoke command `seq` (in slot `cmd`), of each live
 * allocation of the stream's device that a pointer argument (size 0)
 * points into, and mark those arguments PYMIC_ARG_DEVICE.  Pointers into
 * no allocation stay PYMIC_ARG_ADDRESS: a kernel may be given any
 * address. */
int pymic_memory_note_uses(pymic_stream *stream, const pymic_arg *args, int nargs, uint64_t seq,
                           pymic_command *cmd);

/* ---------------------------------------------------------- bounds checks */

/* Bytes of canary before every allocation under PYMIC_CHECK=bounds; after
 * it, the canary runs from its end to the end of the page
 * PYMIC_CANARY_BYTES further (on a process device that may be its guard
 * page, PROT_NONE only in the device process). */
#define PYMIC_CANARY_BYTES 64
#define PYMIC_GUARD_PAGE ((size_t)4096)
/* Bytes a bounds-checked block needs around `nbytes` aligned to
 * `alignment`, guard page excluded, rounded to whole pages. */
size_t pymic_bounds_span(size_t nbytes, size_t alignment, size_t after);
/* Fill the canaries of a new allocation (bounds.c). */
void pymic_bounds_arm(pymic_device *device, const pymic_alloc *alloc);
/* After an invoke (bounds_after_invoke of host-addressable backends):
 * check the allocations the kernel's arguments point into, then -- when
 * no other kernel of the device awaits its own check -- every other
 * allocation of the device; report the first overwritten canary as the
 * command's failure and re-arm it (bounds.c). */
void pymic_bounds_after_invoke(pymic_stream *stream, const pymic_command *cmd);
/* "past the end of allocation 0x... (N bytes)" when `address` lies in the
 * guard page after an allocation of `device` whose memory has not gone
 * back (live, or freed behind commands still queued); false otherwise. */
bool pymic_memory_describe_fault(pymic_device *device, uintptr_t address, char *out,
                                 size_t len);
/* Call visit(alloc, arg) for each allocation of `device` whose memory is
 * still held (live, or freed and not back yet), with the allocation table
 * locked (visit must not call into the engine). */
void pymic_memory_visit(pymic_device *device, void (*visit)(pymic_alloc *, void *), void *arg);
/* Make `device`'s allocation table usable (at device creation). */
void pymic_memory_table_init(pymic_device *device);

/* A device's limit and live bytes, read consistently. */

void pymic_memory_usage(pymic_device *device, size_t *limit, size_t *used);

/* The FREE command reached its stream: hand the memory back once every
 * other stream that used it has passed its last use. */
void pymic_alloc_execute_free(pymic_stream *stream, pymic_alloc *alloc);

/* ---------------------------------------------------------- device memory */

/* A block of device memory as a backend hands it out. */
typedef struct pymic_block {
    void *ptr;          /* aligned device address handed to the user    */
    void *map;          /* start of the underlying mapping / malloc     */
    size_t map_bytes;   /* bytes of the mapping (0: came from malloc)   */
    size_t class_bytes; /* size class, the cache key                    */
    struct pymic_block *next;
} pymic_block;

/* copy.c: memcpy between two buffers of this process that splits big
 * copies over the device's cores, using (and on first need creating) the
 * calling worker's helper threads in *team -- for backends whose device
 * memory is this process's memory (host, proc). */
struct pymic_copy_team;
void pymic_copy_parallel(struct pymic_copy_team **team, const pymic_device *device, void *dst,
                         const void *src, size_t nbytes);
/* Stop and join a worker's helper threads (NULL: nothing to do). */
void pymic_copy_team_destroy(struct pymic_copy_team *team);

/* A worker thread for `stream` running body(stream), pinned to the
 * device's CPUs with an OpenMP team size of its CPU count (host/worker.c):
 * what a backend whose kernels run elsewhere gives start_worker.  On
 * failure the error is recorded and returned. */
PYMIC_BACKEND_API int pymic_worker_start_pinned(pymic_stream *stream, void *(*body)(void *));

/* Call C kernel `fn` with exactly `nargs` (at most PYMIC_MAX_KERNEL_ARGS)
 * pointer arguments (host/kernel.c). */
PYMIC_BACKEND_API void pymic_kernel_call(pymic_kernel_fn fn, int nargs, void *const *args);

/* Monotonic clock in nanoseconds. */
PYMIC_BACKEND_API uint64_t pymic_now_ns(void);

/* ---------------------------------------------------------------- tracing */

#include "trace.h"

#endif /* PYMIC_ENGINE_H */
