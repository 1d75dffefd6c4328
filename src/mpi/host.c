/*
 * host.c -- the MPI device's operation table (backend.h): every operation
 * is a request to the device's pymic-device rank (protocol.h), answered
 * before the operation returns (a synchronous round trip).
 *
 * Device memory lives in the device process: block_get/put allocate and
 * free there, and the addresses handed out are the device's, never
 * dereferenced here (host_addressable is false).  A copy is MPI messages
 * on the stream's own tag; an invoke is one message.  Each stream has a
 * slot -- a tag, and a thread with a local stream on the device -- for
 * its life.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "progress.h"

/* What a request in flight is. */
enum flight_kind { FLIGHT_INVOKE, FLIGHT_RECORD, FLIGHT_WAIT };

/* A request in flight (an invoke sent by the stream's worker, an event
 * record or wait; answer not yet taken): the receive of its answer,
 * posted as the request left. */
typedef struct in_flight {
    MPI_Request request;
    uint64_t seq;
    int kind;                          /* enum flight_kind */
    const struct pymic_kernel *kernel; /* an invoke's, kept alive by the command */
    struct pymic_mark *recorded;       /* a record's, kept alive by the command */
    bool traced;
    mpidev_reply reply;
} in_flight;

/* The most invokes in flight per stream: the engine's window (stream.c
 * keeps at most 64 commands submitted ahead of `completed`). */
#define MAX_IN_FLIGHT 64

/* The host worker's state for one stream. */
typedef struct mpi_stream {
    int slot;
    /* Failures of this stream's requests seen here (protocol.h,
     * MPIDEV_SKIPPED): each request carries it. */
    _Atomic uint32_t epoch;
    _Alignas(16) unsigned char message[MPIDEV_STREAM_MAX];
    /* The answer of a d2h with its bytes inline (protocol.h). */
    union {
        mpidev_reply reply;
        unsigned char bytes[MPIDEV_STREAM_MAX];
    } answer;
    /* Invokes in flight, a ring: the runner (one at a time) adds at
     * `tail`; pollers take the oldest at `head` under poll_lock, in order. */
    pthread_mutex_t poll_lock;
    _Atomic uint64_t head, tail;
    mpidev_pace pace; /* of the pollers' wait for the oldest (poll_lock) */
    in_flight flights[MAX_IN_FLIGHT];
} mpi_stream;

/* True on a stream's worker thread (mpi_start_worker's wrapper): an
 * invoke submitted there is left in flight (the worker goes on with the
 * next commands); one run by a syncing caller is carried out to its answer
 * before the call returns, as the caller waits for it anyway -- and its
 * length then tells the engine whether the kernel is quick (stream.c). */
static _Thread_local bool on_worker;
static void *(*worker_body)(void *);

static void *worker_main_of_mpi(void *arg)
{
    on_worker = true;
    return worker_body(arg);
}

static mpi_device *state_of(pymic_device *device)
{
    return device->backend;
}

/* Communication with the device failed: it is lost from now on. */
static void lose(mpi_device *md, const char *what, int rc)
{
    if (rc == MPIDEV_ERR_PEER_GONE) {
        atomic_store(&md->ended, true);
        pymic_device_mark_lost(md->device,
                               "device %d lost: its MPI device process (rank %d, pid %d) "
                               "ended (a kernel that crashes on the device's local host "
                               "device takes it down; PYMIC_MPI_DEVICE=proc keeps such a "
                               "fault to the command)",
                               md->device->id, md->rank, md->peer.pid);
        return;
    }
    char text[MPI_MAX_ERROR_STRING] = "";
    int n = 0;
    MPI_Error_string(rc, text, &n);
    pymic_device_mark_lost(md->device, "device %d lost: %s its MPI device (rank %d) failed: %s",
                           md->device->id, what, md->rank, text);
}

/* One control request and its answer, control_lock held, whether or not
 * the device is lost (a reset brings it back this way). */
static int control_exchange(mpi_device *md, mpidev_request *rq, mpidev_reply *reply)
{
    if (md->gone)
        return PYMIC_ERR_DEVICE_LOST;
    size_t bytes = MPIDEV_REQUEST_HEAD + (rq->text[0] ? strlen(rq->text) + 1 : 0);
    int rc = mpidev_send(rq, (int)bytes, md->rank, MPIDEV_TAG_CONTROL, md->comm, &md->peer);
    if (rc == MPI_SUCCESS)
        rc = mpidev_recv(reply, sizeof *reply, md->rank, MPIDEV_TAG_REPLY, md->comm,
                      MPI_STATUS_IGNORE, &md->peer);
    if (rc != MPI_SUCCESS) {
        lose(md, "a request to", rc);
        return PYMIC_ERR_DEVICE_LOST;
    }
    if (reply->status == PYMIC_ERR_DEVICE_LOST)
        pymic_device_mark_lost(md->device, "device %d lost: %s", md->device->id, reply->text);
    return reply->status;
}

/* One control request and its answer, control_lock held.  PYMIC_OK (the
 * answer in *reply), PYMIC_ERR_DEVICE_LOST, or the device's status with
 * its reason in reply->text. */
static int control_call(mpi_device *md, mpidev_request *rq, mpidev_reply *reply)
{
    if (md->gone || atomic_load(&md->device->lost))
        return PYMIC_ERR_DEVICE_LOST;
    return control_exchange(md, rq, reply);
}

static int control(mpi_device *md, mpidev_request *rq, mpidev_reply *reply)
{
    pthread_mutex_lock(&md->control_lock);
    int status = control_call(md, rq, reply);
    pthread_mutex_unlock(&md->control_lock);
    return status;
}

int mpidev_control(mpi_device *md, mpidev_request *rq, mpidev_reply *reply)
{
    return control(md, rq, reply);
}

int mpidev_control_held(mpi_device *md, mpidev_request *rq, mpidev_reply *reply)
{
    return control_call(md, rq, reply);
}

/* ------------------------------------------------------------ device life */

/* PYMIC_MPI_CHUNK: the bytes of every message of a copy, read once per
 * device; 0 (unset, or not a size) lets the device learn them
 * (tuning.h). */
static uint64_t fixed_chunk_bytes(void)
{
    const char *text = getenv("PYMIC_MPI_CHUNK");
    char *end;
    unsigned long long n = text ? strtoull(text, &end, 10) : 0;
    if (!text || *end || n == 0 || n > INT32_MAX)
        return 0;
    return n;
}

static bool check_bounds_asked(void)
{
    const char *check = getenv("PYMIC_CHECK");
    return check && strstr(check, "bounds");
}

static int hello(mpi_device *md, unsigned generation, mpidev_reply *reply);

static bool mpi_open(pymic_device *device)
{
    mpi_device *md = calloc(1, sizeof *md);
    if (!md)
        return false;
    md->device = device;
    md->comm = MPI_COMM_NULL;
    mpidev_tuner_init(&md->tuner, fixed_chunk_bytes(), MPIDEV_CHUNK);
    pthread_mutex_init(&md->control_lock, NULL);
    pthread_mutex_init(&md->lock, NULL);
    pthread_rwlock_init(&md->streams_gate, NULL);
    pthread_mutex_init(&md->blocks_lock, NULL);
    pthread_mutex_init(&md->forget_lock, NULL);
    device->backend = md;
    char why[512];
    if (mpidev_host_ready(why, sizeof why) != PYMIC_OK) {
        pymic_device_mark_lost(device, "device %d lost: %s", device->id, why);
        md->gone = true;
        return true;
    }
    if (!mpidev_connect(md, why, sizeof why)) {
        pymic_device_mark_lost(device, "device %d lost: %s", device->id, why);
        md->gone = true;
        return true;
    }
    mpidev_reply reply;
    pthread_mutex_lock(&md->control_lock);
    int status = hello(md, atomic_load(&device->generation), &reply);
    pthread_mutex_unlock(&md->control_lock);
    if (status == PYMIC_OK) {
        pymic_log(1, "device %d: MPI device rank %d drives its %s", device->id, md->rank,
                  md->local);
    } else if (status != PYMIC_ERR_DEVICE_LOST) {
        pymic_device_mark_lost(device, "device %d lost: its MPI device cannot start: %s",
                               device->id, reply.text);
    }
    return true;
}

