/*
 * trace.h -- recording a timeline of every command and every host wait.
 *
 * The engine only records; the Python layer (pymic.trace) turns recording
 * on and off and writes the Chrome/Perfetto file.  Everything on the hot
 * paths is an inline hook guarded by one relaxed load of a global flag
 * (producers, host waits) or of the stream's buffer pointer (the worker),
 * so a process that never traces pays a load and a branch per command.
 *
 * While tracing, each stream owns a buffer with three append-only arrays:
 *   - enqueue records, written by producers under the stream's enqueue
 *     lock (so one writer at a time) just before a command is published;
 *   - execution records (start, end), written by whoever runs the command
 *     (the worker, or a syncing thread that claimed it): a stream's
 *     commands are claimed one at a time, so there is one writer at a time,
 *     ordered by the claim and completion counters;
 *   - device spans (start, end on the device, translated to this clock),
 *     written by a backend whose device runs commands in a process of its
 *     own (MPI), one command at a time, for traced commands only.
 * They are joined by sequence number when the trace is read, so no record
 * has two writers and no lock or allocation is taken per command.  The
 * arrays are reserved virtual memory (mmap) whose pages are touched only
 * when used.  Host waits go to one global array indexed by an atomic
 * counter.
 *
 * Included at the end of engine.h: the hooks read struct pymic_stream.
 */
#ifndef PYMIC_TRACE_H
#define PYMIC_TRACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct pymic_stream;
struct pymic_command;

/* What a producer wrote about one command. */
typedef struct pymic_trace_enq {
    uint64_t seq;
    uint64_t enqueue_ns;
    uint64_t bytes;
    uint64_t event_record; /* RECORD / WAIT_EVENT: the mark's trace number */
    int32_t host_thread;
    int32_t kind; /* PYMIC_TRACE_* of pymic.h */
    uint32_t site; /* the site hook's answer */
    char name[PYMIC_TRACE_NAME_MAX];
} pymic_trace_enq;

/* What the worker wrote about one command. */
typedef struct pymic_trace_exec {
    uint64_t seq;
    uint64_t start_ns;
    uint64_t end_ns;
} pymic_trace_exec;

/* What a backend reported of one command's run on the device itself (a
 * device process with a clock of its own), in this process's clock. */
typedef struct pymic_trace_dev {
    uint64_t seq;
    uint64_t start_ns;
    uint64_t end_ns;
    uint64_t error_ns; /* how far off the translation from the device's clock may be */
} pymic_trace_dev;

typedef struct pymic_trace_buf {
    /* Written by pymic_trace_start under the stream's enqueue lock. */
    _Atomic uint64_t session;  /* the session this buffer records for     */
    _Atomic uint64_t base_seq; /* commands after this one are recorded    */
    /* Newest sequence number with an enqueue record: the worker records
     * the execution of seq in (base_seq, traced_upto] only. */
    _Atomic uint64_t traced_upto;
    _Atomic uint64_t enq_count;
    _Atomic uint64_t capacity; /* records this session may take           */
    _Atomic uint64_t dropped;  /* commands that found the buffer full      */

    /* Written by the command's runner, one at a time (own cache line). */
    _Alignas(64) _Atomic uint64_t worker_session;
    _Atomic uint64_t exec_count;

    /* Written by the backend, one command at a time (own cache line). */
    _Alignas(64) _Atomic uint64_t dev_session;
    _Atomic uint64_t dev_count;

    /* Fixed at creation, or guarded by the registry lock. */
    _Alignas(64) uint64_t reserved; /* records the arrays have room for  */
    int device;
    int number;         /* trace-wide stream number, from 1               */
    bool retired;       /* the stream's worker has exited                 */
    uint64_t read_count; /* scratch of pymic_trace_read                    */
    pymic_trace_enq *enq;
    pymic_trace_exec *exec;
    pymic_trace_dev *dev;
    struct pymic_trace_buf *next; /* registry list                        */
} pymic_trace_buf;

/* Set while a trace is being recorded. */
extern _Atomic int pymic_trace_enabled;

static inline bool pymic_trace_on(void)
{
    return atomic_load_explicit(&pymic_trace_enabled, memory_order_relaxed) != 0;
}

/* ------------------------------------------------------ slow halves */

