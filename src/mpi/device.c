/*
 * device.c -- the device side of an MPI device: pymic-device, started by
 * an MPI launcher (or spawned by a host), calls pymic_mpi_device_main
 * (proc/device_main.c dlopens this plugin for it).
 *
 * The device is the engine itself: the requests of the host (protocol.h)
 * are carried out through include/pymic.h on a LOCAL device of this
 * process -- kind host by default, or proc with PYMIC_MPI_DEVICE=proc
 * (not PYMIC_DEVICES, which under MPMD the device ranks inherit from the
 * hosts' command line) -- so every local feature works remotely: a kernel
 * that faults on a local proc device is the command's failure, bounds
 * checks are the local engine's, and so on.
 *
 * Threads: the main thread waits for the host's control requests (the
 * control tag) and serves them in order; each stream slot has a thread
 * with a local stream of its own that waits for that stream's requests
 * (its tag) and carries each out to its end and answers, with no hand-off
 * between threads (serve_slot).  Waits poll, then yield, then sleep
 * (progress.c), so an idle device costs little and a busy one leaves its
 * cores to the kernels.  The host waits for each answer of a stream
 * before it sends that stream's next request, so the requests of one
 * stream run in order, and two streams run side by side as on the host.
 * An event wait between two streams of this device is resolved here
 * (points.c): the waiting slot's thread waits until the recording slot's
 * thread has passed the record.
 */
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "../engine/engine.h"
#include "launch.h"
#include "points.h"
#include "progress.h"
#include "protocol.h"
#include "pymic.h"

#define LOCAL_DEVICE 0

static MPI_Comm host_comm = MPI_COMM_NULL;
static int host_rank;
static pymic_stream *control_stream; /* frees */

/* Whether a slot's thread calls an invoke's kernel itself (set at HELLO,
 * read by the slot threads it starts later): when the local device is a
 * host device whose CPUs hold every CPU this process may run on, with no
 * bounds checks.  Its engine would then run the kernel on this very
 * thread anyway (caller runs), with nothing else to do for it: the
 * stream's order is the slot's (each request is carried out to its end
 * before the next), a kernel on a host device cannot fail, and the host
 * checked the kernel and its arguments.  Calling it directly saves the
 * engine's enqueue, claim and completion, and its two clock reads, on
 * every invoke.  Otherwise (a proc device, PYMIC_CHECK=bounds, a host
 * device on part of the cores) the local engine carries it out. */
static bool direct_invoke;
static int local_ncpus;

typedef struct slot {
    pthread_t thread;
    pymic_stream *stream;
    int index;
    bool running;
    /* Whether the stream has ended (guarded by `lock`). */
    pthread_mutex_t lock;
    bool stopped;
    /* The request being served (the slot's thread only). */
    _Alignas(16) unsigned char message[MPIDEV_STREAM_MAX];
    /* The answer of a d2h with its bytes inline. */
    _Alignas(16) unsigned char out[MPIDEV_REPLY_HEAD + MPIDEV_INLINE_BYTES];
    /* A direct invoke's scalars, at the 16-byte boundaries any scalar
     * type needs (in the message they follow the arguments, 8 bytes off). */
    _Alignas(16) unsigned char scalars[PYMIC_MAX_SCALAR_BYTES];
} slot;

/* True once the slot's thread has ended its stream (STOP). */
static bool slot_stopped(slot *s)
{
    pthread_mutex_lock(&s->lock);
    bool stopped = s->stopped;
    pthread_mutex_unlock(&s->lock);
    return stopped;
}

static slot slots[MPIDEV_MAX_STREAMS];

/* ---------------------------------------------------------------- answers */

static uint64_t clock_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The stream request this thread serves, when the host asked for its
 * span (MPIDEV_SPAN, a traced command): when it came.  Only a slot's
 * thread sets it, so control answers never carry a span. */
static _Thread_local struct {
    bool asked;
    uint64_t start;
} span;

/* Whether the stream request this thread serves failed (its answer said
 * so): the requests of its epoch that follow are skipped (MPIDEV_SKIPPED). */
static _Thread_local bool served_failed;