/* HELLO to a device process (control_lock held): it sets up its local
 * device with this host's settings and says what it holds, what it drives
 * and where it runs.  `generation`: the device's once this succeeds (its
 * event waits carry it, protocol.h "Points"). */
static int hello(mpi_device *md, unsigned generation, mpidev_reply *reply)
{
    mpidev_request rq = {.op = MPIDEV_HELLO, .a = MPIDEV_PROTOCOL,
                         .b = check_bounds_asked() ? MPIDEV_FLAG_CHECK_BOUNDS : 0,
                         .c = generation};
    int status = control_exchange(md, &rq, reply);
    if (status == PYMIC_OK) {
        md->capacity = reply->value;
        /* The device's name for its local device ("host:0-3"), then its
         * node: a device process on this node is watched by its pid. */
        char *node = strchr(reply->text, '\n');
        if (node)
            *node++ = '\0';
        char here[MPI_MAX_PROCESSOR_NAME];
        int len = 0;
        MPI_Get_processor_name(here, &len);
        md->peer.pid = node && strcmp(node, here) == 0 ? (int)reply->pad : 0;
        reply->text[sizeof md->local - 1] = '\0';
        memcpy(md->local, reply->text, sizeof md->local);
    }
    return status;
}

/* --------------------------------------------------------------- memory */

static size_t mpi_memory_capacity(pymic_device *device)
{
    /* What the device's engine may hold.  A device lost before it could
     * answer has no limit of its own: its allocations fail saying why it
     * was lost, not that it is full. */
    size_t capacity = state_of(device)->capacity;
    return capacity ? capacity : SIZE_MAX;
}

/* PYMIC_CHECK=bounds: the device's engine arms and checks the canaries
 * of its own allocations (the host told it in HELLO) and reports damage
 * as the invoke's failure, so there is nothing to do here -- in
 * particular nothing is written at the device's addresses. */
static void mpi_bounds_arm(pymic_device *device, const pymic_alloc *alloc)
{
    (void)device, (void)alloc;
}

/* -------------------------------------------------------------- streams */

static int mpi_start_worker(pymic_stream *stream, void *(*body)(void *))
{
    pymic_device *d = stream->device;
    mpi_device *md = state_of(d);
    mpi_stream *ms = calloc(1, sizeof *ms);
    if (!ms)
        return pymic_fail(PYMIC_ERR_SYSTEM, "pymic_stream_create: device %d: out of host memory",
                          d->id);
    ms->slot = -1;
    /* The engine's spin window (PYMIC_SPIN_NS, read once when it started;
     * not from open, which runs inside the engine's start) is the MPI
     * waits' too. */
    uint64_t spin;
    if (pymic_get_spin_ns(&spin) == PYMIC_OK)
        mpidev_set_spin_ns(spin);
    pthread_mutex_lock(&md->lock);
    for (int i = 0; i < MPIDEV_MAX_STREAMS && ms->slot < 0; i++) {
        if (!md->used[i]) {
            md->used[i] = true;
            ms->slot = i;
        }
    }
    pthread_mutex_unlock(&md->lock);
    int status = PYMIC_OK;
    if (ms->slot < 0) {
        status = pymic_fail(PYMIC_ERR_SYSTEM,
                            "pymic_stream_create: device %d: an MPI device has at most %d "
                            "streams",
                            d->id, MPIDEV_MAX_STREAMS);
    } else {
        mpidev_request rq = {.op = MPIDEV_START, .slot = (uint32_t)ms->slot};
        mpidev_reply reply;
        int started = control(md, &rq, &reply);
        /* A lost device still gets a worker: its commands fail, saying why. */
        if (started != PYMIC_OK && started != PYMIC_ERR_DEVICE_LOST)
            status = pymic_fail(PYMIC_ERR_SYSTEM, "pymic_stream_create: device %d: %s", d->id,
                                reply.text);
    }
    if (status == PYMIC_OK) {
        pthread_mutex_init(&ms->poll_lock, NULL);
        ms->pace = mpidev_pace_of(false);
        stream->backend_worker = ms;
        worker_body = body; /* the engine's, the same for every stream */
        status = pymic_worker_start_pinned(stream, worker_main_of_mpi);
        if (status != PYMIC_OK)
            pthread_mutex_destroy(&ms->poll_lock);
    }
    if (status != PYMIC_OK) {
        if (ms->slot >= 0) {
            pthread_mutex_lock(&md->lock);
            md->used[ms->slot] = false;
            pthread_mutex_unlock(&md->lock);
        }
        stream->backend_worker = NULL;
        free(ms);
    }
    return status;
}

/* A request of the stream's slot.  False if the device is (or became)
 * lost. */
static bool stream_send(mpi_device *md, mpi_stream *ms, const void *message, size_t bytes)
{
    int rc = mpidev_send(message, (int)bytes, md->rank, MPIDEV_TAG_STREAM(ms->slot),
                      md->comm, &md->peer);
    if (rc != MPI_SUCCESS)
        lose(md, "a stream request to", rc);
    return rc == MPI_SUCCESS;
}

/* Wait for the answer whose receive `pending` is. */
static bool stream_answer_of(mpi_device *md, MPI_Request *pending)
{
    int rc = mpidev_wait(pending, MPI_STATUS_IGNORE, &md->peer);
    if (rc != MPI_SUCCESS)
        lose(md, "waiting for an answer of", rc);
    return rc == MPI_SUCCESS;
}

/* A request of the stream's slot, then the receive for its answer: it is
 * posted while the request travels and is served (so the answer still
 * lands in *answer as it comes), not on the way of the request.  False if
 * the device is (or became) lost; else *pending is the answer's receive,
 * for stream_answer_of. */
static bool stream_ask_into(mpi_device *md, mpi_stream *ms, const void *message, size_t bytes,
                            void *answer, size_t most, MPI_Request *pending)
{
    if (!stream_send(md, ms, message, bytes))
        return false;
    int rc = MPI_Irecv(answer, (int)most, MPI_BYTE, md->rank, MPIDEV_TAG_STREAM(ms->slot),
                       md->comm, pending);
    if (rc != MPI_SUCCESS)
        lose(md, "a stream request to", rc);
    return rc == MPI_SUCCESS;
}

static bool stream_ask(mpi_device *md, mpi_stream *ms, const void *message, size_t bytes,
                       mpidev_reply *reply, MPI_Request *pending)
{
    return stream_ask_into(md, ms, message, bytes, reply, sizeof *reply, pending);
}

/* A request of the stream's slot and its answer. */
static bool stream_call(mpi_device *md, mpi_stream *ms, const void *message, size_t bytes,
                        mpidev_reply *reply)
{
    MPI_Request pending;
    return stream_ask(md, ms, message, bytes, reply, &pending) &&
           stream_answer_of(md, &pending);
}

