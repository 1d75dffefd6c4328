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
#include "tuning.h"

/* A block of device memory as this backend hands it to the engine. */
typedef struct mpi_block {
    pymic_block block;
    struct mpi_block *prev, *next; /* mpi_device.blocks: every live one */
    bool orphaned; /* allocated in a device process that has ended */
} mpi_block;

/* An allocation of the device process made only to keep an address of an
 * orphaned block from being handed out twice (blocks.c). */
typedef struct mpi_held {
    uint64_t address;
    uint64_t nbytes;
    struct mpi_held *next;
} mpi_held;

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
    /* Read-held by a poll while it looks at a stream's backend state;
     * write-held by a stream's end while it takes that state away (a
     * device-wide wait may poll a stream on its way out). */
    pthread_rwlock_t streams_gate;
    /* Guards used[]: which stream slots (tags) are taken. */
    pthread_mutex_t lock;
    bool used[MPIDEV_MAX_STREAMS];
    /* Slots of streams that ended while the device was lost: their thread
     * on the device was not told to stop, so the slot stays taken until a
     * reset that succeeds stops it (guarded by control_lock). */
    bool stale[MPIDEV_MAX_STREAMS];
    size_t capacity; /* the device's answer to HELLO */
    mpidev_tuner tuner; /* in which messages a copy goes */
    char local[PYMIC_NAME_MAX]; /* the device engine's own device name */
    mpidev_peer peer; /* the device process, watched where it is on this node */
    /* The device process ended (its wait saw it go): a reset spawns a
     * new one where this host spawned it. */
    _Atomic bool ended;
    /* Live blocks, the orphans among them (of an ended device process,
     * until freed), and what the new process holds back for them. */
    pthread_mutex_t blocks_lock;
    mpi_block *blocks;
    size_t orphans;
    mpi_held *held;
    /* The device's clock against this process's (trace.c's session for
     * which it was read; device clock = host clock + offset, within
     * clock_error): set under control_lock, session stored last. */
    _Atomic uint64_t clock_session;
    _Atomic int64_t clock_offset;
    _Atomic uint64_t clock_error;
    /* Event points the host will wait for no more (mark_forget), to ride
     * on the next RECORD or WAIT to the device (protocol.h, "Points"). */
    pthread_mutex_t forget_lock;
    uint64_t *forget;
    size_t forget_count, forget_room;
    struct mpi_device *next; /* every opened device, for the end */
} mpi_device;

/* launch (host.c): MPI initialised, the devices reachable.  PYMIC_OK or
 * the reason in `why`. */
int mpidev_host_ready(char *why, size_t len);
/* A device for `device`: spawned, or the next device rank of this host
 * under MPMD.  False with the reason. */
bool mpidev_connect(mpi_device *md, char *why, size_t len);

/* The opened MPI device of engine device `id`, or NULL.  (An opened
 * device stays in the list until the process ends.) */
mpi_device *mpidev_opened(int id);

/* Spawn a new device process for a spawned device whose process ended
 * (the old communicator is freed).  False with the reason. */
bool mpidev_respawn(mpi_device *md, char *why, size_t len);

/* One control request and its answer (host.c): PYMIC_OK,
 * PYMIC_ERR_DEVICE_LOST, or the device's status with its reason in
 * reply->text. */
int mpidev_control(mpi_device *md, mpidev_request *rq, mpidev_reply *reply);
/* The same with md->control_lock already held by the caller. */
int mpidev_control_held(mpi_device *md, mpidev_request *rq, mpidev_reply *reply);

/* Device memory (blocks.c): the backend's block_get / block_put, and
 * after a respawn every live block becomes an orphan. */
pymic_block *mpidev_block_get(pymic_device *device, size_t nbytes, size_t alignment);
void mpidev_block_put(pymic_device *device, pymic_block *block);
void mpidev_blocks_orphan(mpi_device *md);

/* The communicator of the host ranks only (MPMD), else MPI_COMM_WORLD;
 * MPI_COMM_NULL before MPI is initialised by pymic. */
MPI_Comm mpidev_host_comm(void);

#endif /* PYMIC_MPI_HOST_H */