static void answer(int tag, int status, uint64_t value, const char *text)
{
    mpidev_reply reply; /* the head is sent; the text only with a reason */
    reply.status = status;
    reply.pad = 0;
    reply.value = value;
    size_t bytes = MPIDEV_REPLY_SHORT;
    if (span.asked) {
        reply.span_start = span.start;
        reply.span_end = clock_ns();
        bytes = MPIDEV_REPLY_HEAD;
    }
    if (status < 0)
        served_failed = true;
    if (status != PYMIC_OK && text) {
        snprintf(reply.text, sizeof reply.text, "%s", text);
        bytes = MPIDEV_REPLY_HEAD + strlen(reply.text) + 1;
    }
    mpidev_send(&reply, (int)bytes, host_rank, tag, host_comm, NULL);
}

/* The local engine's reason for the failure it just returned. */
static void answer_failure(int tag, int status)
{
    answer(tag, status, 0, pymic_last_error());
}

/* ------------------------------------------------------------ stream slots */

/* True when [address, address + nbytes) lies in one live allocation of
 * the local device (the host checked it against its own table: this only
 * keeps a confused host from writing anywhere). */
static bool inside_allocation(uint64_t address, uint64_t nbytes)
{
    void *base;
    size_t size;
    if (pymic_mem_query(LOCAL_DEVICE, (void *)(uintptr_t)address, &base, &size) != PYMIC_OK)
        return false;
    return address - (uintptr_t)base + nbytes <= size;
}

/* The data of an h2d that is not stored: received all the same (it is on
 * its way), one chunk at a time into scratch; without scratch memory a
 * zero-byte receive's truncation error drops it: still received, never
 * stored. */
static void drain(int data_tag, const mpidev_request *rq)
{
    char *scratch = malloc(rq->c < rq->b ? rq->c : rq->b);
    for (uint64_t done = 0; done < rq->b;) {
        uint64_t n = rq->b - done < rq->c ? rq->b - done : rq->c;
        mpidev_recv(scratch, scratch ? (int)n : 0, host_rank, data_tag, host_comm,
                    MPI_STATUS_IGNORE, NULL);
        done += n;
    }
    free(scratch);
}

/* A copy's data moving in chunks (mpidev_transfer), counted as a transfer
 * running in this process: meanwhile its other waits sleep rather than
 * yield (progress.h). */
static int transfer(int sending, const mpidev_request *rq, int data_tag)
{
    mpidev_transfer_begins();
    int rc = mpidev_transfer(sending, (void *)(uintptr_t)rq->a, rq->b, rq->c, MPIDEV_WINDOW,
                             host_rank, data_tag, host_comm, NULL);
    mpidev_transfer_ends();
    return rc;
}

/* The data of a copy: inline in the request (`inline_bytes` of them right
 * after its head), or chunks on the slot's data tag, several in flight. */
static void h2d(int tag, int data_tag, const mpidev_request *rq, const unsigned char *message,
                int message_bytes)
{
    if (rq->b <= MPIDEV_INLINE_BYTES) {
        if (message_bytes != (int)(MPIDEV_REQUEST_HEAD + rq->b))
            answer(tag, PYMIC_ERR_INVALID_ARGUMENT, 0, "an h2d request without its bytes");
        else if (!inside_allocation(rq->a, rq->b))
            answer(tag, PYMIC_ERR_OUT_OF_RANGE, 0,
                   "the destination is not inside one allocation of the device");
        else {
            memcpy((void *)(uintptr_t)rq->a, message + MPIDEV_REQUEST_HEAD, rq->b);
            answer(tag, PYMIC_OK, 0, NULL);
        }
        return;
    }
    if (inside_allocation(rq->a, rq->b)) {
        int rc = transfer(0, rq, data_tag);
        if (rc == MPI_SUCCESS)
            answer(tag, PYMIC_OK, 0, NULL);
        else
            answer(tag, PYMIC_ERR_SYSTEM, 0, "receiving the data failed");
        return;
    }
    drain(data_tag, rq);
    answer(tag, PYMIC_ERR_OUT_OF_RANGE, 0,
           "the destination is not inside one allocation of the device");
}

/* The data, inline in the answer or as chunks on the slot's data tag
 * followed by the answer (the host posts the receives of the chunks
 * before it asks, the answer's as it asks: protocol.h); a traced d2h
 * (span.asked) has its span in that answer.  A d2h that fails sends no
 * data, only its answer. */