static void mpi_worker_exit(pymic_stream *stream)
{
    mpi_stream *ms = stream->backend_worker;
    mpi_device *md = state_of(stream->device);
    pthread_mutex_lock(&md->control_lock);
    bool stopped = md->gone;
    if (!md->gone && !atomic_load(&stream->device->lost)) {
        mpidev_request rq = {.op = MPIDEV_STOP};
        mpidev_reply reply;
        stopped = stream_call(md, ms, &rq, MPIDEV_REQUEST_HEAD, &reply);
    }
    if (stopped) {
        pthread_mutex_lock(&md->lock);
        md->used[ms->slot] = false;
        pthread_mutex_unlock(&md->lock);
    } else {
        md->stale[ms->slot] = true; /* mpi_reset stops it */
    }
    pthread_mutex_unlock(&md->control_lock);
    /* Nothing is in flight (STOP runs once every command completed), but
     * a device-wide wait may still be about to poll this stream. */
    pthread_rwlock_wrlock(&md->streams_gate);
    stream->backend_worker = NULL;
    pthread_rwlock_unlock(&md->streams_gate);
    pthread_mutex_destroy(&ms->poll_lock);
    free(ms);
}

/* --------------------------------------------------------------- tracing */

/* Stream requests that asked the device for its span (MPIDEV_SPAN): a
 * test's witness that an untraced run asks for nothing. */
static _Atomic uint64_t spans_asked;

__attribute__((visibility("default"))) uint64_t pymic_mpi_spans_asked(void)
{
    return atomic_load(&spans_asked);
}

/* Read the device's clock against this process's, once per trace: of a
 * few round trips the shortest, whose midpoint is taken as the moment the
 * device read its clock -- off by at most half that round trip. */
static void read_device_clock(mpi_device *md)
{
    uint64_t session = pymic_trace_session();
    if (atomic_load_explicit(&md->clock_session, memory_order_acquire) == session)
        return;
    pthread_mutex_lock(&md->control_lock);
    uint64_t best = UINT64_MAX;
    int64_t offset = 0;
    for (int i = 0; i < 8 && md->clock_session != session; i++) {
        mpidev_request rq = {.op = MPIDEV_CLOCK};
        mpidev_reply reply;
        uint64_t sent = pymic_now_ns();
        if (control_call(md, &rq, &reply) != PYMIC_OK)
            break;
        uint64_t back = pymic_now_ns();
        if (back - sent < best) {
            best = back - sent;
            offset = (int64_t)(reply.value - (sent + best / 2));
        }
    }
    if (best != UINT64_MAX) {
        atomic_store_explicit(&md->clock_offset, offset, memory_order_relaxed);
        atomic_store_explicit(&md->clock_error, (best + 1) / 2, memory_order_relaxed);
        atomic_store_explicit(&md->clock_session, session, memory_order_release);
    }
    pthread_mutex_unlock(&md->control_lock);
}

/* Whether command `seq` is traced: then its request asks for the
 * device's span (MPIDEV_SPAN), and the device's clock is known. */
static bool wants_span(mpi_device *md, pymic_stream *stream, uint64_t seq)
{
    if (!pymic_trace_wants_device_span(stream, seq))
        return false;
    read_device_clock(md);
    atomic_fetch_add_explicit(&spans_asked, 1, memory_order_relaxed);
    return true;
}

/* The span in a device's answer, into the trace in this process's clock. */
static void record_span(mpi_device *md, pymic_stream *stream, uint64_t seq,
                        const mpidev_reply *reply)
{
    /* (No span without this trace's reading of the device's clock.) */
    if (!reply->span_start || atomic_load_explicit(&md->clock_session, memory_order_acquire) !=
                                  pymic_trace_session())
        return;
    int64_t offset = atomic_load_explicit(&md->clock_offset, memory_order_relaxed);
    pymic_trace_device_span(stream, seq, (uint64_t)((int64_t)reply->span_start - offset),
                            (uint64_t)((int64_t)reply->span_end - offset),
                            atomic_load_explicit(&md->clock_error, memory_order_relaxed));
}

/* ------------------------------------------------------------- commands */

static const char *const copy_names[] = {"h2d copy", "d2h copy", "d2d copy"};

/* The command cannot run: the device is lost (or MPI is gone). */
static bool refuse_if_lost(pymic_stream *stream, uint64_t seq, const char *what)
{
    pymic_device *d = stream->device;
    if (!atomic_load_explicit(&d->lost, memory_order_acquire))
        return false;
    pymic_stream_fail_status(stream, seq, PYMIC_ERR_DEVICE_LOST,
                             "%s; command %llu (%s) was not run", d->lost_why,
                             (unsigned long long)seq, what);
    return true;
}

/* The device was lost while the command was under way. */
static void fail_underway(pymic_stream *stream, uint64_t seq, const char *what)
{
    pymic_device *d = stream->device;
    pymic_stream_fail_status(stream, seq, PYMIC_ERR_DEVICE_LOST,
                             "%s; command %llu of this stream (%s) did not complete",
                             d->lost_why, (unsigned long long)seq, what);
}

/* The device's engine refused or failed the command: its reason, which
 * names the kernel or copy in the device's own terms. */
static void fail_with_answer(pymic_stream *stream, uint64_t seq, const mpidev_reply *reply,
                             const char *what)
{
    pymic_device *d = stream->device;
    if (reply->status == PYMIC_ERR_DEVICE_LOST) {
        pymic_device_mark_lost(d, "device %d lost: %s", d->id, reply->text);
        pymic_stream_fail_status(stream, seq, PYMIC_ERR_DEVICE_LOST,
                                 "%s; command %llu of this stream (%s) did not complete",
                                 d->lost_why, (unsigned long long)seq, what);
        return;
    }
    pymic_stream_fail_status(stream, seq, reply->status, "%s on the MPI device: %s", what,
                             reply->text);
}

/* The same, and the stream's epoch moves on: the device skips the
 * requests sent before this failure was seen (protocol.h, MPIDEV_SKIPPED);
 * those sent from now on -- the engine sends none before the failure is
 * reported -- run.  Recorded first, so a request that carries the new
 * epoch is one the engine checked against this failure. */
static void fail_with_answer_of(mpi_stream *ms, pymic_stream *stream, uint64_t seq,
                                const mpidev_reply *reply, const char *what)
{
    fail_with_answer(stream, seq, reply, what);
    atomic_fetch_add_explicit(&ms->epoch, 1, memory_order_release);
}

/* The bytes of a copy, as chunks on the slot's data tag with several in
 * flight (protocol.h).  False if the device is (or became) lost. */
static bool stream_data(mpi_device *md, mpi_stream *ms, int sending, void *base,
                        uint64_t nbytes, uint64_t chunk)
{
    int rc = mpidev_transfer(sending, base, nbytes, chunk, MPIDEV_WINDOW, md->rank,
                             MPIDEV_TAG_DATA(ms->slot), md->comm, &md->peer);
    if (rc != MPI_SUCCESS)
        lose(md, sending ? "sending data to" : "receiving data from", rc);
    return rc == MPI_SUCCESS;
}

/* A d2h's data and its answer (`rq`, bytes past the inline size): the
 * receives of the answer and of the first chunks are posted before the
 * request goes, so nothing waits for a round trip and the bytes land in
 * place as they come; the device sends the data at once and the answer
 * after it -- or, when it does not send the data (a failure, a skip), only
 * the answer, which then comes while the data is awaited.  False if the
 * device is (or became) lost. */
