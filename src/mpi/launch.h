/*
 * launch.h -- how hosts and MPI devices find each other (launch.c).
 *
 * Spawned: a host with no device ranks beside it starts each device with
 * MPI_Comm_spawn (host.c); the device finds its host as its parent.
 *
 * MPMD: `mpirun -np H python app.py : -np D pymic-device` puts hosts and
 * devices in one MPI_COMM_WORLD.  Every rank of it takes part in one
 * handshake (collective over MPI_COMM_WORLD): each says whether it is a
 * device, on which node it runs and how many MPI devices it wants; every
 * rank then computes the same pairing -- node first (a host takes the
 * devices of its own node, in rank order), then whatever devices are left
 * go to the hosts still short, in rank order.  Hosts get a communicator
 * of the host ranks only (pymic.mpi.host_comm()).
 */
#ifndef PYMIC_MPI_LAUNCH_H
#define PYMIC_MPI_LAUNCH_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

/* True when this process was started as part of an MPI job whose
 * MPI_COMM_WORLD holds other programs too (an MPMD launch), judged from
 * the launcher's environment before MPI is initialised: Open MPI says how
 * many processes its own program has (OMPI_APP_CTX_NUM_PROCS) and how many
 * the world has; PYMIC_MPI_LAUNCH=spawn or =mpmd overrides the guess. */
bool mpidev_world_has_other_programs(void);

/* The handshake, on every rank of MPI_COMM_WORLD (MPI initialised).
 * `wanted`: MPI devices this rank wants (a device rank: -1).  On return
 * *pair_comm is a duplicate of MPI_COMM_WORLD for host-device traffic,
 * *side_comm the communicator of the ranks of this rank's side (hosts or
 * devices).  A host gets the world ranks of its devices in peers[0..*npeers)
 * (at most `wanted`: fewer when the job has too few); a device gets its
 * host in peers[0] (*npeers 1) or *npeers 0 if no host wants it.  Returns
 * MPI_SUCCESS or an MPI error code (`why` says which call failed). */
int mpidev_handshake(int wanted, MPI_Comm *pair_comm, MPI_Comm *side_comm, int *peers,
                     int max_peers, int *npeers, char *why, size_t why_len);

#endif /* PYMIC_MPI_LAUNCH_H */
