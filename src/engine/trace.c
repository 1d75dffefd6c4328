/*
 * trace.c -- recording the timeline of commands and host waits.
 *
 * See trace.h for the layout.  The registry (a list of every stream buffer
 * ever made, live or retired) and session changes are guarded by one
 * mutex that no hot path takes; the hot paths only append to arrays they
 * alone write.
 *
 * Sessions: each pymic_trace_start begins a new session number.  A
 * buffer is re-armed for the session under its stream's enqueue lock, so
 * producers see either the old or the new state, never a mix.  The worker
 * notices a new session at its next command and restarts its own array;
 * readers ignore a worker array that has not caught up (worker_session).
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DEFAULT_COMMANDS ((size_t)1 << 18)
#define WAIT_CAPACITY ((size_t)1 << 20)

_Atomic int pymic_trace_enabled;

/* One host wait; `session` is stored last and tells readers the record
 * is complete and belongs to that session. */
typedef struct wait_record {
    pymic_trace_wait w;
    _Atomic uint64_t session;
} wait_record;

static struct {
    pthread_mutex_t lock;
    pymic_trace_buf *buffers;       /* every buffer, newest first        */
    _Atomic uint64_t session;       /* current (or last) session         */
    size_t capacity;                /* commands per stream this session  */
    int next_number;                /* stream numbers handed out so far  */
    wait_record *waits;             /* WAIT_CAPACITY records, reserved   */
    _Atomic uint64_t wait_count;    /* indices handed out this session   */
} registry = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic pymic_trace_site_hook site_hook;
static _Atomic uint64_t event_records; /* numbers handed to event records */

static _Thread_local const char *thread_label;
static _Thread_local int thread_id;

uint64_t pymic_trace_clock(void)
{
    return pymic_now_ns();
}

static int host_thread_id(void)
{
    if (!thread_id)
        thread_id = (int)syscall(SYS_gettid);
    return thread_id;
}

/* Reserve address space whose pages the kernel provides on first touch;
 * NULL if refused. */
