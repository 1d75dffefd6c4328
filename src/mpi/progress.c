/*
 * progress.c -- polite waits for MPI (progress.h).
 */
#include "progress.h"

#include <sched.h>
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

int mpidev_wait(MPI_Request *request, MPI_Status *status)
{
    uint64_t start = 0;
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
        } else {
            struct timespec pause = {0, SLEEP_NS};
            nanosleep(&pause, NULL);
        }
    }
}

int mpidev_recv(void *buffer, int count, int source, int tag, MPI_Comm comm, MPI_Status *status)
{
    MPI_Request request;
    int rc = MPI_Irecv(buffer, count, MPI_BYTE, source, tag, comm, &request);
    return rc == MPI_SUCCESS ? mpidev_wait(&request, status) : rc;
}

int mpidev_send(const void *buffer, int count, int dest, int tag, MPI_Comm comm)
{
    MPI_Request request;
    int rc = MPI_Isend(buffer, count, MPI_BYTE, dest, tag, comm, &request);
    return rc == MPI_SUCCESS ? mpidev_wait(&request, MPI_STATUS_IGNORE) : rc;
}
