/*
 * progress.h -- waiting for MPI without taking a core from the threads
 * beside us (progress.c).
 */
#ifndef PYMIC_MPI_PROGRESS_H
#define PYMIC_MPI_PROGRESS_H

#include <mpi.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* A peer process this side can watch: its pid, when it runs on this
 * node (0: it does not, or it is not known).  MPI itself does not say when
 * the other end of a wait is gone (Open MPI aborts the dead process's job,
 * not always this one), so a wait for a watched peer checks, once it has
 * waited a while, that the peer still runs. */
typedef struct mpidev_peer {
    int pid;
    /* Waits under way for this peer (mpidev_wait, mpidev_transfer): a
     * reset that replaces an ended peer waits for them to give up first,
     * so none watches the new process for a request to the old one. */
    _Atomic int waits;
} mpidev_peer;

/* MPIDEV_ERR_PEER_GONE: the watched peer ended while this waited (the
 * requests are abandoned). */
#define MPIDEV_ERR_PEER_GONE (-1)

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t mpidev_now_ns(void);

/* How long a wait polls at full speed before it starts yielding the core
 * (progress.c): the engine's PYMIC_SPIN_NS, read once by whoever
 * initialised the engine on this side (the host's open, the device's
 * HELLO); 50 µs until then. */
void mpidev_set_spin_ns(uint64_t ns);

/* A kernel runs in this process (the device side brackets each invoke):
 * while one does, waits do not spin or yield, they sleep between polls,
 * since the kernel's OpenMP team needs every core it was given (the
 * engine's rule, docs/design.md "Threads, cores, spinning and
 * sleeping"). */
void mpidev_kernel_begins(void);
void mpidev_kernel_ends(void);

/* A transfer runs in this process (the device side brackets each copy's
 * data and its ECHO exchanges, as it brackets kernels): while one does,
 * the other waits -- not other transfers -- sleep between polls after
 * their spin window instead of yielding, since the transfer's data moves
 * only while its thread polls, and a device rank is often bound to one
 * core (Open MPI binds two ranks to a core each), which a yielding
 * thread shares about evenly with it.  (Seen: a device process's control
 * thread, yielding for 2 ms after each control request, slowed the 1 MiB
 * copies that followed over shared memory from 8-9 GB/s to 2-3.)  The
 * host side does not: its threads are the application's, whose waits for
 * answers on other streams keep their latency. */
void mpidev_transfer_begins(void);
void mpidev_transfer_ends(void);

/* Such a sleep lasts until the last transfer of the process ends, at most
 * a millisecond: a wait that woke while the transfer moved would take MPI's
 * progress and a core from its thread, one that slept past its end would
 * serve its next request late.  For tests: that longest sleep (0: the
 * default). */
void mpidev_set_sleep_beside_transfers_ns(uint64_t ns);

/* Messages up to this size are sent with MPI_Send (below every eager
 * limit of Open MPI's transports: 4 KiB over shared memory, 64 KiB over
 * TCP): it returns at once, with no request to poll. */
#define MPIDEV_EAGER_BYTES 1024

/* For tests: what a wait calls to yield its core (NULL: sched_yield).  A
 * yield that returns CROWDED_YIELD_NS (10 µs) or more later found the
 * core crowded: the thread's waits then yield after every poll instead
 * of spinning, until a yield returns sooner (mpidev_pace_on).  Set before
 * the threads that wait start. */
void mpidev_set_yield(void (*yield)(void));

/* Wait for `request` (MPI_Wait's contract, `status` may be
 * MPI_STATUS_IGNORE).  A blocking MPI call polls at full speed for as long
 * as it waits (Open MPI has no blocking wait: MPI_Wait itself polls); the
 * threads of an MPI device share cores with kernels and with each other
 * (a rank is often bound to one core), so this polls for the spin window,
 * then yields the core now and then between polls (progress.c), then
 * sleeps between them once the wait has been long, and longer still once
 * it has been idle for a second: an idle device costs next to nothing. */
