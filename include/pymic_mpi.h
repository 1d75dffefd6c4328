/*
 * pymic_mpi.h -- the C calls of the MPI device's plugin, libpymic_mpi.so
 * (installed beside libpymic.so where pymic was built with MPI; link with
 * -lpymic_mpi, or find them with dlsym in the plugin the registry opened).
 * libpymic and pymic.h never need it.
 */
#ifndef PYMIC_MPI_H
#define PYMIC_MPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The MPI round trip between this process and the process of MPI device
 * `device` (one this process has opened: create a stream on it first):
 * `words` one-word ping-pongs (1 to 100000000) with MPI_Send and MPI_Recv,
 * on a tag of their own, between the very two processes an invoke
 * travels between; their mean in *seconds.  The floor an invoke + sync
 * on that device stands on.  The device's other control requests
 * (allocations, libraries) wait meanwhile; its streams go on.  Returns
 * PYMIC_OK or a status (pymic.h), with the reason in `why` (`len` bytes,
 * may be NULL). */
int pymic_mpi_round_trip(int device, uint64_t words, double *seconds, char *why, size_t len);

/* The Fortran handle (MPI_Comm_c2f) of the communicator of the host ranks
 * (pymic.mpi.host_comm() in Python), or -1 with the reason in `why`. */
int pymic_mpi_host_comm(char *why, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PYMIC_MPI_H */
