/*
 * roundtrip_mpi.c -- B11's peer: a round trip of one int between two MPI
 * ranks (MPI_Send, then MPI_Recv of the answer), as an MPI offload
 * runtime makes one for a remote call.  Run as two ranks on one node, so
 * Open MPI uses its shared-memory transport; rank 0 prints the summary.
 *
 * usage: mpirun -np 2 roundtrip_mpi
 */
#include <mpi.h>

#include "roundtrip.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0)
            fprintf(stderr, "roundtrip_mpi: run it as 2 ranks, not %d\n", size);
        MPI_Finalize();
        return 2;
    }
    static double seconds[ROUNDTRIP_ITERS];
    int word = 0;
    for (int i = 0; i < ROUNDTRIP_WARMUP + ROUNDTRIP_ITERS; i++) {
        if (rank == 0) {
            double start = roundtrip_now();
            MPI_Send(&word, 1, MPI_INT, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(&word, 1, MPI_INT, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (i >= ROUNDTRIP_WARMUP)
                seconds[i - ROUNDTRIP_WARMUP] = roundtrip_now() - start;
        } else {
            MPI_Recv(&word, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            word++;
            MPI_Send(&word, 1, MPI_INT, 0, 0, MPI_COMM_WORLD);
        }
    }
    if (rank == 0)
        roundtrip_report(seconds, ROUNDTRIP_ITERS);
    MPI_Finalize();
    return 0;
}