static bool stream_fetch(mpi_device *md, mpi_stream *ms, const mpidev_request *rq, void *dst,
                         uint64_t nbytes, mpidev_reply *reply)
{
    MPI_Request pending;
    mpidev_flow flow;
    int rc = MPI_Irecv(reply, sizeof *reply, MPI_BYTE, md->rank, MPIDEV_TAG_STREAM(ms->slot),
                       md->comm, &pending);
    if (rc == MPI_SUCCESS) {
        rc = mpidev_flow_start(&flow, 0, dst, nbytes, rq->c, MPIDEV_WINDOW, md->rank,
                               MPIDEV_TAG_DATA(ms->slot), md->comm);
        if (rc != MPI_SUCCESS)
            mpidev_abandon(&pending);
    }
    if (rc != MPI_SUCCESS) {
        lose(md, "receiving data from", rc);
        return false;
    }
    if (!stream_send(md, ms, rq, MPIDEV_REQUEST_HEAD)) {
        mpidev_flow_abandon(&flow);
        mpidev_abandon(&pending);
        return false;
    }
    rc = mpidev_flow_finish(&flow, &pending, &md->peer);
    if (rc == MPIDEV_FLOW_ANSWERED) {
        if (reply->status == PYMIC_OK) {
            rc = mpidev_flow_finish(&flow, NULL, &md->peer);
        } else {
            mpidev_flow_abandon(&flow); /* none of it comes */
            rc = MPI_SUCCESS;
        }
    }
    if (rc != MPI_SUCCESS) {
        mpidev_abandon(&pending);
        lose(md, "receiving data from", rc);
    }
    return rc == MPI_SUCCESS;
}

/* A copy whose messages tuning.h chose has ended; when that settles its
 * size class's way, PYMIC_DEBUG=1 says so. */
static void tune_done(mpi_device *md, const mpidev_tune_choice *tuned, uint64_t start_ns,
                      bool completed)
{
    mpidev_tune_class c;
    if (!mpidev_tune_done(&md->tuner, tuned, mpidev_now_ns() - start_ns, completed, &c))
        return;
    unsigned lowest = MPIDEV_TUNE_LOWEST + (unsigned)tuned->klass;
    pymic_log(1, "device %d: copies %s it of %llu to %llu MiB go %s (best %.3f ns per byte "
              "as one message, %.3f in chunks of %llu KiB)",
              md->device->id, tuned->sending ? "to" : "from",
              (unsigned long long)1 << (lowest - 20), (unsigned long long)2 << (lowest - 20),
              c.settled == MPIDEV_WAY_WHOLE ? "as one message" : "in chunks",
              c.best_ns_per_byte[MPIDEV_WAY_WHOLE], c.best_ns_per_byte[MPIDEV_WAY_CHUNKS],
              (unsigned long long)(MPIDEV_CHUNK >> 10));
}

static void mpi_poll(pymic_stream *stream);

static int mpi_copy(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    const char *what = copy_names[cmd->u.copy.dir];
    if (refuse_if_lost(stream, seq, what))
        return PYMIC_COMMAND_DONE;
    mpi_device *md = state_of(stream->device);
    mpi_stream *ms = stream->backend_worker;
    /* A copy goes once the invokes before it have answered: it is carried
     * out to its answer here (its data moves while this waits), and its
     * answer -- failure, skip, span -- is taken after theirs, in order. */
    while (atomic_load_explicit(&ms->head, memory_order_acquire) !=
           atomic_load_explicit(&ms->tail, memory_order_relaxed))
        mpi_poll(stream);
    if (refuse_if_lost(stream, seq, what))
        return PYMIC_COMMAND_DONE;
    uint64_t nbytes = cmd->u.copy.nbytes;
    /* (c: the chunk size, chosen below for a copy of more than the
     * inline bytes; any is valid for one that fits.) */
    mpidev_request rq = {.slot = (uint32_t)ms->slot, .c = MPIDEV_CHUNK,
                         .epoch = atomic_load_explicit(&ms->epoch, memory_order_acquire)};
    mpidev_reply reply;
    reply.span_start = 0; /* (a short answer leaves it: no span) */
    bool traced = wants_span(md, stream, seq);
    uint32_t span_bit = traced ? MPIDEV_SPAN : 0;
    MPI_Request pending;
    bool ok = true;
    mpidev_tune_choice tuned;
    uint64_t start_ns;
    switch (cmd->u.copy.dir) {
    case PYMIC_COPY_H2D:
        if (nbytes <= MPIDEV_INLINE_BYTES) {
            /* One message: the request's head and the bytes. */
            rq.op = MPIDEV_H2D | span_bit;
            rq.a = (uintptr_t)cmd->u.copy.dst;
            rq.b = nbytes;
            memcpy(ms->message, &rq, MPIDEV_REQUEST_HEAD);
            memcpy(ms->message + MPIDEV_REQUEST_HEAD, cmd->u.copy.src, nbytes);
            ok = stream_call(md, ms, ms->message, MPIDEV_REQUEST_HEAD + nbytes, &reply);
            break;
        }
        /* The request, the data with chunks in flight, then the answer
         * (whose receive is posted before the data leaves). */
        rq.op = MPIDEV_H2D | span_bit;
        rq.a = (uintptr_t)cmd->u.copy.dst;
        rq.b = nbytes;
        start_ns = mpidev_now_ns();
        rq.c = mpidev_tune_pick(&md->tuner, 1, nbytes, &tuned);
        ok = stream_ask(md, ms, &rq, MPIDEV_REQUEST_HEAD, &reply, &pending);
        if (ok && !stream_data(md, ms, 1, (void *)(uintptr_t)cmd->u.copy.src, nbytes, rq.c)) {
            mpidev_abandon(&pending);
            ok = false;
        }
        ok = ok && stream_answer_of(md, &pending);
        tune_done(md, &tuned, start_ns, ok && reply.status == PYMIC_OK);
        break;
    case PYMIC_COPY_D2H:
        rq.op = MPIDEV_D2H | span_bit;
        rq.a = (uintptr_t)cmd->u.copy.src;
        rq.b = nbytes;
        if (nbytes <= MPIDEV_INLINE_BYTES) {
            /* One answer: its head and, if OK, the bytes. */
            ok = stream_ask_into(md, ms, &rq, MPIDEV_REQUEST_HEAD, ms->answer.bytes,
                                 sizeof ms->answer, &pending) &&
                 stream_answer_of(md, &pending);
            if (ok) {
                memcpy(&reply, ms->answer.bytes, sizeof reply);
                if (reply.status == PYMIC_OK)
                    memcpy(cmd->u.copy.dst, ms->answer.bytes + MPIDEV_REPLY_HEAD, nbytes);
            }
            break;
        }
        start_ns = mpidev_now_ns();
        rq.c = mpidev_tune_pick(&md->tuner, 0, nbytes, &tuned);
        ok = stream_fetch(md, ms, &rq, cmd->u.copy.dst, nbytes, &reply);
        tune_done(md, &tuned, start_ns, ok && reply.status == PYMIC_OK);
        break;
    default:
        rq.op = MPIDEV_D2D | span_bit;
        rq.a = (uintptr_t)cmd->u.copy.dst;
        rq.b = (uintptr_t)cmd->u.copy.src;
        rq.c = nbytes;
        ok = stream_call(md, ms, &rq, MPIDEV_REQUEST_HEAD, &reply);
        break;
    }
    if (ok && traced)
        record_span(md, stream, seq, &reply);
    if (!ok)
        fail_underway(stream, seq, what);
    else if (reply.status < 0)
        fail_with_answer_of(ms, stream, seq, &reply, what);
    return PYMIC_COMMAND_DONE;
}

/* The invoke as one message (protocol.h): the kernel handle, each
 * argument's value or scalar place, the scalar bytes. */