static void *reserve(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    /* One fault per 2 MiB instead of per 4 KiB on the recording path,
     * where the kernel offers transparent huge pages. */
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

/* ------------------------------------------------------------- producers */

void pymic_trace_set_site_hook(pymic_trace_site_hook hook)
{
    atomic_store_explicit(&site_hook, hook, memory_order_release);
}

uint64_t pymic_trace_next_record_number(void)
{
    return atomic_fetch_add_explicit(&event_records, 1, memory_order_relaxed) + 1;
}

void pymic_trace_set_label(const char *label)
{
    thread_label = label;
}

static int command_kind(const pymic_command *cmd, const char *label, const char **name)
{
    switch (cmd->kind) {
    case PYMIC_CMD_INVOKE:
        *name = label ? label : "kernel";
        return PYMIC_TRACE_INVOKE;
    case PYMIC_CMD_COPY:
        *name = label ? label : "copy";
        if (label && strcmp(label, "h2d") == 0)
            return PYMIC_TRACE_COPY_H2D;
        if (label && strcmp(label, "d2h") == 0)
            return PYMIC_TRACE_COPY_D2H;
        return PYMIC_TRACE_COPY_D2D;
    case PYMIC_CMD_FREE:
        *name = "free";
        return PYMIC_TRACE_FREE;
    case PYMIC_CMD_RECORD:
        *name = "record event";
        return PYMIC_TRACE_RECORD_EVENT;
    case PYMIC_CMD_WAIT_EVENT:
        *name = "wait event";
        return PYMIC_TRACE_WAIT_EVENT;
    default:
        return 0; /* STOP: not a user command */
    }
}

void pymic_trace_record_enqueue(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    const char *label = thread_label;
    thread_label = NULL;
    pymic_trace_buf *buf = atomic_load_explicit(&stream->trace, memory_order_acquire);
    if (!buf)
        return;
    /* Between pymic_trace_start raising the flag and re-arming this
     * stream, the buffer still holds the last session: leave it be. */
    if (atomic_load_explicit(&buf->session, memory_order_relaxed) !=
        atomic_load_explicit(&registry.session, memory_order_relaxed))
        return;
    const char *name = NULL;
    int kind = command_kind(cmd, label, &name);
    if (!kind)
        return;
    uint64_t n = atomic_load_explicit(&buf->enq_count, memory_order_relaxed);
    if (n >= atomic_load_explicit(&buf->capacity, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&buf->dropped, 1, memory_order_relaxed);
        return;
    }
    pymic_trace_enq *r = &buf->enq[n];
    r->seq = seq;
    r->enqueue_ns = pymic_now_ns();
    r->bytes = cmd->kind == PYMIC_CMD_COPY ? cmd->u.copy.nbytes : 0;
    r->host_thread = host_thread_id();
    r->kind = kind;
    r->event_record = cmd->kind == PYMIC_CMD_RECORD || cmd->kind == PYMIC_CMD_WAIT_EVENT
                          ? cmd->u.mark->trace_number
                          : 0;
    pymic_trace_site_hook hook = atomic_load_explicit(&site_hook, memory_order_acquire);
    r->site = hook ? hook() : 0;
    size_t len = strnlen(name, sizeof r->name - 1);
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    atomic_store_explicit(&buf->enq_count, n + 1, memory_order_release);
    atomic_store_explicit(&buf->traced_upto, seq, memory_order_release);
}

/* ---------------------------------------------------------------- worker */

uint64_t pymic_trace_exec_start(pymic_trace_buf *buf, uint64_t seq)
{
    uint64_t session = atomic_load_explicit(&buf->session, memory_order_acquire);
    if (session != atomic_load_explicit(&buf->worker_session, memory_order_relaxed)) {
        atomic_store_explicit(&buf->exec_count, 0, memory_order_relaxed);
        atomic_store_explicit(&buf->worker_session, session, memory_order_release);
    }
    if (seq <= atomic_load_explicit(&buf->base_seq, memory_order_relaxed) ||
        seq > atomic_load_explicit(&buf->traced_upto, memory_order_acquire))
        return 0;
    return pymic_now_ns();
}

void pymic_trace_record_exec(pymic_trace_buf *buf, uint64_t seq, uint64_t start_ns)
{
    uint64_t end_ns = pymic_now_ns();
    uint64_t n = atomic_load_explicit(&buf->exec_count, memory_order_relaxed);
    if (n >= buf->reserved)
        return; /* only after the enqueue side overflowed, and counted there */
    pymic_trace_exec *r = &buf->exec[n];
    r->seq = seq;
    r->start_ns = start_ns;
    r->end_ns = end_ns;
    atomic_store_explicit(&buf->exec_count, n + 1, memory_order_release);
}

/* --------------------------------------------------------- device spans */

bool pymic_trace_wants_device_span(pymic_stream *stream, uint64_t seq)
{
    pymic_trace_buf *buf = atomic_load_explicit(&stream->trace, memory_order_acquire);
    if (!buf || atomic_load_explicit(&buf->session, memory_order_acquire) !=
                    atomic_load_explicit(&registry.session, memory_order_relaxed))
        return false;
    return seq > atomic_load_explicit(&buf->base_seq, memory_order_relaxed) &&
           seq <= atomic_load_explicit(&buf->traced_upto, memory_order_acquire);
}

void pymic_trace_device_span(pymic_stream *stream, uint64_t seq, uint64_t start_ns,
                             uint64_t end_ns, uint64_t error_ns)
{
    pymic_trace_buf *buf = atomic_load_explicit(&stream->trace, memory_order_acquire);
    if (!buf)
        return;
    uint64_t session = atomic_load_explicit(&buf->session, memory_order_acquire);
    if (session != atomic_load_explicit(&buf->dev_session, memory_order_relaxed)) {
        atomic_store_explicit(&buf->dev_count, 0, memory_order_relaxed);
        atomic_store_explicit(&buf->dev_session, session, memory_order_release);
    }
    uint64_t n = atomic_load_explicit(&buf->dev_count, memory_order_relaxed);
    if (n >= buf->reserved)
        return; /* only after the enqueue side overflowed, and counted there */
    buf->dev[n] = (pymic_trace_dev){.seq = seq, .start_ns = start_ns, .end_ns = end_ns,
                                    .error_ns = error_ns};
    atomic_store_explicit(&buf->dev_count, n + 1, memory_order_release);
}

uint64_t pymic_trace_session(void)
{
    return atomic_load_explicit(&registry.session, memory_order_relaxed);
}

/* ------------------------------------------------------------ host waits */

void pymic_trace_record_wait(uint64_t start_ns, int kind, int device, const pymic_stream *stream,
                             uint64_t target, int status)
{
    uint64_t end_ns = pymic_now_ns();
    wait_record *waits = registry.waits; /* set before the flag was raised */
    uint64_t i = atomic_fetch_add_explicit(&registry.wait_count, 1, memory_order_relaxed);
    if (!waits || i >= WAIT_CAPACITY)
        return; /* counted: wait_count goes past the capacity */
    wait_record *r = &waits[i];
    pymic_trace_buf *buf =
        stream ? atomic_load_explicit(&((pymic_stream *)stream)->trace, memory_order_acquire)
               : NULL;
    r->w.start_ns = start_ns;
    r->w.end_ns = end_ns;
    r->w.target = target;
    r->w.kind = kind;
    r->w.device = device;
    r->w.stream = buf ? buf->number : -1;
    r->w.host_thread = host_thread_id();
    r->w.timed_out = status == PYMIC_ERR_TIMEOUT;
    pymic_trace_site_hook hook = atomic_load_explicit(&site_hook, memory_order_acquire);
    r->w.site = hook ? hook() : 0;
    uint64_t session = atomic_load_explicit(&registry.session, memory_order_relaxed);
    atomic_store_explicit(&r->session, session, memory_order_release);
}

/* ------------------------------------------------------------- sessions */

static pymic_trace_buf *buffer_create(int device, size_t capacity)
{
    pymic_trace_buf *buf = calloc(1, sizeof *buf);
    if (!buf)
        return NULL;
    buf->reserved = capacity;
    buf->enq = reserve(capacity * sizeof *buf->enq);
    buf->exec = reserve(capacity * sizeof *buf->exec);
    buf->dev = reserve(capacity * sizeof *buf->dev);
    if (!buf->enq || !buf->exec || !buf->dev) {
        if (buf->enq)
            munmap(buf->enq, capacity * sizeof *buf->enq);
        if (buf->exec)
            munmap(buf->exec, capacity * sizeof *buf->exec);
        if (buf->dev)
            munmap(buf->dev, capacity * sizeof *buf->dev);
        free(buf);
        return NULL;
    }
    buf->device = device;
    buf->number = ++registry.next_number;
    buf->next = registry.buffers;
    registry.buffers = buf;
    return buf;
}

static void buffer_destroy(pymic_trace_buf *buf)
{
    munmap(buf->enq, buf->reserved * sizeof *buf->enq);
    munmap(buf->exec, buf->reserved * sizeof *buf->exec);
    munmap(buf->dev, buf->reserved * sizeof *buf->dev);
    free(buf);
}

/* Arm `stream`'s buffer (creating it) for the current session.  Registry
 * lock held.  A stream that cannot get a buffer is simply not traced. */
static void attach(pymic_stream *stream)
{
    uint64_t session = atomic_load_explicit(&registry.session, memory_order_relaxed);
    pymic_trace_buf *buf = atomic_load_explicit(&stream->trace, memory_order_relaxed);
    if (buf && atomic_load_explicit(&buf->session, memory_order_relaxed) == session)
        return;
    if (!buf) {
        buf = buffer_create(stream->device->id, registry.capacity > DEFAULT_COMMANDS
                                                    ? registry.capacity
                                                    : DEFAULT_COMMANDS);
        if (!buf) {
            pymic_log(1, "trace: device %d: no memory for a stream's trace buffer",
                      stream->device->id);
            return;
        }
    }
    size_t capacity = registry.capacity < buf->reserved ? registry.capacity : buf->reserved;
    pthread_mutex_lock(&stream->enqueue_lock);
    uint64_t last = atomic_load_explicit(&stream->enqueued, memory_order_relaxed);
    atomic_store_explicit(&buf->base_seq, last, memory_order_relaxed);
    atomic_store_explicit(&buf->traced_upto, last, memory_order_relaxed);
    atomic_store_explicit(&buf->enq_count, 0, memory_order_relaxed);
    atomic_store_explicit(&buf->dropped, 0, memory_order_relaxed);
    atomic_store_explicit(&buf->capacity, capacity, memory_order_relaxed);
    atomic_store_explicit(&buf->session, session, memory_order_release);
    atomic_store_explicit(&stream->trace, buf, memory_order_release);
    pthread_mutex_unlock(&stream->enqueue_lock);
}

/* The device's list is newest first; numbering streams in the order they
 * were created makes "stream 1" the one a program made first. */
static void attach_oldest_first(pymic_stream *stream)
{
    if (!stream)
        return;
    attach_oldest_first(stream->next_in_device);
    if (!pymic_stream_inherited(stream))
        attach(stream);
}

void pymic_trace_stream_created(pymic_stream *stream)
{
    if (!pymic_trace_on())
        return;
    pthread_mutex_lock(&registry.lock);
    if (pymic_trace_on())
        attach(stream);
    pthread_mutex_unlock(&registry.lock);
}

void pymic_trace_stream_exit(pymic_stream *stream)
{
    pymic_trace_buf *buf = atomic_load_explicit(&stream->trace, memory_order_acquire);
    if (!buf)
        return;
    pthread_mutex_lock(&registry.lock);
    buf->retired = true;
    /* The next trace start frees the buffer: nothing may reach it through
     * the stream (which references may keep a while longer) after that. */
    atomic_store_explicit(&stream->trace, NULL, memory_order_release);
    pthread_mutex_unlock(&registry.lock);
}

/* Retired buffers of earlier sessions: nobody writes them any more. */
static void free_retired(void)
{
    pymic_trace_buf **link = &registry.buffers;
    while (*link) {
        pymic_trace_buf *buf = *link;
        if (buf->retired) {
            *link = buf->next;
            buffer_destroy(buf);
        } else {
            link = &buf->next;
        }
    }
}

/* Fork handlers, called by engine.c's (the one registration, in the
 * engine's lock order: this registry comes first, since tracing takes a
 * device's lock and streams' enqueue locks while holding it). */
void pymic_trace_prefork(void)
{
    pthread_mutex_lock(&registry.lock);
}

void pymic_trace_postfork_parent(void)
{
    pthread_mutex_unlock(&registry.lock);
}

/* The child's streams are the parent's (no workers here): it records
 * nothing until it starts a trace of its own. */
void pymic_trace_postfork_child(void)
{
    atomic_store(&pymic_trace_enabled, 0);
    pthread_mutex_init(&registry.lock, NULL);
}

int pymic_trace_start(size_t commands_per_stream)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    pthread_mutex_lock(&registry.lock);
    if (pymic_trace_on()) {
        pthread_mutex_unlock(&registry.lock);
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "starting a trace: a trace is already being recorded");
    }
    if (!registry.waits) {
        registry.waits = reserve(WAIT_CAPACITY * sizeof *registry.waits);
        if (!registry.waits) {
            pthread_mutex_unlock(&registry.lock);
            return pymic_fail(PYMIC_ERR_SYSTEM,
                              "starting a trace: cannot reserve memory for it");
        }
    }
    free_retired();
    registry.capacity = commands_per_stream ? commands_per_stream : DEFAULT_COMMANDS;
    atomic_store_explicit(&registry.wait_count, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&registry.session, 1, memory_order_relaxed);
    /* Raised before the streams are armed, so a stream created meanwhile
     * arms itself (pymic_trace_stream_created) if this loop misses it. */
    atomic_store_explicit(&pymic_trace_enabled, 1, memory_order_seq_cst);
    for (int d = 0; d < pymic_global.ndevices; d++) {
        pymic_device *device = &pymic_global.devices[d];
        pthread_mutex_lock(&device->lock);
        attach_oldest_first(device->streams);
        pthread_mutex_unlock(&device->lock);
    }
    pthread_mutex_unlock(&registry.lock);
    pymic_log(1, "trace: recording (%zu commands per stream)", registry.capacity);
    return PYMIC_OK;
}