static void d2h(int tag, int data_tag, slot *s, const mpidev_request *rq)
{
    if (!inside_allocation(rq->a, rq->b)) {
        answer(tag, PYMIC_ERR_OUT_OF_RANGE, 0,
               "the source is not inside one allocation of the device");
        return;
    }
    if (rq->b <= MPIDEV_INLINE_BYTES) {
        mpidev_reply head = {.status = PYMIC_OK};
        memcpy(s->out + MPIDEV_REPLY_HEAD, (const void *)(uintptr_t)rq->a, rq->b);
        if (span.asked) {
            head.span_start = span.start;
            head.span_end = clock_ns();
        }
        memcpy(s->out, &head, MPIDEV_REPLY_HEAD);
        mpidev_send(s->out, (int)(MPIDEV_REPLY_HEAD + rq->b), host_rank, tag, host_comm, NULL);
        return;
    }
    int rc = transfer(1, rq, data_tag);
    if (rc == MPI_SUCCESS) /* (else the host is gone) */
        answer(tag, PYMIC_OK, 0, NULL);
}

static void d2d(int tag, slot *s, const mpidev_request *rq)
{
    int status = pymic_memcpy_d2d(s->stream, (void *)(uintptr_t)rq->a, 0,
                                  (void *)(uintptr_t)rq->b, 0, rq->c);
    if (status == PYMIC_OK)
        status = pymic_stream_sync(s->stream);
    if (status != PYMIC_OK)
        answer_failure(tag, status);
    else
        answer(tag, PYMIC_OK, 0, NULL);
}

/* An invoke's message read: false if it is not one a host sends (this
 * keeps a confused host from making the device read past the message). */
static bool invoke_is_whole(const mpidev_invoke_head *head, int bytes)
{
    if (head->nargs < 0 || head->nargs > PYMIC_MAX_KERNEL_ARGS ||
        head->scalar_bytes > PYMIC_MAX_SCALAR_BYTES)
        return false;
    return (size_t)bytes == sizeof *head + (size_t)head->nargs * sizeof(mpidev_arg) +
                                head->scalar_bytes;
}

static void invoke(int tag, slot *s, const unsigned char *message, int bytes)
{
    mpidev_invoke_head head;
    memcpy(&head, message, sizeof head);
    if (!invoke_is_whole(&head, bytes)) {
        answer(tag, PYMIC_ERR_INVALID_ARGUMENT, 0, "a malformed invoke request");
        return;
    }
    const unsigned char *at = message + sizeof head;
    const unsigned char *scalars = at + (size_t)head.nargs * sizeof(mpidev_arg);
    pymic_arg args[PYMIC_MAX_KERNEL_ARGS];
    void *direct[PYMIC_MAX_KERNEL_ARGS];
    /* A direct call reads the scalars from their aligned copy. */
    if (direct_invoke)
        memcpy(s->scalars, scalars, head.scalar_bytes);
    const unsigned char *scalar_base = direct_invoke ? s->scalars : scalars;
    for (int i = 0; i < head.nargs; i++) {
        mpidev_arg arg;
        memcpy(&arg, at + (size_t)i * sizeof arg, sizeof arg);
        if (arg.scalar_size && (uint64_t)arg.scalar_offset + arg.scalar_size > head.scalar_bytes) {
            answer(tag, PYMIC_ERR_INVALID_ARGUMENT, 0, "a malformed invoke request");
            return;
        }
        direct[i] = arg.scalar_size ? (void *)(uintptr_t)(scalar_base + arg.scalar_offset)
                                    : (void *)(uintptr_t)arg.value;
        args[i] = (pymic_arg){direct[i], arg.scalar_size};
    }
    const pymic_kernel *kernel = (const pymic_kernel *)(uintptr_t)head.kernel;
    int status = PYMIC_OK;
    /* While it runs, this process's other waits leave the cores to it. */
    mpidev_kernel_begins();
    if (direct_invoke) {
        pymic_kernel_call((pymic_kernel_fn)(uintptr_t)pymic_kernel_address(kernel), head.nargs,
                          direct);
    } else {
        status = pymic_invoke(s->stream, kernel, head.nargs, args);
        if (status == PYMIC_OK)
            status = pymic_stream_sync(s->stream);
    }
    mpidev_kernel_ends();
    if (status != PYMIC_OK)
        answer_failure(tag, status);
    else
        answer(tag, PYMIC_OK, 0, NULL);
}

/* The points to forget that a RECORD or WAIT carries (protocol.h): as
 * many as the message holds, at most MPIDEV_FORGET_MAX. */
