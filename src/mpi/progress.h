/*
 * progress.h -- waiting for MPI without taking a core from the threads
 * beside us (progress.c).
 */
#ifndef PYMIC_MPI_PROGRESS_H
#define PYMIC_MPI_PROGRESS_H

#include <mpi.h>

/* Wait for `request` (MPI_Wait's contract, `status` may be
 * MPI_STATUS_IGNORE).  A blocking MPI call polls at full speed for as long
 * as it waits; the threads of an MPI device share cores with kernels and
 * with each other (a rank is often bound to one core), so this polls
 * briefly, then yields the core between polls, then sleeps between them
 * once the wait has been long: an idle device costs next to nothing. */
int mpidev_wait(MPI_Request *request, MPI_Status *status);

/* MPI_Recv / MPI_Send through mpidev_wait. */
int mpidev_recv(void *buffer, int count, int source, int tag, MPI_Comm comm,
                MPI_Status *status);
int mpidev_send(const void *buffer, int count, int dest, int tag, MPI_Comm comm);

#endif /* PYMIC_MPI_PROGRESS_H */
