/*
 * progress.h -- waiting for MPI without taking a core from the threads
 * beside us (progress.c).
 */
#ifndef PYMIC_MPI_PROGRESS_H
#define PYMIC_MPI_PROGRESS_H

#include <mpi.h>
#include <stdatomic.h>

/* Wait for `request` (MPI_Wait's contract, `status` may be
 * MPI_STATUS_IGNORE).  A blocking MPI call polls at full speed for as long
 * as it waits; the threads of an MPI device share cores with kernels and
 * with each other (a rank is often bound to one core), so this polls
 * briefly, then yields the core between polls, then sleeps between them
 * once the wait has been long: an idle device costs next to nothing. */
/* A peer process this side can watch: its pid, when it runs on this
 * node (0: it does not, or it is not known).  MPI itself does not say when
 * the other end of a wait is gone (Open MPI aborts the dead process's job,
 * not always this one), so a wait for a watched peer checks, once it has
 * waited a while, that the peer still runs. */
typedef struct mpidev_peer {
    int pid;
    /* Waits under way for this peer (mpidev_wait): a reset that replaces
     * an ended peer waits for them to give up first, so none watches the
     * new process for a request to the old one. */
    _Atomic int waits;
} mpidev_peer;

/* MPIDEV_ERR_PEER_GONE: the watched peer ended while this waited (the
 * request is abandoned). */
#define MPIDEV_ERR_PEER_GONE (-1)

int mpidev_wait(MPI_Request *request, MPI_Status *status, const mpidev_peer *peer);

/* MPI_Recv / MPI_Send through mpidev_wait (`peer` may be NULL). */
int mpidev_recv(void *buffer, int count, int source, int tag, MPI_Comm comm,
                MPI_Status *status, const mpidev_peer *peer);
int mpidev_send(const void *buffer, int count, int dest, int tag, MPI_Comm comm,
                const mpidev_peer *peer);

#endif /* PYMIC_MPI_PROGRESS_H */
