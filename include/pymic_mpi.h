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

/* How many copies of one size class (2^k to 2^(k+1) - 1 bytes, above 1 MiB
 * and below 2 GiB) in one direction an MPI device makes before it has
 * chosen whether such copies go in chunks or as one message (docs/mpi.md,
 * "Chunks or one message"; unless PYMIC_MPI_CHUNK fixes the size): a
 * benchmark of the steady state warms up with this many. */
#define PYMIC_MPI_LEARNING_COPIES 6

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

/* `count` plain MPI exchanges (1 to 100000000) with the process of MPI
 * device `device`, as pymic_mpi_round_trip: each sends `out_bytes` of
 * `out` there (MPI_Send; MPI_Recv there) and receives `in_bytes` into `in`
 * (the first `in_bytes` of what the device received, zeros past them);
 * each way 1 to 2147483647 bytes.  seconds[i] is exchange i's time.  The
 * device's buffer is kept for the next call with the same two sizes (as
 * device memory is, for the next copy) and is fresh when they change:
 * the first exchange then also warms it up, and a measure leaves it out.  With
 * one word back, an exchange is what an h2d of `out_bytes` + sync
 * stands on; with one word out, a d2h of `in_bytes`.  Returns PYMIC_OK or
 * a status, with the reason in `why`. */
int pymic_mpi_exchange(int device, uint64_t count, const void *out, uint64_t out_bytes, void *in,
                       uint64_t in_bytes, double *seconds, char *why, size_t len);

/* The Fortran handle (MPI_Comm_c2f) of the communicator of the host ranks
 * (pymic.mpi.host_comm() in Python), or -1 with the reason in `why`. */
int pymic_mpi_host_comm(char *why, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* PYMIC_MPI_H */