static uint64_t point_ids_in(const mpidev_request *rq, int bytes)
{
    uint64_t room = bytes > (int)MPIDEV_REQUEST_HEAD
                        ? (uint64_t)(bytes - (int)MPIDEV_REQUEST_HEAD) / sizeof(uint64_t)
                        : 0;
    uint64_t n = rq->c < room ? rq->c : room;
    return n < MPIDEV_FORGET_MAX ? n : MPIDEV_FORGET_MAX;
}

/* WAIT: this slot's stream goes on once the recording stream has reached
 * the point.  A point marked failed fails the wait (the slot then skips
 * the rest of the epoch, as after a failure of its own). */
static void wait_for_point(int tag, uint64_t id, uint64_t generation)
{
    switch (points_wait(id, generation)) {
    case POINT_REACHED:
        answer(tag, PYMIC_OK, 0, NULL);
        break;
    case POINT_FAILED:
        served_failed = true;
        answer(tag, MPIDEV_WAIT_FAILED, 0, NULL);
        break;
    default:
        answer(tag, PYMIC_ERR_SYSTEM, 0,
               "the event wait was abandoned: the device was reset (or ended) while the "
               "stream waited");
        break;
    }
}

/* A stream's thread: it alone receives its stream's requests (the
 * stream's tag) and carries each out to its end and answers at once --
 * copies to and from the host, invokes and device-to-device copies on its
 * local stream (whose sync runs the kernel on this very thread where the
 * local device allows: caller runs), until STOP.  No other thread is woken
 * on the way: an invoke + sync is one receive, the kernel and one send.
 * MPI's non-overtaking rule keeps the requests of one stream in order
 * (the host may send invokes before the answers of those before them),
 * and two streams run side by side as on the host. */