int pymic_trace_stop(void)
{
    atomic_store_explicit(&pymic_trace_enabled, 0, memory_order_seq_cst);
    return PYMIC_OK;
}

int pymic_trace_active(void)
{
    return pymic_trace_on() ? 1 : 0;
}

int pymic_trace_stream_number(const pymic_stream *stream)
{
    if (!stream)
        return 0;
    pymic_trace_buf *buf =
        atomic_load_explicit(&((pymic_stream *)stream)->trace, memory_order_acquire);
    return buf ? buf->number : 0;
}

/* ---------------------------------------------------------------- reading */

/* Append `buf`'s first `nenq` commands of `session` to out[*n], joining
 * enqueue, execution and device-span records by sequence number (all
 * three arrays are in sequence order). */
static void read_buffer(pymic_trace_buf *buf, uint64_t session, uint64_t nenq,
                        pymic_trace_command *out, size_t *n)
{
    uint64_t nexec = 0, ndev = 0;
    if (atomic_load_explicit(&buf->worker_session, memory_order_acquire) == session)
        nexec = atomic_load_explicit(&buf->exec_count, memory_order_acquire);
    if (atomic_load_explicit(&buf->dev_session, memory_order_acquire) == session)
        ndev = atomic_load_explicit(&buf->dev_count, memory_order_acquire);
    uint64_t j = 0, k = 0;
    for (uint64_t i = 0; i < nenq; i++) {
        const pymic_trace_enq *e = &buf->enq[i];
        pymic_trace_command *c = &out[(*n)++];
        memset(c, 0, sizeof *c);
        c->enqueue_ns = e->enqueue_ns;
        c->seq = e->seq;
        c->bytes = e->bytes;
        c->device = buf->device;
        c->stream = buf->number;
        c->kind = e->kind;
        c->host_thread = e->host_thread;
        c->site = e->site;
        c->event_record = e->event_record;
        memcpy(c->name, e->name, sizeof c->name);
        while (j < nexec && buf->exec[j].seq < e->seq)
            j++;
        if (j < nexec && buf->exec[j].seq == e->seq) {
            c->start_ns = buf->exec[j].start_ns;
            c->end_ns = buf->exec[j].end_ns;
        }
        while (k < ndev && buf->dev[k].seq < e->seq)
            k++;
        if (k < ndev && buf->dev[k].seq == e->seq) {
            c->device_start_ns = buf->dev[k].start_ns;
            c->device_end_ns = buf->dev[k].end_ns;
            c->device_clock_error_ns = buf->dev[k].error_ns;
        }
    }
}