static size_t pack_invoke(const pymic_command *cmd, uint32_t epoch, unsigned char *out)
{
    mpidev_invoke_head head = {.op = MPIDEV_INVOKE, .nargs = cmd->nargs, .epoch = epoch,
                               .scalar_bytes = (uint32_t)cmd->scalar_bytes,
                               .kernel = cmd->u.call.kernel_handle};
    memcpy(out, &head, sizeof head);
    unsigned char *at = out + sizeof head;
    for (int i = 0; i < cmd->nargs; i++) {
        mpidev_arg arg = {0};
        if (cmd->arg_kind[i] == PYMIC_ARG_SCALAR) {
            arg.scalar_offset = cmd->arg_offset[i];
            arg.scalar_size = cmd->arg_size[i];
        } else {
            /* A device address is the device's own; any other value is
             * passed on unchanged, as on every device. */
            arg.value = (uintptr_t)cmd->args[i];
        }
        memcpy(at + (size_t)i * sizeof arg, &arg, sizeof arg);
    }
    at += (size_t)cmd->nargs * sizeof(mpidev_arg);
    memcpy(at, cmd->scalars, (size_t)cmd->scalar_bytes);
    return (size_t)(at - out) + (size_t)cmd->scalar_bytes;
}

/* The name of an invoke in messages (only written when one is needed:
 * the invoke's own path formats nothing). */
static const char *kernel_what(const pymic_command *cmd, char *what, size_t len)
{
    const struct pymic_kernel *kernel = cmd->u.call.handle;
    snprintf(what, len, "kernel '%s'", kernel->name);
    return what;
}

/* The name of a request in flight in messages. */
static const char *flight_what(const in_flight *f)
{
    return f->kind == FLIGHT_INVOKE  ? f->kernel->name
         : f->kind == FLIGHT_RECORD ? "event record"
                                    : "event wait";
}

/* The answer of an invoke: a failure recorded (and the epoch moved on),
 * the span traced. */
static void take_answer(mpi_device *md, mpi_stream *ms, pymic_stream *stream, uint64_t seq,
                        const struct pymic_kernel *kernel, bool traced, const mpidev_reply *reply)
{
    if (traced)
        record_span(md, stream, seq, reply);
    if (reply->status < 0) {
        char what[PYMIC_NAME_MAX + 16];
        snprintf(what, sizeof what, "kernel '%s'", kernel->name);
        fail_with_answer_of(ms, stream, seq, reply, what);
    }
}

/* Left in flight (the worker's untraced invokes, event records and
 * waits): the request in ms->message goes with its answer's receive
 * posted, and mpi_poll takes the answer. */
static int send_in_flight(mpi_device *md, mpi_stream *ms, pymic_stream *stream, uint64_t seq,
                          int kind, const struct pymic_kernel *kernel,
                          struct pymic_mark *recorded, size_t bytes, bool traced)
{
    /* The engine keeps at most MAX_IN_FLIGHT ahead of `completed`; were
     * the ring ever full, the oldest answer is waited for first. */
    while (atomic_load_explicit(&ms->tail, memory_order_relaxed) -
               atomic_load_explicit(&ms->head, memory_order_acquire) >=
           MAX_IN_FLIGHT)
        stream->ops->poll(stream);
    uint64_t tail = atomic_load_explicit(&ms->tail, memory_order_relaxed);
    in_flight *f = &ms->flights[tail % MAX_IN_FLIGHT];
    f->seq = seq;
    f->kind = kind;
    f->kernel = kernel;
    f->recorded = recorded;
    f->traced = traced;
    f->reply.span_start = 0; /* (a short answer leaves it: no span) */
    if (!stream_ask(md, ms, ms->message, bytes, &f->reply, &f->request)) {
        fail_underway(stream, seq, flight_what(f));
        return PYMIC_COMMAND_DONE;
    }
    /* Counted as a wait for the device process until its answer is taken
     * (mpi_poll): a reset that replaces an ended process waits for that,
     * since the answer's receive is on the old process's communicator. */
    atomic_fetch_add_explicit(&md->peer.waits, 1, memory_order_relaxed);
    atomic_store_explicit(&ms->tail, tail + 1, memory_order_release);
    return PYMIC_COMMAND_IN_FLIGHT;
}

/* Invokes left in flight so far (for tests: one a syncing thread runs is
 * carried out to its answer instead, test_mpi.c). */
static _Atomic uint64_t invokes_in_flight;

__attribute__((visibility("default"))) uint64_t pymic_mpi_invokes_in_flight(void)
{
    return atomic_load(&invokes_in_flight);
}

static int mpi_invoke(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    char what[PYMIC_NAME_MAX + 16];
    if (atomic_load_explicit(&stream->device->lost, memory_order_acquire) &&
        refuse_if_lost(stream, seq, kernel_what(cmd, what, sizeof what)))
        return PYMIC_COMMAND_DONE;
    mpi_device *md = state_of(stream->device);
    mpi_stream *ms = stream->backend_worker;
    size_t bytes =
        pack_invoke(cmd, atomic_load_explicit(&ms->epoch, memory_order_acquire), ms->message);
    bool traced = wants_span(md, stream, seq);
    if (traced) {
        uint32_t op = MPIDEV_INVOKE | MPIDEV_SPAN;
        memcpy(ms->message, &op, sizeof op);
    }
    if (traced) /* its span is recorded after theirs, in order */
        while (atomic_load_explicit(&ms->head, memory_order_acquire) !=
               atomic_load_explicit(&ms->tail, memory_order_relaxed))
            mpi_poll(stream);
    /* A traced invoke is carried out to its answer: its host span then
     * covers its run (a span in flight would be its submission only). */
    if (on_worker && !traced) {
        atomic_fetch_add_explicit(&invokes_in_flight, 1, memory_order_relaxed);
        return send_in_flight(md, ms, stream, seq, FLIGHT_INVOKE, cmd->u.call.handle, NULL,
                              bytes, traced);
    }
    mpidev_reply reply;
    reply.span_start = 0; /* (a short answer leaves it: no span) */
    if (!stream_call(md, ms, ms->message, bytes, &reply)) {
        fail_underway(stream, seq, kernel_what(cmd, what, sizeof what));
        return PYMIC_COMMAND_DONE;
    }
    take_answer(md, ms, stream, seq, cmd->u.call.handle, traced, &reply);
    return PYMIC_COMMAND_DONE;
}

/* Take the oldest answer of an invoke in flight if it is back (or the
 * device is lost), and complete its command; else pace the wait (spin,
 * yield, sleep as any wait here) and watch the device process.  Several
 * threads may poll one stream: one at a time looks, the others yield. */
/* Calls of mpi_poll on this thread (a test's measure of which thread
 * polls: a sync polls for its spin window, then the worker alone). */
static _Thread_local uint64_t polls_here;

__attribute__((visibility("default"))) uint64_t pymic_mpi_polls_on_this_thread(void)
{
    return polls_here;
}

/* For tests: while held, no poll takes an answer, as if the host's
 * threads were all busy elsewhere (the answers wait in MPI). */
static _Atomic int answers_held;

__attribute__((visibility("default"))) void pymic_mpi_hold_answers(int hold)
{
    atomic_store(&answers_held, hold);
}