static void *serve_slot(void *arg)
{
    slot *s = arg;
    int tag = MPIDEV_TAG_STREAM(s->index), data_tag = MPIDEV_TAG_DATA(s->index);
    const int size = (int)sizeof s->message;
    bool skipping = false; /* a request of epoch skip_epoch failed */
    uint32_t skip_epoch = 0;
    /* A kernel called directly opens its OpenMP team with the device's
     * core count, as the engine's caller runs it (host backend). */
    if (direct_invoke && omp_get_max_threads() != local_ncpus)
        omp_set_num_threads(local_ncpus);
    for (;;) {
        /* The receive of the next request is posted once this one is
         * answered, off the way from a request to its answer (in an
         * invoke + sync the host's next request comes later than that; one
         * that comes sooner waits in MPI as an unexpected message). */
        MPI_Request next;
        MPI_Status got;
        if (MPI_Irecv(s->message, size, MPI_BYTE, host_rank, tag, host_comm, &next) !=
                MPI_SUCCESS ||
            mpidev_wait(&next, &got, NULL) != MPI_SUCCESS)
            return NULL; /* MPI is gone: so is the host */
        unsigned char *message = s->message;
        int bytes = 0;
        MPI_Get_count(&got, MPI_BYTE, &bytes);
        uint32_t op = MPIDEV_OP_UNKNOWN; /* unless the message says */
        if (bytes >= (int)sizeof op)
            memcpy(&op, message, sizeof op);
        span.asked = (op & MPIDEV_SPAN) != 0;
        op &= ~MPIDEV_SPAN;
        if (span.asked)
            span.start = clock_ns();
        /* A stream request is its head (an invoke is read by invoke()). */
        mpidev_request rq;
        memset(&rq, 0, MPIDEV_REQUEST_HEAD);
        if (op != MPIDEV_INVOKE)
            memcpy(&rq, message, (size_t)bytes < MPIDEV_REQUEST_HEAD ? (size_t)bytes
                                                                    : MPIDEV_REQUEST_HEAD);
        if ((op == MPIDEV_H2D || op == MPIDEV_D2H) && (rq.c == 0 || rq.c > INT32_MAX)) {
            answer(tag, PYMIC_ERR_INVALID_ARGUMENT, 0, "bad chunk size");
            continue;
        }
        /* A request sent before the host saw a failure before it: skipped. */
        bool command = op == MPIDEV_H2D || op == MPIDEV_D2H || op == MPIDEV_D2D ||
                       op == MPIDEV_INVOKE;
        uint32_t epoch = rq.epoch;
        if (op == MPIDEV_INVOKE && bytes >= (int)sizeof(mpidev_invoke_head)) {
            mpidev_invoke_head head;
            memcpy(&head, message, sizeof head);
            epoch = head.epoch;
        }
        bool skipped = skipping && epoch == skip_epoch;
        /* An event record is always served: its point is marked (failed
         * if the stream failed in this epoch), so no wait hangs on it. */
        if (op == MPIDEV_RECORD || op == MPIDEV_WAIT) {
            uint64_t forget[MPIDEV_FORGET_MAX], n = point_ids_in(&rq, bytes);
            memcpy(forget, message + MPIDEV_REQUEST_HEAD, n * sizeof forget[0]);
            points_forget(forget, n);
        }
        if (op == MPIDEV_RECORD) {
            /* The answer carries when the point was reached, by this
             * process's clock: the host times events by it (the host's
             * own clock says when it took the answer, which may be late). */
            uint64_t reached = clock_ns();
            points_mark(rq.a, skipped || (rq.b & MPIDEV_RECORD_FAILED));
            if (!(rq.b & MPIDEV_RECORD_NO_ANSWER))
                answer(tag, PYMIC_OK, reached, NULL);
            continue;
        }
        if (op == MPIDEV_WAIT && !skipped) {
            served_failed = false;
            wait_for_point(tag, rq.a, rq.b);
            if (served_failed) {
                skipping = true;
                skip_epoch = epoch;
            }
            continue;
        }
        if ((command || op == MPIDEV_WAIT) && skipped) {
            if (op == MPIDEV_H2D && rq.b > MPIDEV_INLINE_BYTES)
                drain(data_tag, &rq);
            answer(tag, MPIDEV_SKIPPED, 0, NULL);
            continue;
        }
        served_failed = false;
        switch (op) {
        case MPIDEV_H2D:
            h2d(tag, data_tag, &rq, message, bytes);
            break;
        case MPIDEV_D2H:
            d2h(tag, data_tag, s, &rq);
            break;
        case MPIDEV_INVOKE:
            invoke(tag, s, message, bytes);
            break;
        case MPIDEV_D2D:
            d2d(tag, s, &rq);
            break;
        case MPIDEV_STOP:
            pymic_stream_destroy(s->stream);
            pthread_mutex_lock(&s->lock);
            s->stopped = true;
            pthread_mutex_unlock(&s->lock);
            if (!rq.a)
                answer(tag, PYMIC_OK, 0, NULL);
            return NULL;
        default:
            answer(tag, PYMIC_ERR_INVALID_ARGUMENT, 0, "unknown stream request");
            break;
        }
        if (command && served_failed) {
            skipping = true;
            skip_epoch = epoch;
        }
    }
}

/* ---------------------------------------------------------------- control */

/* True when every CPU this thread may run on (the slot threads inherit
 * it) is one of the local device's: its engine would run an invoke on the
 * syncing thread (host backend, caller runs). */
static bool affinity_inside_device(void)
{
    cpu_set_t mine;
    int cpus[CPU_SETSIZE], count = 0;
    if (sched_getaffinity(0, sizeof mine, &mine) != 0 ||
        pymic_device_get_cpus(LOCAL_DEVICE, cpus, CPU_SETSIZE, &count) != PYMIC_OK ||
        count > CPU_SETSIZE)
        return false;
    for (int i = 0; i < count; i++)
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE)
            CPU_CLR(cpus[i], &mine);
    return CPU_COUNT(&mine) == 0;
}