static int read_commands(uint64_t session, pymic_trace_command **commands, size_t *ncommands,
                         uint64_t *dropped)
{
    /* Recording may go on while reading: each buffer is read up to the
     * count taken here, which the output array is sized for. */
    size_t total = 0;
    for (pymic_trace_buf *b = registry.buffers; b; b = b->next) {
        b->read_count = 0;
        if (atomic_load_explicit(&b->session, memory_order_acquire) != session)
            continue;
        b->read_count = atomic_load_explicit(&b->enq_count, memory_order_acquire);
        total += b->read_count;
        *dropped += atomic_load_explicit(&b->dropped, memory_order_relaxed);
    }
    if (!commands)
        return PYMIC_OK;
    pymic_trace_command *out = malloc((total ? total : 1) * sizeof *out);
    if (!out)
        return pymic_fail(PYMIC_ERR_SYSTEM, "pymic_trace_read: out of host memory");
    size_t n = 0;
    for (pymic_trace_buf *b = registry.buffers; b; b = b->next)
        read_buffer(b, session, b->read_count, out, &n);
    *commands = out;
    if (ncommands)
        *ncommands = n;
    return PYMIC_OK;
}

static int read_waits(uint64_t session, pymic_trace_wait **waits, size_t *nwaits,
                      uint64_t *dropped)
{
    uint64_t count = atomic_load_explicit(&registry.wait_count, memory_order_acquire);
    if (count > WAIT_CAPACITY) {
        *dropped += count - WAIT_CAPACITY;
        count = WAIT_CAPACITY;
    }
    if (!waits)
        return PYMIC_OK;
    pymic_trace_wait *out = malloc((count ? count : 1) * sizeof *out);
    if (!out)
        return pymic_fail(PYMIC_ERR_SYSTEM, "pymic_trace_read: out of host memory");
    size_t n = 0;
    for (uint64_t i = 0; i < count && registry.waits; i++) {
        const wait_record *r = &registry.waits[i];
        if (atomic_load_explicit(&r->session, memory_order_acquire) == session)
            out[n++] = r->w;
    }
    *waits = out;
    if (nwaits)
        *nwaits = n;
    return PYMIC_OK;
}

int pymic_trace_read(pymic_trace_command **commands, size_t *ncommands, pymic_trace_wait **waits,
                     size_t *nwaits, uint64_t *dropped)
{
    uint64_t lost = 0;
    if (commands)
        *commands = NULL;
    if (waits)
        *waits = NULL;
    if (ncommands)
        *ncommands = 0;
    if (nwaits)
        *nwaits = 0;
    pthread_mutex_lock(&registry.lock);
    uint64_t session = atomic_load_explicit(&registry.session, memory_order_relaxed);
    int status = read_commands(session, commands, ncommands, &lost);
    if (status == PYMIC_OK)
        status = read_waits(session, waits, nwaits, &lost);
    pthread_mutex_unlock(&registry.lock);
    if (status != PYMIC_OK && commands) {
        free(*commands);
        *commands = NULL;
        if (ncommands)
            *ncommands = 0;
    }
    if (dropped)
        *dropped = lost;
    return status;
}

void pymic_trace_free(void *records)
{
    free(records);
}