int mpidev_wait(MPI_Request *request, MPI_Status *status, const mpidev_peer *peer);

/* Send (`sending`) or receive `nbytes` at `base` as consecutive messages
 * of at most `chunk` bytes on `tag`, with up to `window` of them in flight
 * (at most MPIDEV_FLOW_MOST): the next chunk is under way while one
 * completes.  Data moves only while both ends poll (a large message goes
 * in fragments that each side pushes when it polls), so this does not
 * sleep while the transfer moves: after the spin window it yields the
 * core now and then between polls, and sleeps between them only once no
 * chunk has completed for a second (or, as every wait, while a kernel
 * runs in this process).  On an error the chunks in flight are abandoned. */
int mpidev_transfer(int sending, void *base, uint64_t nbytes, uint64_t chunk, int window,
                    int rank, int tag, MPI_Comm comm, const mpidev_peer *peer);

/* mpidev_transfer in two steps, so a receiver can have the first chunks'
 * receives posted before it asks for the data (a d2h: they are in place
 * when the first bytes come, as a blocking MPI_Recv's would be), and can
 * watch the answer that may say no data comes.  mpidev_flow_start posts
 * the first `window` chunks; mpidev_flow_finish moves the rest and waits
 * until every chunk has moved and, if `answer` is not NULL, the receive
 * *answer has completed too -- or returns MPIDEV_FLOW_ANSWERED as soon as
 * the answer came while data is still in flight: the caller reads it and
 * either finishes the flow (answer NULL) or abandons it.  On an error
 * (also mpidev_flow_start's) the flow's chunks are abandoned, the answer
 * is left to the caller. */
#define MPIDEV_FLOW_MOST 64
#define MPIDEV_FLOW_ANSWERED (-2)

typedef struct mpidev_flow {
    int sending;
    void *base;
    uint64_t nbytes, chunk, posted;
    int window, rank, tag;
    MPI_Comm comm;
    MPI_Request requests[MPIDEV_FLOW_MOST];
} mpidev_flow;

int mpidev_flow_start(mpidev_flow *f, int sending, void *base, uint64_t nbytes, uint64_t chunk,
                      int window, int rank, int tag, MPI_Comm comm);
int mpidev_flow_finish(mpidev_flow *f, MPI_Request *answer, const mpidev_peer *peer);
void mpidev_flow_abandon(mpidev_flow *f);

/* MPI_Recv / MPI_Send through mpidev_wait (`peer` may be NULL). */
int mpidev_recv(void *buffer, int count, int source, int tag, MPI_Comm comm,
                MPI_Status *status, const mpidev_peer *peer);
int mpidev_send(const void *buffer, int count, int dest, int tag, MPI_Comm comm,
                const mpidev_peer *peer);

/* The pace of one wait (mpidev_wait's, and the host's polls of commands
 * in flight): when it began (or last saw a transfer move), when it last
 * looked at its peer.  mpidev_pace_of starts one (a transfer yields
 * rather than sleeps for longer); mpidev_pace_on is called after each
 * poll that found nothing done: it polls again at once, yields or sleeps
 * as the wait's length says, and returns false when the watched peer has
 * ended.  Set `start` to 0 when the wait sees progress. */
typedef struct mpidev_pace {
    uint64_t spin, yield;
    uint64_t start, watched;
    unsigned polls;
    bool pausing; /* it sleeps: a sleep after every poll */
    bool transfer; /* a transfer's wait: no sleep while data moves, and
                      other transfers do not make it sleep */
} mpidev_pace;

mpidev_pace mpidev_pace_of(bool transfer);
bool mpidev_pace_on(mpidev_pace *p, const mpidev_peer *peer);

/* Abandon a request nobody will complete (cancelled and freed). */
void mpidev_abandon(MPI_Request *request);

#endif /* PYMIC_MPI_PROGRESS_H */