static void hello(const mpidev_request *rq)
{
    char why[MPIDEV_TEXT_MAX];
    if (rq->a != MPIDEV_PROTOCOL) {
        snprintf(why, sizeof why, "the host speaks protocol %llu, this pymic-device %d: "
                 "use the same pymic on both sides", (unsigned long long)rq->a,
                 MPIDEV_PROTOCOL);
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_CONFIG, 0, why);
        return;
    }
    points_set_generation(rq->c);
    /* The local engine takes the host's settings, never PYMIC_DEVICES. */
    const char *kind = getenv("PYMIC_MPI_DEVICE");
    setenv("PYMIC_DEVICES", kind && *kind ? kind : "host", 1);
    /* The host enforces PYMIC_MEMORY_LIMIT for this device (it counts
     * every allocation before asking for it); the local device holds what
     * the host allows, with no second limit of its own.  And this process
     * writes no trace of its own (the host's settings, not the
     * environment it inherited, say what the device does). */
    unsetenv("PYMIC_MEMORY_LIMIT");
    unsetenv("PYMIC_TRACE");
    if (rq->b & MPIDEV_FLAG_CHECK_BOUNDS)
        setenv("PYMIC_CHECK", "bounds", 1);
    else
        unsetenv("PYMIC_CHECK");
    int count = 0, status = pymic_init();
    if (status == PYMIC_OK)
        status = pymic_device_count(&count);
    uint64_t spin;
    /* The engine's spin window (PYMIC_SPIN_NS) is the MPI waits' too. */
    if (status == PYMIC_OK && pymic_get_spin_ns(&spin) == PYMIC_OK)
        mpidev_set_spin_ns(spin);
    if (status == PYMIC_OK && count != 1) {
        snprintf(why, sizeof why, "PYMIC_MPI_DEVICE=%s gives %d devices; an MPI device drives "
                 "exactly one", getenv("PYMIC_DEVICES"), count);
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_CONFIG, 0, why);
        return;
    }
    if (status == PYMIC_OK)
        status = pymic_stream_create(LOCAL_DEVICE, &control_stream);
    pymic_device_info info;
    if (status == PYMIC_OK)
        status = pymic_device_get_info(LOCAL_DEVICE, &info);
    if (status != PYMIC_OK) {
        answer_failure(MPIDEV_TAG_REPLY, status);
        return;
    }
    direct_invoke = !(rq->b & MPIDEV_FLAG_CHECK_BOUNDS) && strcmp(info.kind, "host") == 0 &&
                    affinity_inside_device();
    local_ncpus = info.ncores;
    mpidev_reply reply = {.status = PYMIC_OK, .value = info.memory_total,
                          .pad = (uint32_t)getpid()};
    char node[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(node, &len);
    snprintf(reply.text, sizeof reply.text, "%s\n%s", info.name, node);
    mpidev_send(&reply, (int)(MPIDEV_REPLY_HEAD + strlen(reply.text) + 1), host_rank,
                MPIDEV_TAG_REPLY, host_comm, NULL);
}

/* A library by its absolute path, if the file open there is the one the
 * host opened (same inode and size: a shared file system); else the host
 * is asked for its bytes (MPIDEV_NOT_SAME). */
static void load(const mpidev_request *rq)
{
    struct stat st;
    int fd = open(rq->text, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || (uint64_t)st.st_ino != rq->a ||
        (uint64_t)st.st_size != rq->b) {
        if (fd >= 0)
            close(fd);
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_LIBRARY, MPIDEV_NOT_SAME,
               "the device does not see the host's file at this path");
        return;
    }
    pymic_library *library;
    int status = pymic_library_load_opened(LOCAL_DEVICE, fd, rq->text, &library);
    close(fd);
    if (status != PYMIC_OK)
        answer_failure(MPIDEV_TAG_REPLY, status);
    else
        answer(MPIDEV_TAG_REPLY, PYMIC_OK, (uintptr_t)library, NULL);
}

/* The library's bytes from the host, into a file of this process only
 * (a memfd), loaded from there: what the host opened, whatever the
 * device's node has at that path. */
static void load_bytes(const mpidev_request *rq)
{
    int fd = memfd_create("pymic-mpi-library", MFD_CLOEXEC);
    char *data = fd >= 0 && rq->a ? malloc(rq->a < MPIDEV_CHUNK ? rq->a : MPIDEV_CHUNK) : NULL;
    bool stored = fd >= 0 && (data || rq->a == 0);
    for (uint64_t done = 0; done < rq->a;) {
        uint64_t n = rq->a - done < MPIDEV_CHUNK ? rq->a - done : MPIDEV_CHUNK;
        /* Received even when it cannot be stored, to keep the order. */
        mpidev_recv(data, data ? (int)n : 0, host_rank, MPIDEV_TAG_CONTROL, host_comm,
                    MPI_STATUS_IGNORE, NULL);
        for (uint64_t put = 0; stored && put < n;) {
            ssize_t w = pwrite(fd, data + put, n - put, (off_t)(done + put));
            stored = w > 0;
            put += w > 0 ? (uint64_t)w : 0;
        }
        done += n;
    }
    free(data);
    if (!stored) {
        if (fd >= 0)
            close(fd);
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_LIBRARY, 0, "cannot keep a copy of the library");
        return;
    }
    pymic_library *library;
    int status = pymic_library_load_fd(LOCAL_DEVICE, fd, rq->text, &library);
    close(fd);
    if (status != PYMIC_OK)
        answer_failure(MPIDEV_TAG_REPLY, status);
    else
        answer(MPIDEV_TAG_REPLY, PYMIC_OK, (uintptr_t)library, NULL);
}

