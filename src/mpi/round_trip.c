/*
 * round_trip.c -- plain MPI exchanges between this process and an MPI
 * device's process: the floor an invoke + sync (a one-word round trip)
 * and a copy (a message of its bytes, one word back) on that device stand
 * on.
 *
 * Messages on a tag of their own (protocol.h, ECHO) between the very two
 * processes an invoke or a copy travels between, at the thread level they
 * run at (MPI_THREAD_MULTIPLE), with the device's stream threads waiting
 * as usual: MPI_Recv and MPI_Send on the device's side, the same calls
 * here (each wait polled, as every wait of this process: a device process
 * that ends fails it instead of hanging it).  B13 takes turns between
 * them and the device's invokes and copies in one job, so both see the
 * same placement of the two processes on the machine's cores; and a user
 * can see what the MPI underneath costs.
 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <mpi.h>

#include "host.h"
#include "protocol.h"
#include "pymic_mpi.h"

/* At most this many exchanges per call (a bound on how long the control
 * lock is held, and on what the device loops over). */
#define MOST_EXCHANGES 100000000u

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

/* One message of an exchange, either way: a small one as mpidev_send and
 * mpidev_recv move it, a larger one polled to its end as a copy's chunks
 * are. */
static int move(mpi_device *md, int sending, void *bytes, uint64_t n)
{
    if (n <= MPIDEV_EAGER_BYTES)
        return sending ? MPI_Send(bytes, (int)n, MPI_BYTE, md->rank, MPIDEV_TAG_ECHO, md->comm)
                       : mpidev_recv(bytes, (int)n, md->rank, MPIDEV_TAG_ECHO, md->comm,
                                     MPI_STATUS_IGNORE, &md->peer);
    return mpidev_transfer(sending, bytes, n, n, 1, md->rank, MPIDEV_TAG_ECHO, md->comm,
                           &md->peer);
}

/* `count` exchanges with the device (checked by the callers): each sends
 * `out_bytes` of `out` and receives `in_bytes` into `in`.  Each one's
 * seconds into each[i] if `each`, the mean of all in *mean if `mean`. */
static int exchange(int device, const char *what, uint64_t count, const void *out,
                    uint64_t out_bytes, void *in, uint64_t in_bytes, double *each,
                    double *mean, char *why, size_t len)
{
    mpi_device *md = mpidev_opened(device);
    if (!md) {
        if (why && len)
            snprintf(why, len,
                     "%s with device %d: not an MPI device this process has opened (create "
                     "a stream on it first)",
                     what, device);
        return PYMIC_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&md->control_lock);
    mpidev_request rq = {.op = MPIDEV_ECHO, .a = count, .b = out_bytes, .c = in_bytes};
    mpidev_reply reply;
    int status = mpidev_control_held(md, &rq, &reply);
    if (status != PYMIC_OK) {
        pthread_mutex_unlock(&md->control_lock);
        if (why && len)
            snprintf(why, len, "%s with device %d: %s", what, device,
                     status == PYMIC_ERR_DEVICE_LOST ? "the device is lost" : reply.text);
        return status;
    }
    int rc = MPI_SUCCESS;
    double start = now_s(), last = start;
    for (uint64_t i = 0; i < count && rc == MPI_SUCCESS; i++) {
        rc = move(md, 1, (void *)(uintptr_t)out, out_bytes);
        if (rc == MPI_SUCCESS)
            rc = move(md, 0, in, in_bytes);
        if (each) {
            double t = now_s();
            each[i] = t - last;
            last = t;
        }
    }
    if (mean)
        *mean = (now_s() - start) / (double)count;
    pthread_mutex_unlock(&md->control_lock);
    if (rc != MPI_SUCCESS) {
        if (why && len)
            snprintf(why, len, "%s with device %d: MPI failed (the device process ended?)",
                     what, device);
        return PYMIC_ERR_SYSTEM;
    }
    return PYMIC_OK;
}

/* `words` round trips with MPI device `device` (opened in this process: a
 * stream created on it, say), their mean in *seconds.  PYMIC_OK, or a
 * status with the reason in `why`.  Other control requests of the device
 * (allocations, libraries) wait meanwhile; streams go on. */
__attribute__((visibility("default"))) int pymic_mpi_round_trip(int device, uint64_t words,
                                                                 double *seconds, char *why,
                                                                 size_t len)
{
    if (!seconds || words == 0 || words > MOST_EXCHANGES)
        return refuse(why, len, PYMIC_ERR_INVALID_ARGUMENT,
                      "MPI round trip with device %d: needs 1 to 100000000 words and a "
                      "place for the result",
                      device);
    uint64_t word = 0;
    return exchange(device, "MPI round trip", words, &word, sizeof word, &word, sizeof word,
                    NULL, seconds, why, len);
}

__attribute__((visibility("default"))) int
pymic_mpi_exchange(int device, uint64_t count, const void *out, uint64_t out_bytes, void *in,
                   uint64_t in_bytes, double *seconds, char *why, size_t len)
{
    if (!seconds || !out || !in || count == 0 || count > MOST_EXCHANGES || out_bytes == 0 ||
        out_bytes > MPIDEV_ECHO_MOST || in_bytes == 0 || in_bytes > MPIDEV_ECHO_MOST)
        return refuse(why, len, PYMIC_ERR_INVALID_ARGUMENT,
                      "MPI exchange with device %d: needs 1 to 100000000 exchanges, 1 to "
                      "2147483647 bytes each way, both buffers and a place for the times",
                      device);
    return exchange(device, "MPI exchange", count, out, out_bytes, in, in_bytes, seconds, NULL,
                    why, len);
}
