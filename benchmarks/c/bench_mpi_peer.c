/*
 * bench_mpi_peer.c -- B13's MPI peer: what the same MPI does between two
 * processes by itself (mpirun -np 2 bench_mpi_peer ...), in the shapes of
 * the MPI device's operations.
 *
 *   latency COUNT REPEATS [multiple|polled]
 *                             one-word ping-pong; prints per repeat the
 *                             median-free mean round trip in seconds;
 *                             with `multiple` MPI is initialised at
 *                             MPI_THREAD_MULTIPLE (the level an MPI device
 *                             needs, which makes Open MPI's every call
 *                             take its locks), else with MPI_Init;
 *                             `polled` is the exchange an MPI device makes
 *                             for an invoke, without either engine: at
 *                             MPI_THREAD_MULTIPLE, each receive posted
 *                             before its message can come and completed
 *                             by polling MPI_Test (a wait that must notice
 *                             a peer that died cannot block in MPI_Recv)
 *   bandwidth REPEATS SIZE... per size the best-of-REPEATS seconds of
 *                             "h2d" (rank 0 sends SIZE bytes, rank 1
 *                             answers one word) and "d2h" (rank 0 asks
 *                             with one word, rank 1 sends SIZE bytes)
 *
 * Rank 0 prints one JSON object on stdout.
 */
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void wait_polled(MPI_Request *request)
{
    int done = 0;
    while (!done)
        MPI_Test(request, &done, MPI_STATUS_IGNORE);
}

/* One round trip of `polled`: rank 0 posts the answer's receive, sends
 * the request and polls; rank 1 polls for the request (its receive posted
 * before), posts the next one's receive and answers. */
static void polled_round_trip(int rank, long *word, long *answer, MPI_Request *next, bool last)
{
    if (rank == 0) {
        MPI_Request reply;
        MPI_Irecv(answer, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD, &reply);
        MPI_Send(word, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD);
        wait_polled(&reply);
        return;
    }
    wait_polled(next);
    if (!last)
        MPI_Irecv(word, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD, next);
    MPI_Send(answer, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD);
}

static void latency(int rank, long count, int repeats, bool polled)
{
    long word = 0, answer = 0;
    if (rank == 0)
        printf("{\"round_trip_s\": [");
    for (int r = 0; r < repeats; r++) {
        MPI_Request next = MPI_REQUEST_NULL;
        if (polled && rank == 1)
            MPI_Irecv(&word, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD, &next);
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        for (long i = 0; i < count; i++) {
            if (polled) {
                polled_round_trip(rank, &word, &answer, &next, i + 1 == count);
            } else if (rank == 0) {
                MPI_Send(&word, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(&word, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else {
                MPI_Recv(&word, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(&word, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD);
            }
        }
        double took = (MPI_Wtime() - start) / (double)count;
        if (rank == 0)
            printf("%s%.9g", r ? ", " : "", took);
    }
    if (rank == 0)
        printf("]}\n");
}

/* One transfer in direction `d2h` (0: rank 0 -> 1 then a word back). */
static double transfer(int rank, char *buffer, long bytes, int d2h)
{
    long word = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    int sender = d2h ? 1 : 0, receiver = 1 - sender;
    if (d2h && rank == 0)
        MPI_Send(&word, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD);
    if (d2h && rank == 1)
        MPI_Recv(&word, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (rank == sender)
        MPI_Send(buffer, (int)bytes, MPI_BYTE, receiver, 1, MPI_COMM_WORLD);
    else
        MPI_Recv(buffer, (int)bytes, MPI_BYTE, sender, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (!d2h && rank == 1)
        MPI_Send(&word, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD);
    if (!d2h && rank == 0)
        MPI_Recv(&word, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return MPI_Wtime() - start;
}

static void bandwidth(int rank, int repeats, int nsizes, char **sizes)
{
    if (rank == 0)
        printf("{");
    for (int s = 0; s < nsizes; s++) {
        long bytes = atol(sizes[s]);
        char *buffer = malloc((size_t)bytes);
        memset(buffer, 1, (size_t)bytes);
        double best[2] = {1e30, 1e30};
        for (int r = 0; r < repeats + 1; r++) { /* the first is a warm-up */
            for (int d = 0; d < 2; d++) {
                double t = transfer(rank, buffer, bytes, d);
                if (r && t < best[d])
                    best[d] = t;
            }
        }
        if (rank == 0)
            printf("%s\"%ld\": {\"h2d\": %.9g, \"d2h\": %.9g}", s ? ", " : "", bytes, best[0],
                   best[1]);
        free(buffer);
    }
    if (rank == 0)
        printf("}\n");
}

int main(int argc, char **argv)
{
    bool polled = argc == 5 && strcmp(argv[4], "polled") == 0;
    bool multiple = polled || (argc == 5 && strcmp(argv[4], "multiple") == 0);
    int provided = MPI_THREAD_SINGLE;
    if (multiple)
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    else
        MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2 || argc < 3 || (multiple && provided < MPI_THREAD_MULTIPLE)) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np 2 bench_mpi_peer latency COUNT REPEATS "
                            "[multiple|polled] | bandwidth REPEATS SIZE...%s\n",
                    multiple ? " (and an MPI that gives MPI_THREAD_MULTIPLE)" : "");
        MPI_Finalize();
        return 2;
    }
    if (strcmp(argv[1], "latency") == 0 && (argc == 4 || multiple))
        latency(rank, atol(argv[2]), atoi(argv[3]), polled);
    else
        bandwidth(rank, atoi(argv[2]), argc - 3, argv + 3);
    MPI_Finalize();
    return 0;
}