static void start(const mpidev_request *rq)
{
    if (rq->slot >= MPIDEV_MAX_STREAMS || slots[rq->slot].running) {
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_INVALID_ARGUMENT, 0, "stream slot in use");
        return;
    }
    slot *s = &slots[rq->slot];
    s->index = (int)rq->slot;
    int status = pymic_stream_create(LOCAL_DEVICE, &s->stream);
    if (status != PYMIC_OK) {
        answer_failure(MPIDEV_TAG_REPLY, status);
        return;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->stopped = false;
    int rc = pthread_create(&s->thread, NULL, serve_slot, s);
    if (rc != 0) {
        pymic_stream_destroy(s->stream);
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_SYSTEM, 0, strerror(rc));
        return;
    }
    s->running = true;
    answer(MPIDEV_TAG_REPLY, PYMIC_OK, 0, NULL);
}

/* Threads of slots whose STOP has come are joined when the slot is
 * started again or at the end. */
static void join_stopped(void)
{
    for (int i = 0; i < MPIDEV_MAX_STREAMS; i++) {
        if (slots[i].running) {
            pthread_join(slots[i].thread, NULL);
            slots[i].running = false;
        }
    }
}

/* ECHO (protocol.h): rq->a exchanges with the host on their own tag, each
 * rq->b bytes in and rq->c bytes back, MPI_Recv and MPI_Send here (the
 * host polls its waits, as all its waits do) -- the plain MPI exchange
 * between this process and the host, at the thread level the two run at
 * (the stream threads keep waiting as they do).  The buffer is kept for
 * the next request of the same sizes, as a copy's device memory is kept
 * for the next copy (a measure that takes turns between the two makes
 * one exchange per request), and is fresh (zeros) when they change: the
 * caller warms it up with a first exchange it does not count. */
static void echo(const mpidev_request *rq)
{
    static unsigned char *buffer;
    static uint64_t in_bytes, out_bytes;
    if (rq->b == 0 || rq->b > MPIDEV_ECHO_MOST || rq->c == 0 || rq->c > MPIDEV_ECHO_MOST) {
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_INVALID_ARGUMENT, 0, "bad echo sizes");
        return;
    }
    if (!buffer || rq->b != in_bytes || rq->c != out_bytes) {
        free(buffer);
        size_t bytes = rq->b > rq->c ? rq->b : rq->c;
        buffer = malloc(bytes);
        /* Written, not merely allocated: a copy's device memory is real,
         * written pages, and the exchange's should be too (pages never
         * written all map one shared page of zeros). */
        if (buffer)
            memset(buffer, 0, bytes);
        in_bytes = buffer ? rq->b : 0;
        out_bytes = buffer ? rq->c : 0;
    }
    if (!buffer) {
        answer(MPIDEV_TAG_REPLY, PYMIC_ERR_OUT_OF_MEMORY, 0,
               "no memory in the device process for the echo's buffer");
        return;
    }
    answer(MPIDEV_TAG_REPLY, PYMIC_OK, 0, NULL);
    /* Counted as a transfer, as a copy's data is: the stream threads'
     * waits meanwhile sleep rather than yield, as they do during copies. */
    mpidev_transfer_begins();
    for (uint64_t i = 0; i < rq->a; i++) {
        if (MPI_Recv(buffer, (int)rq->b, MPI_BYTE, host_rank, MPIDEV_TAG_ECHO, host_comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS ||
            MPI_Send(buffer, (int)rq->c, MPI_BYTE, host_rank, MPIDEV_TAG_ECHO, host_comm) !=
                MPI_SUCCESS)
            break; /* MPI is gone: so is the host */
    }
    mpidev_transfer_ends();
}

/* The main thread: every control request of the host, in the order it
 * comes (the streams' requests go to their own threads). */