static void mpi_poll(pymic_stream *stream)
{
    polls_here++;
    if (atomic_load_explicit(&answers_held, memory_order_relaxed)) {
        sched_yield();
        return;
    }
    mpi_device *md = state_of(stream->device);
    pthread_rwlock_rdlock(&md->streams_gate);
    mpi_stream *ms = stream->backend_worker;
    if (!ms || pthread_mutex_trylock(&ms->poll_lock) != 0) {
        pthread_rwlock_unlock(&md->streams_gate);
        sched_yield();
        return;
    }
    uint64_t head = atomic_load_explicit(&ms->head, memory_order_relaxed);
    if (head == atomic_load_explicit(&ms->tail, memory_order_acquire)) {
        /* Nothing in flight: the waiter waits for a command the worker
         * carries out to its answer (a copy); let others have the core. */
        pthread_mutex_unlock(&ms->poll_lock);
        pthread_rwlock_unlock(&md->streams_gate);
        sched_yield();
        return;
    }
    in_flight *f = &ms->flights[head % MAX_IN_FLIGHT];
    int done = 0, rc = MPI_SUCCESS;
    bool lost = atomic_load_explicit(&stream->device->lost, memory_order_acquire);
    if (!lost)
        rc = MPI_Test(&f->request, &done, MPI_STATUS_IGNORE);
    if (!lost && rc == MPI_SUCCESS && !done) {
        bool alive = mpidev_pace_on(&ms->pace, &md->peer);
        pthread_mutex_unlock(&ms->poll_lock);
        pthread_rwlock_unlock(&md->streams_gate);
        if (!alive)
            lose(md, "waiting for an answer of", MPIDEV_ERR_PEER_GONE);
        return;
    }
    ms->pace.start = 0; /* an answer came: the next wait starts afresh */
    uint64_t seq = f->seq;
    bool wait_resolved = false, wait_failed = false;
    if (done && f->kind == FLIGHT_INVOKE) {
        take_answer(md, ms, stream, seq, f->kernel, f->traced, &f->reply);
    } else if (done) {
        /* An event record's or wait's answer: OK, MPIDEV_SKIPPED (a wait
         * after a failure of this stream: moot), the point was failed, or
         * the device's failure (a wait abandoned by a reset). */
        wait_failed = f->reply.status == MPIDEV_WAIT_FAILED;
        wait_resolved = f->kind == FLIGHT_WAIT &&
                        (f->reply.status == PYMIC_OK || wait_failed);
        if (f->reply.status < 0)
            fail_with_answer_of(ms, stream, seq, &f->reply, flight_what(f));
        else if (f->kind == FLIGHT_RECORD && f->reply.status == PYMIC_OK)
            f->recorded->device_stamp_ns = f->reply.value; /* (before it completes) */
    } else {
        /* (MPI is not to be called once gone: finalised, or a fork()ed
         * child's copy of its parent's.) */
        if (!md->gone)
            mpidev_abandon(&f->request);
        if (rc != MPI_SUCCESS)
            lose(md, "waiting for an answer of", rc);
        fail_underway(stream, seq, flight_what(f));
    }
    atomic_store_explicit(&ms->head, head + 1, memory_order_release);
    atomic_fetch_sub_explicit(&md->peer.waits, 1, memory_order_release);
    pthread_mutex_unlock(&ms->poll_lock);
    pthread_rwlock_unlock(&md->streams_gate);
    if (wait_resolved) {
        /* The host's mark too, and the engine's failure worded from it:
         * this may wait for the recording stream's answer (so no lock is
         * held).  After a failure the epoch moves on, as after any
         * failure seen here. */
        pymic_mark_wait_resolved(stream, seq, wait_failed);
        if (wait_failed)
            atomic_fetch_add_explicit(&ms->epoch, 1, memory_order_release);
    }
    /* Last: the stream may end once its last command completed. */
    pymic_command_complete(stream, seq);
}

/* --------------------------------------------------------------- events */

/* Waits between two streams of one device handed to the device (a test's
 * witness that they are resolved there, not on the host). */
static _Atomic uint64_t waits_on_device;

__attribute__((visibility("default"))) uint64_t pymic_mpi_waits_on_device(void)
{
    return atomic_load(&waits_on_device);
}

/* The device may drop these points (protocol.h, "Points"): noted here,
 * sent with the next RECORD or WAIT.  Any thread, possibly with a
 * stream's completion lock held: only this leaf lock is taken. */
static void mpi_mark_forget(pymic_device *device, uint64_t id)
{
    mpi_device *md = state_of(device);
    pthread_mutex_lock(&md->forget_lock);
    if (md->forget_count == md->forget_room) {
        size_t room = md->forget_room ? 2 * md->forget_room : 64;
        uint64_t *grown = realloc(md->forget, room * sizeof *grown);
        if (grown) {
            md->forget = grown;
            md->forget_room = room;
        }
    }
    /* (Without memory the device keeps the point: a few bytes there.) */
    if (md->forget_count < md->forget_room)
        md->forget[md->forget_count++] = id;
    pthread_mutex_unlock(&md->forget_lock);
}

/* A RECORD or WAIT for point `id` into ms->message, with up to
 * MPIDEV_FORGET_MAX points to forget after its head; its bytes. */
static size_t pack_point(mpi_device *md, mpi_stream *ms, uint32_t op, uint64_t id,
                         uint64_t flags)
{
    mpidev_request rq = {.op = op, .slot = (uint32_t)ms->slot, .a = id, .b = flags,
                         .epoch = atomic_load_explicit(&ms->epoch, memory_order_acquire)};
    pthread_mutex_lock(&md->forget_lock);
    size_t n = md->forget_count < MPIDEV_FORGET_MAX ? md->forget_count : MPIDEV_FORGET_MAX;
    md->forget_count -= n;
    memcpy(ms->message + MPIDEV_REQUEST_HEAD, md->forget + md->forget_count,
           n * sizeof(uint64_t));
    pthread_mutex_unlock(&md->forget_lock);
    rq.c = n;
    memcpy(ms->message, &rq, MPIDEV_REQUEST_HEAD);
    return MPIDEV_REQUEST_HEAD + n * sizeof(uint64_t);
}

/* An event record of a stream of this device: its point goes to the
 * device in stream order, in flight like an invoke; the engine sets the
 * host's mark when the answer comes (every request before it answered). */
static int mpi_record(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    mpi_device *md = state_of(stream->device);
    mpi_stream *ms = stream->backend_worker;
    uint64_t failed = pymic_stream_failed_before(stream, seq) ? MPIDEV_RECORD_FAILED : 0;
    if (atomic_load_explicit(&stream->device->lost, memory_order_acquire)) {
        /* The point is still marked (failed, no answer) where the device
         * process can hear it: a wait sent to it meanwhile -- the device
         * lost and reset between a waiter's look and its request -- must
         * not hang there. */
        if (!md->gone && !atomic_load(&md->ended)) {
            size_t bytes = pack_point(md, ms, MPIDEV_RECORD, cmd->u.mark->backend_id,
                                      MPIDEV_RECORD_FAILED | MPIDEV_RECORD_NO_ANSWER);
            mpidev_send(ms->message, (int)bytes, md->rank, MPIDEV_TAG_STREAM(ms->slot),
                        md->comm, &md->peer);
        }
        refuse_if_lost(stream, seq, "event record");
        return PYMIC_COMMAND_DONE;
    }
    size_t bytes = pack_point(md, ms, MPIDEV_RECORD, cmd->u.mark->backend_id, failed);
    return send_in_flight(md, ms, stream, seq, FLIGHT_RECORD, NULL, cmd->u.mark, bytes, false);
}

/* A wait for an event recorded on a stream of this device (not yet done on
 * the host): the device's slot thread waits for the point, and this
 * stream's worker goes on sending what follows. */
