/*
 * round_trip.c -- the MPI round trip between this process and an MPI
 * device's process: the floor an invoke + sync on that device stands on.
 *
 * A one-word ping-pong (MPI_Send, and MPI_Recv on the device's side), on a tag
 * of its own (protocol.h, ECHO), between the very two processes an invoke
 * travels between, at the thread level they run at (MPI_THREAD_MULTIPLE),
 * with the device's stream threads waiting as usual.  B13 takes turns
 * between it and invoke + sync in one job, so both see the same placement
 * of the two processes on the machine's cores; and a user can see what
 * the MPI underneath costs.
 */
#include <stdio.h>
#include <time.h>

#include <mpi.h>

#include "host.h"
#include "protocol.h"
#include "pymic_mpi.h"

/* At most this many words per call (a bound on how long the control lock
 * is held, and on what the device loops over). */
#define MOST_WORDS 100000000u

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int refuse(char *why, size_t len, int status, const char *text, int device)
{
    if (why && len)
        snprintf(why, len, text, device);
    return status;
}

/* `words` round trips with MPI device `device` (opened in this process: a
 * stream created on it, say), their mean in *seconds.  PYMIC_OK, or a
 * status with the reason in `why`.  Other control requests of the device
 * (allocations, libraries) wait meanwhile; streams go on. */
__attribute__((visibility("default"))) int pymic_mpi_round_trip(int device, uint64_t words,
                                                                 double *seconds, char *why,
                                                                 size_t len)
{
    if (!seconds || words == 0 || words > MOST_WORDS)
        return refuse(why, len, PYMIC_ERR_INVALID_ARGUMENT,
                      "MPI round trip with device %d: needs 1 to 100000000 words and a "
                      "place for the result",
                      device);
    mpi_device *md = mpidev_opened(device);
    if (!md)
        return refuse(why, len, PYMIC_ERR_INVALID_ARGUMENT,
                      "MPI round trip with device %d: not an MPI device this process has "
                      "opened (create a stream on it first)",
                      device);
    pthread_mutex_lock(&md->control_lock);
    mpidev_request rq = {.op = MPIDEV_ECHO, .a = words};
    mpidev_reply reply;
    int status = mpidev_control_held(md, &rq, &reply);
    if (status != PYMIC_OK) {
        pthread_mutex_unlock(&md->control_lock);
        if (why && len)
            snprintf(why, len, "MPI round trip with device %d: %s", device,
                     status == PYMIC_ERR_DEVICE_LOST ? "the device is lost" : reply.text);
        return status;
    }
    uint64_t word = 0;
    int rc = MPI_SUCCESS;
    double start = now_s();
    /* The receive is MPI_Test polled (mpidev_recv: as every wait here, so
     * a device process that ends fails it instead of hanging it). */
    for (uint64_t i = 0; i < words && rc == MPI_SUCCESS; i++) {
        rc = MPI_Send(&word, (int)sizeof word, MPI_BYTE, md->rank, MPIDEV_TAG_ECHO,
                      md->comm);
        if (rc == MPI_SUCCESS)
            rc = mpidev_recv(&word, (int)sizeof word, md->rank, MPIDEV_TAG_ECHO, md->comm,
                             MPI_STATUS_IGNORE, &md->peer);
    }
    *seconds = (now_s() - start) / (double)words;
    pthread_mutex_unlock(&md->control_lock);
    if (rc != MPI_SUCCESS)
        return refuse(why, len, PYMIC_ERR_SYSTEM,
                      "MPI round trip with device %d: MPI failed (the device process ended?)",
                      device);
    return PYMIC_OK;
}