static void serve(void)
{
    _Alignas(16) static unsigned char message[MPIDEV_STREAM_MAX];
    mpidev_request rq;
    for (;;) {
        MPI_Status got;
        int rc = mpidev_recv(message, (int)sizeof message, host_rank, MPIDEV_TAG_CONTROL,
                             host_comm, &got, NULL);
        if (rc != MPI_SUCCESS)
            return;
        memcpy(&rq, message, sizeof rq);
        int status = PYMIC_OK;
        uint64_t value = 0;
        switch (rq.op) {
        case MPIDEV_HELLO:
            hello(&rq);
            continue;
        case MPIDEV_ALLOC: {
            void *ptr = NULL;
            status = pymic_mem_alloc(LOCAL_DEVICE, rq.a, rq.b, &ptr);
            value = (uintptr_t)ptr;
            break;
        }
        case MPIDEV_FREE:
            status = pymic_mem_free(control_stream, (void *)(uintptr_t)rq.a);
            break;
        case MPIDEV_LOAD:
            load(&rq);
            continue;
        case MPIDEV_LOAD_BYTES:
            load_bytes(&rq);
            continue;
        case MPIDEV_FIND: {
            pymic_kernel *kernel = NULL;
            status = pymic_kernel_find((pymic_library *)(uintptr_t)rq.a, rq.text, &kernel);
            value = (uintptr_t)kernel;
            break;
        }
        case MPIDEV_UNLOAD:
            status = pymic_library_unload((pymic_library *)(uintptr_t)rq.a);
            break;
        case MPIDEV_START:
            /* A slot stopped earlier is started again: its old thread has
             * ended (it answered STOP), join it first. */
            if (rq.slot < MPIDEV_MAX_STREAMS && slots[rq.slot].running &&
                slot_stopped(&slots[rq.slot])) {
                pthread_join(slots[rq.slot].thread, NULL);
                pthread_mutex_destroy(&slots[rq.slot].lock);
                slots[rq.slot].running = false;
            }
            start(&rq);
            continue;
        case MPIDEV_RESET:
            status = pymic_device_reset(LOCAL_DEVICE);
            /* A stream that waits for an event of a stream the reset
             * stopped (or that the host gave up while the device was
             * lost) waits no more. */
            points_abandon(rq.a);
            break;
        case MPIDEV_CLOCK:
            value = clock_ns();
            break;
        case MPIDEV_ECHO:
            echo(&rq);
            continue;
        case MPIDEV_QUIT:
            answer(MPIDEV_TAG_REPLY, PYMIC_OK, 0, NULL);
            points_abandon(UINT64_MAX);
            join_stopped();
            return;
        default:
            answer(MPIDEV_TAG_REPLY, PYMIC_ERR_INVALID_ARGUMENT, 0, "unknown control request");
            continue;
        }
        if (status != PYMIC_OK)
            answer_failure(MPIDEV_TAG_REPLY, status);
        else
            answer(MPIDEV_TAG_REPLY, PYMIC_OK, value, NULL);
    }
}

__attribute__((visibility("default"))) int pymic_mpi_device_main(int argc, char **argv)
{
    int provided;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return 2;
    if (provided < MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "pymic-device: this MPI gives thread level %d; an MPI device needs "
                "MPI_THREAD_MULTIPLE\n", provided);
        MPI_Finalize();
        return 2;
    }
    MPI_Comm parent;
    MPI_Comm_get_parent(&parent);
    MPI_Comm side = MPI_COMM_NULL;
    if (parent != MPI_COMM_NULL) {
        host_comm = parent;
        host_rank = 0;
    } else {
        int peer, npeers;
        char why[256];
        if (mpidev_handshake(-1, &host_comm, &side, &peer, 1, &npeers, why, sizeof why) !=
            MPI_SUCCESS) {
            fprintf(stderr, "pymic-device: %s\n", why);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        if (npeers == 0) {
            /* More device ranks than the hosts asked for: nothing to do. */
            MPI_Comm_free(&side);
            MPI_Comm_free(&host_comm);
            MPI_Finalize();
            return 0;
        }
        host_rank = peer;
    }
    MPI_Comm_set_errhandler(host_comm, MPI_ERRORS_RETURN);
    serve();
    if (parent != MPI_COMM_NULL) {
        MPI_Comm_disconnect(&host_comm);
    } else {
        MPI_Comm_free(&side);
        MPI_Comm_free(&host_comm);
    }
    MPI_Finalize();
    return 0;
}