static int mpi_wait_mark(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    mpi_device *md = state_of(stream->device);
    mpi_stream *ms = stream->backend_worker;
    const pymic_mark *mark = cmd->u.mark;
    /* Counted as a wait for the device process before anything is
     * looked at: a reset that replaces the process waits for it, and one
     * that has already done so shows in the generation. */
    atomic_fetch_add_explicit(&md->peer.waits, 1, memory_order_seq_cst);
    int result = PYMIC_COMMAND_DONE; /* not taken: the engine waits on the host */
    if (!atomic_load(&stream->device->lost) &&
        mark->owner_generation == atomic_load(&stream->device->generation)) {
        size_t bytes = pack_point(md, ms, MPIDEV_WAIT, mark->backend_id,
                                  mark->owner_generation);
        result = send_in_flight(md, ms, stream, seq, FLIGHT_WAIT, NULL, NULL, bytes, false);
        if (result == PYMIC_COMMAND_IN_FLIGHT)
            atomic_fetch_add_explicit(&waits_on_device, 1, memory_order_relaxed);
    }
    atomic_fetch_sub_explicit(&md->peer.waits, 1, memory_order_release);
    return result;
}

/* ---------------------------------------------------------- caller runs */

/* A thread about to wait in a sync sends the stream's requests and waits
 * for their answers itself: an invoke + sync is then one MPI round trip
 * with no hand-off to the worker and back.  Nothing runs on this process's
 * cores but the wait (the kernel runs in the device process), and the
 * commands of a stream still run one at a time and in order (the engine's
 * claim), each on its stream's slot, so any thread may. */
static bool mpi_caller_may_run(const pymic_device *device)
{
    (void)device;
    return true;
}

/* ------------------------------------------------------------ libraries */

typedef struct mpi_library {
    uint64_t handle;
    unsigned generation;
} mpi_library;

/* The library's bytes, for a device that does not see the file: LOAD_BYTES
 * and the data on the control tag, control_lock held. */