void pymic_trace_set_label(const char *label);
void pymic_trace_record_enqueue(struct pymic_stream *stream, const struct pymic_command *cmd,
                                uint64_t seq);
uint64_t pymic_trace_exec_start(pymic_trace_buf *buf, uint64_t seq);
void pymic_trace_record_exec(pymic_trace_buf *buf, uint64_t seq, uint64_t start_ns);
void pymic_trace_record_wait(uint64_t start_ns, int kind, int device,
                             const struct pymic_stream *stream, uint64_t target, int status);
uint64_t pymic_trace_clock(void);
uint64_t pymic_trace_next_record_number(void);

/* --------------------------------------------------------------- hooks */

/* Producers: name the next command this thread publishes ("h2d", a
 * kernel's name); its record takes the label. */
static inline void pymic_trace_label(const char *label)
{
    if (pymic_trace_on())
        pymic_trace_set_label(label);
}

/* Producers, under the enqueue lock, before `seq` is published. */
static inline void pymic_trace_enqueue(struct pymic_stream *stream,
                                       const struct pymic_command *cmd, uint64_t seq)
{
    if (pymic_trace_on())
        pymic_trace_record_enqueue(stream, cmd, seq);
}

/* Runner (worker or claiming caller): before running command `seq`; returns its start time, or 0 if
 * the command is not traced. */
static inline uint64_t pymic_trace_exec_begin(struct pymic_stream *stream, uint64_t seq)
{
    pymic_trace_buf *buf = atomic_load_explicit(&stream->trace, memory_order_acquire);
    if (!buf)
        return 0;
    return pymic_trace_exec_start(buf, seq);
}

/* Runner: after running command `seq` that began at `start_ns`. */
static inline void pymic_trace_exec_end(struct pymic_stream *stream, uint64_t seq,
                                        uint64_t start_ns)
{
    if (start_ns)
        pymic_trace_record_exec(atomic_load_explicit(&stream->trace, memory_order_acquire), seq,
                                start_ns);
}

/* Host waits: take the start time (0 when not tracing) ... */
static inline uint64_t pymic_trace_wait_begin(void)
{
    return pymic_trace_on() ? pymic_trace_clock() : 0;
}

/* The same, for a wait that may not be needed: `needed` (evaluated only
 * while tracing) says whether the host will really block. */
#define PYMIC_TRACE_WAIT_BEGIN_IF(needed) \
    (pymic_trace_on() && (needed) ? pymic_trace_clock() : 0)

/* ... and record the wait when it ends.  `status` is the wait's outcome
 * (PYMIC_OK, PYMIC_ERR_TIMEOUT). */
static inline void pymic_trace_wait_end(uint64_t start_ns, int kind, int device,
                                        const struct pymic_stream *stream, uint64_t target,
                                        int status)
{
    if (start_ns)
        pymic_trace_record_wait(start_ns, kind, device, stream, target, status);
}

/* Event records: a number linking a record to the waits it releases,
 * given only while tracing (0 otherwise). */
static inline uint64_t pymic_trace_event_record_number(void)
{
    return pymic_trace_on() ? pymic_trace_next_record_number() : 0;
}

/* Device-side spans, for backends whose commands run in a device process
 * with a clock of its own (backend.h): whether command `seq` of `stream`
 * is traced (only then is the device asked for its span: an untraced
 * command costs the device nothing), and recording that span, already
 * translated to this process's clock (pymic_now_ns), with the bound of
 * the translation's error.  The spans of one stream are recorded one at a
 * time, in sequence order, by whichever thread completes its commands.
 * The session number changes with every trace started: a backend that
 * measures its device's clock offset measures it once per session. */
PYMIC_BACKEND_API bool pymic_trace_wants_device_span(struct pymic_stream *stream, uint64_t seq);
PYMIC_BACKEND_API void pymic_trace_device_span(struct pymic_stream *stream, uint64_t seq,
                                               uint64_t start_ns, uint64_t end_ns,
                                               uint64_t error_ns);
PYMIC_BACKEND_API uint64_t pymic_trace_session(void);

/* Stream life: attach a buffer to a new stream when tracing; retire the
 * buffer when the worker exits (its records stay readable). */
void pymic_trace_stream_created(struct pymic_stream *stream);
void pymic_trace_stream_exit(struct pymic_stream *stream);

#endif /* PYMIC_TRACE_H */
