/*
 * progress.c -- polite waits for MPI (progress.h).
 */
#include "progress.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Busy polling this long catches a quick answer at once; yielding until
 * YIELD_NS lets a thread on the same core run (the kernel, the other end
 * of a local exchange); after that a sleep between polls. */
#define SPIN_NS 20000u
#define YIELD_NS 2000000u
#define SLEEP_NS 50000

/* How often a long wait looks at its peer. */
#define WATCH_NS 20000000u

static int peer_gone(const mpidev_peer *peer)
{
    return peer && peer->pid > 0 && kill(peer->pid, 0) != 0 && errno == ESRCH;
}

static int wait_for(MPI_Request *request, MPI_Status *status, const mpidev_peer *peer)
{
    uint64_t start = 0, watched = 0;
    for (unsigned polls = 0;; polls++) {
        int done = 0;
        int rc = MPI_Test(request, &done, status);
        if (rc != MPI_SUCCESS || done)
            return rc;
        if (polls < 64)
            continue;
        uint64_t t = now_ns();
        if (!start)
            start = t;
        if (t - start < SPIN_NS)
            continue;
        if (t - start < YIELD_NS) {
            sched_yield();
            continue;
        }
        struct timespec pause = {0, SLEEP_NS};
        nanosleep(&pause, NULL);
        if (t - watched >= WATCH_NS) {
            watched = t;
            if (peer_gone(peer)) {
                /* Nothing will complete it: let MPI forget it. */
                if (MPI_Cancel(request) == MPI_SUCCESS)
                    MPI_Request_free(request);
                return MPIDEV_ERR_PEER_GONE;
            }
        }
    }
}

int mpidev_wait(MPI_Request *request, MPI_Status *status, const mpidev_peer *peer)
{
    if (!peer)
        return wait_for(request, status, NULL);
    mpidev_peer *counted = (mpidev_peer *)peer;
    atomic_fetch_add_explicit(&counted->waits, 1, memory_order_relaxed);
    int rc = wait_for(request, status, peer);
    atomic_fetch_sub_explicit(&counted->waits, 1, memory_order_release);
    return rc;
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
    MPI_Request request;
    int rc = MPI_Isend(buffer, count, MPI_BYTE, dest, tag, comm, &request);
    return rc == MPI_SUCCESS ? mpidev_wait(&request, MPI_STATUS_IGNORE, peer) : rc;
}