static int send_library(mpi_device *md, int fd, const struct stat *st, const char *name,
                        mpidev_reply *reply)
{
    mpidev_request rq = {.op = MPIDEV_LOAD_BYTES, .a = (uint64_t)st->st_size};
    snprintf(rq.text, sizeof rq.text, "%s", name);
    char *data = malloc(st->st_size ? (size_t)st->st_size : 1);
    size_t got = 0;
    while (data && got < (size_t)st->st_size) {
        ssize_t n = pread(fd, data + got, (size_t)st->st_size - got, (off_t)got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (!data || got != (size_t)st->st_size) {
        snprintf(reply->text, sizeof reply->text, "cannot read the library to send it: %s",
                 data ? strerror(errno) : "out of host memory");
        free(data);
        return PYMIC_ERR_LIBRARY;
    }
    /* The request, its bytes, then the answer (control_call's receive). */
    size_t bytes = MPIDEV_REQUEST_HEAD + strlen(rq.text) + 1;
    int rc = md->gone ? MPI_ERR_OTHER
                      : mpidev_send(&rq, (int)bytes, md->rank, MPIDEV_TAG_CONTROL,
                                 md->comm, &md->peer);
    for (size_t done = 0; rc == MPI_SUCCESS && done < got;) {
        size_t n = got - done < MPIDEV_CHUNK ? got - done : MPIDEV_CHUNK;
        rc = mpidev_send(data + done, (int)n, md->rank, MPIDEV_TAG_CONTROL, md->comm, &md->peer);
        done += n;
    }
    free(data);
    if (rc == MPI_SUCCESS)
        rc = mpidev_recv(reply, sizeof *reply, md->rank, MPIDEV_TAG_REPLY, md->comm,
                      MPI_STATUS_IGNORE, &md->peer);
    if (rc != MPI_SUCCESS) {
        if (!md->gone)
            lose(md, "sending a library to", rc);
        return PYMIC_ERR_DEVICE_LOST;
    }
    return reply->status;
}

/* The device loads the library by its absolute path -- the name the
 * host loaded it by, or the file its descriptor is open on -- if that is
 * the same file there (inode and size: a shared file system, as on
 * clusters).  Where it is not (no shared file system, or the file was
 * replaced since the host opened it), the host sends the file's bytes and
 * the device loads its own copy. */
static void *mpi_library_open(pymic_device *device, int fd, const char *path, bool by_path,
                              char *why, size_t len)
{
    mpi_device *md = state_of(device);
    mpi_library *lib = malloc(sizeof *lib);
    struct stat st;
    mpidev_request rq = {.op = MPIDEV_LOAD};
    if (!lib || fstat(fd, &st) != 0) {
        snprintf(why, len, "%s", lib ? strerror(errno) : "out of host memory");
        free(lib);
        close(fd);
        return NULL;
    }
    bool named = true;
    if (by_path && path[0] == '/') {
        snprintf(rq.text, sizeof rq.text, "%s", path);
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, rq.text, sizeof rq.text - 1);
        named = n > 0 && rq.text[0] == '/' && (size_t)n < sizeof rq.text - 1;
        rq.text[named ? n : 0] = '\0';
    }
    rq.a = (uint64_t)st.st_ino;
    rq.b = (uint64_t)st.st_size;
    mpidev_reply reply = {.status = PYMIC_ERR_LIBRARY, .value = MPIDEV_NOT_SAME};
    pthread_mutex_lock(&md->control_lock);
    int status = named ? control_call(md, &rq, &reply) : PYMIC_ERR_LIBRARY;
    if (status == PYMIC_ERR_LIBRARY && reply.value == MPIDEV_NOT_SAME)
        status = send_library(md, fd, &st, path, &reply);
    pthread_mutex_unlock(&md->control_lock);
    close(fd);
    if (status != PYMIC_OK) {
        snprintf(why, len, "%s", status == PYMIC_ERR_DEVICE_LOST && reply.status != status
                                     ? device->lost_why
                                     : reply.text);
        free(lib);
        return NULL;
    }
    lib->handle = reply.value;
    lib->generation = atomic_load(&device->generation);
    return lib;
}

static uint64_t mpi_kernel_find(pymic_device *device, void *handle, const char *name,
                                char *why, size_t len)
{
    mpi_device *md = state_of(device);
    mpi_library *lib = handle;
    mpidev_request rq = {.op = MPIDEV_FIND, .a = lib->handle};
    snprintf(rq.text, sizeof rq.text, "%s", name);
    mpidev_reply reply;
    int status = control(md, &rq, &reply);
    if (status == PYMIC_OK)
        return reply.value;
    if (status == PYMIC_ERR_DEVICE_LOST && reply.status != status)
        snprintf(why, len, "%s", device->lost_why);
    else
        snprintf(why, len, "%s", reply.text);
    return 0;
}

static void mpi_library_close(pymic_device *device, void *handle)
{
    mpi_device *md = state_of(device);
    mpi_library *lib = handle;
    /* A library of before a reset went with the reset. */
    if (lib->generation == atomic_load(&device->generation)) {
        mpidev_request rq = {.op = MPIDEV_UNLOAD, .a = lib->handle};
        mpidev_reply reply;
        control(md, &rq, &reply);
    }
    free(lib);
}

/* --------------------------------------------------------------- health */

/* The device process ended: a spawned device gets a new one (same
 * placement: the same spawn), which starts with no memory, no libraries
 * and a thread for each of the host's streams; the old blocks become
 * orphans (blocks.c).  A device rank of an MPMD launch cannot be
 * replaced. */
static int respawn(mpi_device *md)
{
    pymic_device *device = md->device;
    if (!md->spawned)
        return pymic_fail(PYMIC_ERR_DEVICE_LOST,
                          "pymic_device_reset: device %d: its MPI device rank %d has ended, "
                          "and a device rank started on the job's launch line (MPMD) cannot "
                          "be replaced: start the job again (devices spawned by a program "
                          "started without device ranks are started afresh by a reset; "
                          "PYMIC_MPI_DEVICE=proc keeps a crashing kernel from ending the "
                          "device rank)",
                          device->id, md->rank);
    /* Waits for the old process give up once they see it gone (their
     * requests are on its communicator and watch its pid): none may be
     * under way when both are replaced.  The device is lost meanwhile,
     * so no new command starts one. */
    while (atomic_load_explicit(&md->peer.waits, memory_order_acquire) > 0) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    char why[512];
    if (!mpidev_respawn(md, why, sizeof why))
        return pymic_fail(PYMIC_ERR_DEVICE_LOST,
                          "pymic_device_reset: device %d: cannot start a new MPI device "
                          "process: %s",
                          device->id, why);
    pthread_mutex_lock(&md->control_lock);
    md->peer.pid = 0;
    atomic_store(&md->ended, false);
    atomic_store(&md->clock_session, 0); /* a new process: its clock is read again */
    mpidev_reply reply = {0};
    int status = hello(md, atomic_load(&device->generation) + 1, &reply);
    /* Each stream of the host gets its thread there again; slots of
     * streams that ended meanwhile are free. */
    for (int i = 0; status == PYMIC_OK && i < MPIDEV_MAX_STREAMS; i++) {
        pthread_mutex_lock(&md->lock);
        bool used = md->used[i];
        if (md->stale[i])
            md->used[i] = used = false;
        pthread_mutex_unlock(&md->lock);
        md->stale[i] = false;
        if (used) {
            mpidev_request start = {.op = MPIDEV_START, .slot = (uint32_t)i};
            status = control_exchange(md, &start, &reply);
        }
    }
    pthread_mutex_unlock(&md->control_lock);
    /* Half set up, the new process is given up: the next reset spawns
     * another rather than trust it. */
    if (status != PYMIC_OK)
        atomic_store(&md->ended, true);
    if (status != PYMIC_OK)
        return pymic_fail(PYMIC_ERR_DEVICE_LOST,
                          "pymic_device_reset: device %d: its new MPI device process cannot "
                          "start: %s",
                          device->id, status == PYMIC_ERR_DEVICE_LOST && !reply.text[0]
                                          ? "it does not answer"
                                          : reply.text);
    mpidev_blocks_orphan(md);
    atomic_fetch_add(&device->generation, 1);
    atomic_store_explicit(&device->lost, 0, memory_order_release);
    pymic_log(1, "device %d: reset: a new MPI device process (rank %d of its spawn) drives "
              "its %s", device->id, md->rank, md->local);
    return PYMIC_OK;
}

static int mpi_reset(pymic_device *device)
{
    mpi_device *md = state_of(device);
    if (md->gone)
        return pymic_fail(PYMIC_ERR_DEVICE_LOST, "pymic_device_reset: %s", device->lost_why);
    if (atomic_load(&md->ended))
        return respawn(md);
    pthread_mutex_lock(&md->control_lock);
    /* The device process is alive if it answers; a lost local device is
     * restarted by its engine's reset. */
    atomic_store(&device->lost, 0);
    /* The generation the device has once reset: event waits sent before
     * (they carry the old one) give up there, even those served after. */
    mpidev_request rq = {.op = MPIDEV_RESET, .a = atomic_load(&device->generation) + 1u};
    mpidev_reply reply;
    int status = control_call(md, &rq, &reply);
    /* The threads of streams that ended while the device was lost still
     * wait for their stream's requests there: stop them, and the slots
     * are free again. */
    for (int i = 0; status == PYMIC_OK && i < MPIDEV_MAX_STREAMS; i++) {
        if (!md->stale[i])
            continue;
        mpi_stream stale = {.slot = i};
        mpidev_request stop = {.op = MPIDEV_STOP};
        if (!stream_call(md, &stale, &stop, MPIDEV_REQUEST_HEAD, &reply)) {
            status = PYMIC_ERR_DEVICE_LOST;
            break;
        }
        md->stale[i] = false;
        pthread_mutex_lock(&md->lock);
        md->used[i] = false;
        pthread_mutex_unlock(&md->lock);
    }
    pthread_mutex_unlock(&md->control_lock);
    /* The process ended while asked (a reset of a device that crashed
     * before any wait could see it): start a new one. */
    if (status != PYMIC_OK && atomic_load(&md->ended))
        return respawn(md);
    if (status != PYMIC_OK) {
        if (!atomic_load(&device->lost))
            pymic_device_mark_lost(device, "device %d lost: %s", device->id, reply.text);
        return pymic_fail(PYMIC_ERR_DEVICE_LOST, "pymic_device_reset: %s", device->lost_why);
    }
    atomic_fetch_add(&device->generation, 1);
    pymic_log(1, "device %d: reset", device->id);
    return PYMIC_OK;
}

/* ----------------------------------------------------------------- fork */

static void mpi_prefork(pymic_device *device)
{
    mpi_device *md = state_of(device);
    pthread_mutex_lock(&md->control_lock);
    pthread_mutex_lock(&md->lock);
    pthread_mutex_lock(&md->blocks_lock); /* a leaf: never held with another */
    pthread_mutex_lock(&md->forget_lock); /* a leaf too */
}

static void mpi_postfork_parent(pymic_device *device)
{
    mpi_device *md = state_of(device);
    pthread_mutex_unlock(&md->forget_lock);
    pthread_mutex_unlock(&md->blocks_lock);
    pthread_mutex_unlock(&md->lock);
    pthread_mutex_unlock(&md->control_lock);
}

static void mpi_postfork_child(pymic_device *device)
{
    mpi_device *md = state_of(device);
    pthread_mutex_init(&md->lock, NULL);
    pthread_mutex_init(&md->control_lock, NULL);
    pthread_mutex_init(&md->blocks_lock, NULL);
    pthread_mutex_init(&md->forget_lock, NULL);
    pthread_rwlock_init(&md->streams_gate, NULL);
    /* MPI does not survive fork(): the device is the parent's. */
    md->gone = true;
    if (!atomic_load(&device->lost))
        pymic_device_mark_lost(device,
                               "device %d lost: its MPI device belongs to the parent of this "
                               "fork()ed process",
                               device->id);
}

const pymic_backend_ops pymic_mpi_backend = {
    .abi_version = PYMIC_BACKEND_ABI,
    .kind = "mpi",
    .host_addressable = false, /* device memory is in another process */
    .open = mpi_open,
    .block_get = mpidev_block_get,
    .block_put = mpidev_block_put,
    .memory_capacity = mpi_memory_capacity,
    .bounds_arm = mpi_bounds_arm,
    .start_worker = mpi_start_worker,
    .worker_exit = mpi_worker_exit,
    .copy = mpi_copy,
    .invoke = mpi_invoke,
    .poll = mpi_poll,
    .record = mpi_record,
    .wait_mark = mpi_wait_mark,
    .mark_forget = mpi_mark_forget,
    .caller_may_run = mpi_caller_may_run,
    .library_open = mpi_library_open,
    .kernel_find = mpi_kernel_find,
    .library_close = mpi_library_close,
    .reset = mpi_reset,
    .prefork = mpi_prefork,
    .postfork_parent = mpi_postfork_parent,
    .postfork_child = mpi_postfork_child,
};

/* The plugin's entry (the registry's contract, backend.h). */
__attribute__((visibility("default"))) const pymic_backend_ops *pymic_backend_mpi(unsigned abi)
{
    return abi == PYMIC_BACKEND_ABI ? &pymic_mpi_backend : NULL;
}
