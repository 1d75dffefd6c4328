/*
 * host.h -- the host side of the MPI device (host.c, finalize.c).
 */
#ifndef PYMIC_MPI_HOST_H
#define PYMIC_MPI_HOST_H

#include <mpi.h>
#include <pthread.h>
#include <stdbool.h>

#include "../engine/engine.h"
#include "progress.h"
#include "protocol.h"

/* One MPI device as the host sees it. */
typedef struct mpi_device {
    pymic_device *device;
    MPI_Comm comm;   /* to the device: a spawn's intercommunicator, or the
                        handshake's duplicate of MPI_COMM_WORLD */
    int rank;        /* the device's rank in comm */
    bool spawned;    /* comm is ours alone (disconnected at the end) */
    bool gone;       /* told to quit (MPI finalised): no more messages */
    /* One control request at a time. */
    pthread_mutex_t control_lock;
    /* Guards used[]: which stream slots (tags) are taken. */
    pthread_mutex_t lock;
    bool used[MPIDEV_MAX_STREAMS];
    /* Slots of streams that ended while the device was lost: their thread
     * on the device was not told to stop, so the slot stays taken until a
     * reset that succeeds stops it (guarded by control_lock). */
    bool stale[MPIDEV_MAX_STREAMS];
    size_t capacity; /* the device's answer to HELLO */
    uint64_t chunk;  /* bytes per message of a copy (PYMIC_MPI_CHUNK) */
    char local[PYMIC_NAME_MAX]; /* the device engine's own device name */
    mpidev_peer peer; /* the device process, watched where it is on this node */
    struct mpi_device *next; /* every opened device, for the end */
} mpi_device;

/* launch (host.c): MPI initialised, the devices reachable.  PYMIC_OK or
 * the reason in `why`. */
int mpidev_host_ready(char *why, size_t len);
/* A device for `device`: spawned, or the next device rank of this host
 * under MPMD.  False with the reason. */
bool mpidev_connect(mpi_device *md, char *why, size_t len);

/* The communicator of the host ranks only (MPMD), else MPI_COMM_WORLD;
 * MPI_COMM_NULL before MPI is initialised by pymic. */
MPI_Comm mpidev_host_comm(void);

#endif /* PYMIC_MPI_HOST_H */
