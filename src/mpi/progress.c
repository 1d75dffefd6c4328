/*
 * progress.c -- polite waits for MPI (progress.h).
 */
#include "progress.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t mpidev_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Polling at full speed for the spin window catches a quick answer at
 * once; a yield after every POLLS_PER_CLOCK-th poll until YIELD_NS (after
 * every poll on a crowded core: mpidev_pace_on) lets a thread on the same
 * core run (the kernel, the other end of a local exchange); after that a
 * sleep between polls that grows with the wait: 1/PAUSE_SHARE of the time
 * waited so far, at least MIN_PAUSE_NS, at most MAX_PAUSE_NS.  So an
 * answer is noticed at most about 1/PAUSE_SHARE of its wait late, and a
 * long wait wakes a few dozen times on its way to a thousand times a
 * second, not ten thousand: each wake takes a core from whatever runs
 * there -- a kernel's OpenMP thread, the host's own computation, the other
 * end of an exchange -- and in a VM a wake cost that thread 20-50 us.  (With a
 * fixed 50 us pause until a second had passed, the device process's
 * idle control thread alone stalled B13's invoke + sync loop once every
 * ~120 us, for 20-50 us each, and a dgemm on the MPI device ran at 0.8x
 * the host device's speed.)  An idle device's threads wake a thousand
 * times a second; the first request after a pause waits up to a
 * millisecond longer.  A transfer yields rather than sleeps until nothing
 * has completed for IDLE_NS: its data moves only while both ends poll. */
#define DEFAULT_SPIN_NS 50000u
#define YIELD_NS 2000000u
#define PAUSE_SHARE 32u
#define MIN_PAUSE_NS 50000u
#define MAX_PAUSE_NS 1000000u
#define IDLE_NS 1000000000u
/* A yield that returns later than this gave the core to another thread
 * (one that returns at once, with nobody else to run, takes about half a
 * microsecond here): the core is crowded (see mpidev_pace_on). */
#define CROWDED_YIELD_NS 10000u
/* While spinning the clock is read once per this many polls (a clock read
 * costs about as much as a poll of an idle MPI). */
#define POLLS_PER_CLOCK 64u

/* How often a long wait looks at its peer. */
#define WATCH_NS 20000000u

static _Atomic uint64_t spin_ns = DEFAULT_SPIN_NS;
/* Sleeps between polls so far, of every wait of this process (a test's
 * measure of how often a long wait wakes). */
static _Atomic uint64_t pauses;

__attribute__((visibility("default"))) uint64_t pymic_mpi_wait_pauses(void)
{
    return atomic_load_explicit(&pauses, memory_order_relaxed);
}

/* Polls this thread's waits followed at once with the next, spinning (a
 * test's witness of which waits spin; per thread, so that no two polling
 * threads share the count's cache line). */
static _Thread_local uint64_t spins_here;

__attribute__((visibility("default"))) uint64_t pymic_mpi_wait_spins_on_this_thread(void)
{
    return spins_here;
}

/* Yields between polls so far, of every wait of this process (a test's
 * measure of which waits yield). */
static _Atomic uint64_t yields;

__attribute__((visibility("default"))) uint64_t pymic_mpi_wait_yields(void)
{
    return atomic_load_explicit(&yields, memory_order_relaxed);
}

/* Whether this thread's last yield gave its core to another thread for
 * long (see mpidev_pace_on). */
static _Thread_local bool crowded;

static void yield_the_core(void)
{
    sched_yield();
}

/* How a wait yields its core: sched_yield, or a test's stand-in. */
static void (*yield_core)(void) = yield_the_core;

void mpidev_set_yield(void (*yield)(void))
{
    yield_core = yield ? yield : yield_the_core;
}

static _Atomic int kernels_running;
/* Transfers running in this process; also the futex word the waits asleep
 * beside them sleep on, and how many do. */
static _Atomic int transfers_running;
static _Atomic int asleep_beside_transfers;
/* The longest such a sleep lasts before the wait polls again. */
static _Atomic uint64_t beside_transfers_ns = MAX_PAUSE_NS;

void mpidev_set_sleep_beside_transfers_ns(uint64_t ns)
{
    atomic_store_explicit(&beside_transfers_ns, ns ? ns : MAX_PAUSE_NS, memory_order_relaxed);
}

void mpidev_set_spin_ns(uint64_t ns)
{
    atomic_store_explicit(&spin_ns, ns, memory_order_relaxed);
}

void mpidev_kernel_begins(void)
{
    atomic_fetch_add_explicit(&kernels_running, 1, memory_order_relaxed);
}

void mpidev_kernel_ends(void)
{
    atomic_fetch_sub_explicit(&kernels_running, 1, memory_order_relaxed);
}

void mpidev_transfer_begins(void)
{
    atomic_fetch_add_explicit(&transfers_running, 1, memory_order_relaxed);
}

void mpidev_transfer_ends(void)
{
    /* The last transfer wakes the waits asleep beside it.  With
     * sleep_beside_transfers (all seq_cst): either this sees the sleeper
     * counted, or the sleeper sees the count fall before it sleeps. */
    if (atomic_fetch_sub_explicit(&transfers_running, 1, memory_order_seq_cst) == 1 &&
        atomic_load_explicit(&asleep_beside_transfers, memory_order_seq_cst) > 0)
        syscall(SYS_futex, (int *)&transfers_running, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
                0);
}

/* Sleep until no transfer runs in this process, at most `ns` (a wait
 * beside one: mpidev_pace_on).  Not a fixed pause: a wait that woke while
 * the transfer moved would poll MPI -- whose progress the transfer's
 * thread needs -- and the wake took a core from it; one that slept past
 * the transfer's end would serve its next request late. */
static void sleep_beside_transfers(uint64_t ns)
{
    atomic_fetch_add_explicit(&asleep_beside_transfers, 1, memory_order_seq_cst);
    int running = atomic_load_explicit(&transfers_running, memory_order_seq_cst);
    if (running > 0) {
        struct timespec limit = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
        /* (EAGAIN: the count changed first; EINTR, ETIMEDOUT: the caller
         * polls and paces again either way.) */
        syscall(SYS_futex, (int *)&transfers_running, FUTEX_WAIT_PRIVATE, running, &limit, NULL,
                0);
    }
    atomic_fetch_sub_explicit(&asleep_beside_transfers, 1, memory_order_relaxed);
}

static bool peer_gone(const mpidev_peer *peer)
{
    return peer && peer->pid > 0 && kill(peer->pid, 0) != 0 && errno == ESRCH;
}

mpidev_pace mpidev_pace_of(bool transfer)
{
    if (transfer)
        return (mpidev_pace){.spin = atomic_load_explicit(&spin_ns, memory_order_relaxed),
                      .yield = IDLE_NS, .transfer = true};
    return (mpidev_pace){.spin = atomic_load_explicit(&spin_ns, memory_order_relaxed),
                  .yield = YIELD_NS};
}

/* After a poll that found nothing done: poll again at once, yield or
 * sleep.  False when the watched peer has ended. */
bool mpidev_pace_on(mpidev_pace *p, const mpidev_peer *peer)
{
    /* Work that needs this process's cores runs: a kernel, or (for any
     * wait but a transfer's, looked at only off the spinning path) a
     * transfer (progress.h). */
    bool kernel = atomic_load_explicit(&kernels_running, memory_order_relaxed) > 0;
    if (!kernel && !p->pausing && !crowded && ++p->polls % POLLS_PER_CLOCK) {
        spins_here++;
        return true;
    }
    bool transfer = !p->transfer &&
                    atomic_load_explicit(&transfers_running, memory_order_relaxed) > 0;
    uint64_t t = mpidev_now_ns();
    if (!p->start)
        p->start = t;
    uint64_t waited = t - p->start;
    /* Once the wait sleeps, each poll is followed by its sleep.  Polling
     * on at full speed after each sleep, until the next clock read, made
     * an idle wait cost a good part of a core: the control thread of a
     * device process, idle while a stream's thread moved 1 MiB copies
     * over TCP, had 7-9% of both cores' perf samples (each of its polls
     * runs MPI's progress, which reads the sockets the transfer's
     * fragments come on); 5% with this (6000 h2d + d2h pairs, perf
     * record of the whole job).  (While it yields, the clock is
     * still read once per POLLS_PER_CLOCK polls: a transfer yields for
     * long, and a yield with nothing else to run is cheap.) */
    p->pausing = kernel || waited >= p->yield || (transfer && waited >= p->spin);
    if (p->pausing && transfer) {
        /* Beside a transfer: asleep until it ends.  (Waking every 50 µs
         * early in its wait, as the pauses below do, the device's control
         * thread made the 1 MiB d2h copies after an allocation 12-26%
         * slower than plain MPI's over shared memory in half or more of
         * B13's runs; docs/mpi.md, "Waiting".) */
        atomic_fetch_add_explicit(&pauses, 1, memory_order_relaxed);
        sleep_beside_transfers(atomic_load_explicit(&beside_transfers_ns, memory_order_relaxed));
    } else if (p->pausing) {
        uint64_t ns = waited / PAUSE_SHARE;
        ns = ns < MIN_PAUSE_NS ? MIN_PAUSE_NS : ns > MAX_PAUSE_NS ? MAX_PAUSE_NS : ns;
        struct timespec pause = {0, (long)ns};
        atomic_fetch_add_explicit(&pauses, 1, memory_order_relaxed);
        nanosleep(&pause, NULL);
    } else if (crowded || waited >= p->spin) {
        /* A yield that gave the core away for long: another thread was
         * runnable on this core -- often the other end of the exchange
         * this waits for, both of this node.  Spinning then only keeps
         * that thread from the core, a whole spin window (50 µs) per
         * message: so until a yield of this thread returns at once again,
         * its waits yield after every poll, from their first.  A short
         * sleep after such a yield, meant to let the kernel place the
         * thread on the idle core when it woke, failed: both ends slept at
         * once, the core went idle, and both woke on it again (7 of 16
         * runs of a loop of small copies had copies at 190-350 µs instead
         * of 2-12; none of 8 with this rule; docs/mpi.md, "Waiting"). */
        atomic_fetch_add_explicit(&yields, 1, memory_order_relaxed);
        yield_core();
        crowded = mpidev_now_ns() - t >= CROWDED_YIELD_NS;
    }
    if (waited >= YIELD_NS && t - p->watched >= WATCH_NS) {
        p->watched = t;
        if (peer_gone(peer))
            return false;
    }
    return true;
}

void mpidev_abandon(MPI_Request *request)
{
    if (*request != MPI_REQUEST_NULL && MPI_Cancel(request) == MPI_SUCCESS)
        MPI_Request_free(request);
    *request = MPI_REQUEST_NULL;
}

static int wait_for(MPI_Request *request, MPI_Status *status, const mpidev_peer *peer)
{
    mpidev_pace p = mpidev_pace_of(false);
    for (;;) {
        int done = 0;
        int rc = MPI_Test(request, &done, status);
        if (rc != MPI_SUCCESS || done)
            return rc;
        if (!mpidev_pace_on(&p, peer)) {
            /* Nothing will complete it: let MPI forget it. */
            mpidev_abandon(request);
            return MPIDEV_ERR_PEER_GONE;
        }
    }
}

/* A wait for `peer` is counted while it runs (mpidev_peer.waits). */
static void count_wait(const mpidev_peer *peer, int change)
{
    if (peer)
        atomic_fetch_add_explicit(&((mpidev_peer *)peer)->waits, change,
                                  change > 0 ? memory_order_relaxed : memory_order_release);
}

int mpidev_wait(MPI_Request *request, MPI_Status *status, const mpidev_peer *peer)
{
    count_wait(peer, 1);
    int rc = wait_for(request, status, peer);
    count_wait(peer, -1);
    return rc;
}

static int post(mpidev_flow *f);

int mpidev_flow_start(mpidev_flow *f, int sending, void *base, uint64_t nbytes, uint64_t chunk,
                      int window, int rank, int tag, MPI_Comm comm)
{
    *f = (mpidev_flow){.sending = sending, .base = base, .nbytes = nbytes, .chunk = chunk,
                       .window = window, .rank = rank, .tag = tag, .comm = comm};
    for (int i = 0; i < MPIDEV_FLOW_MOST; i++)
        f->requests[i] = MPI_REQUEST_NULL;
    if (window < 1 || window > MPIDEV_FLOW_MOST || chunk == 0 || chunk > INT32_MAX) {
        f->window = 0; /* nothing to abandon */
        return MPI_ERR_ARG;
    }
    return post(f);
}

/* Post the next chunks into the free places of the window. */
static int post(mpidev_flow *f)
{
    int rc = MPI_SUCCESS;
    for (int i = 0; i < f->window && f->posted < f->nbytes && rc == MPI_SUCCESS; i++) {
        if (f->requests[i] != MPI_REQUEST_NULL)
            continue;
        int n = (int)(f->nbytes - f->posted < f->chunk ? f->nbytes - f->posted : f->chunk);
        char *at = (char *)f->base + f->posted;
        rc = f->sending ? MPI_Isend(at, n, MPI_BYTE, f->rank, f->tag, f->comm, &f->requests[i])
                        : MPI_Irecv(at, n, MPI_BYTE, f->rank, f->tag, f->comm, &f->requests[i]);
        f->posted += (uint64_t)n;
    }
    if (rc != MPI_SUCCESS)
        mpidev_flow_abandon(f);
    return rc;
}

void mpidev_flow_abandon(mpidev_flow *f)
{
    for (int i = 0; i < f->window; i++)
        mpidev_abandon(&f->requests[i]);
    f->posted = f->nbytes;
}

static int finish(mpidev_flow *f, MPI_Request *answer, const mpidev_peer *peer)
{
    int indices[MPIDEV_FLOW_MOST];
    mpidev_pace p = mpidev_pace_of(true);
    for (;;) {
        int completed = 0, answered = 0;
        int rc = MPI_Testsome(f->window, f->requests, &completed, indices, MPI_STATUSES_IGNORE);
        if (rc == MPI_SUCCESS && answer && *answer != MPI_REQUEST_NULL)
            rc = MPI_Test(answer, &answered, MPI_STATUS_IGNORE);
        if (rc == MPI_SUCCESS && completed > 0)
            rc = post(f);
        if (rc != MPI_SUCCESS) {
            mpidev_flow_abandon(f);
            return rc;
        }
        /* (MPI_UNDEFINED: nothing in flight, every chunk has moved.) */
        bool done = completed == MPI_UNDEFINED;
        bool answer_in = !answer || *answer == MPI_REQUEST_NULL;
        if (done && answer_in)
            return MPI_SUCCESS;
        if (answered && !done)
            return MPIDEV_FLOW_ANSWERED;
        if (completed > 0 || answered) {
            p.start = 0; /* it moves: the yield window starts again */
            continue;
        }
        if (!mpidev_pace_on(&p, peer)) {
            mpidev_flow_abandon(f);
            return MPIDEV_ERR_PEER_GONE;
        }
    }
}

int mpidev_flow_finish(mpidev_flow *f, MPI_Request *answer, const mpidev_peer *peer)
{
    count_wait(peer, 1);
    int rc = finish(f, answer, peer);
    count_wait(peer, -1);
    return rc;
}

int mpidev_transfer(int sending, void *base, uint64_t nbytes, uint64_t chunk, int window,
                    int rank, int tag, MPI_Comm comm, const mpidev_peer *peer)
{
    mpidev_flow f;
    int rc = mpidev_flow_start(&f, sending, base, nbytes, chunk, window, rank, tag, comm);
    return rc == MPI_SUCCESS ? mpidev_flow_finish(&f, NULL, peer) : rc;
}

int mpidev_recv(void *buffer, int count, int source, int tag, MPI_Comm comm, MPI_Status *status,
                const mpidev_peer *peer)
{
    MPI_Request request;
    int rc = MPI_Irecv(buffer, count, MPI_BYTE, source, tag, comm, &request);
    return rc == MPI_SUCCESS ? mpidev_wait(&request, status, peer) : rc;
}

int mpidev_send(const void *buffer, int count, int dest, int tag, MPI_Comm comm,
                const mpidev_peer *peer)
{
    /* A small message goes eagerly (Open MPI copies it out at once, into
     * shared memory or the socket, whether or not the receiver is there):
     * MPI_Send returns without a wait, and without the extra progress
     * round a request's test costs. */
    if (count <= MPIDEV_EAGER_BYTES)
        return MPI_Send(buffer, count, MPI_BYTE, dest, tag, comm);
    MPI_Request request;
    int rc = MPI_Isend(buffer, count, MPI_BYTE, dest, tag, comm, &request);
    return rc == MPI_SUCCESS ? mpidev_wait(&request, MPI_STATUS_IGNORE, peer) : rc;
}
