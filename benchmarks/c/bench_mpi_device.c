/*
 * bench_mpi_device.c -- B13's pymic side in C: device 0 of
 * PYMIC_DEVICES=mpi, the same shapes as bench_mpi_peer.c.  Run as one rank
 * of an MPMD job with a pymic-device rank (mpirun -np 1 bench_mpi_device
 * ... : -np 1 pymic-device), the device is the job's other process, as
 * the peer's other rank is; run alone, it spawns its device.
 *
 *   bench_mpi_device KERNELS latency COUNT REPEATS
 *       empty kernel invoke + sync; per repeat the mean seconds, and,
 *       taking turns with it, the mean MPI round trip between this
 *       process and the device's (pymic_mpi_round_trip: a one-word
 *       ping-pong between the very same two processes)
 *   bench_mpi_device KERNELS bandwidth REPEATS SIZE...
 *       per size the best-of-REPEATS seconds of h2d + sync and d2h + sync
 *       ("device") and, taking turns with them at every size, of the
 *       same shapes as plain MPI messages between the very same two
 *       processes ("send_recv", pymic_mpi_exchange: SIZE bytes there and
 *       a word back, a word there and SIZE bytes back)
 *
 * KERNELS: the benchmark kernel library (bench_empty).  One JSON object on
 * stdout.
 */
#include <pymic.h>
#include <pymic_mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void must(int status, const char *what)
{
    if (status != PYMIC_OK) {
        fprintf(stderr, "bench_mpi_device: %s: %s\n", what, pymic_last_error());
        exit(1);
    }
}

/* Per direction the best of `repeats` h2d + sync and d2h + sync of
 * `bytes` on stream `s`, in the steady state: first rounds warm up, as
 * many as the device takes to choose in which messages copies of this
 * size go (PYMIC_MPI_LEARNING_COPIES). */
static void device_copies(pymic_stream *s, char *host, size_t bytes, int repeats, double best[2])
{
    void *device;
    must(pymic_mem_alloc(0, bytes, 0, &device), "alloc");
    best[0] = best[1] = 1e30;
    const int warm_up = PYMIC_MPI_LEARNING_COPIES;
    for (int r = 0; r < warm_up + repeats; r++) {
        double start = now();
        must(pymic_memcpy_h2d(s, device, 0, host, bytes), "h2d");
        must(pymic_stream_sync(s), "sync");
        double h2d = now() - start;
        start = now();
        must(pymic_memcpy_d2h(s, host, device, 0, bytes), "d2h");
        must(pymic_stream_sync(s), "sync");
        double d2h = now() - start;
        if (r >= warm_up && h2d < best[0])
            best[0] = h2d;
        if (r >= warm_up && d2h < best[1])
            best[1] = d2h;
    }
    must(pymic_mem_free(s, device), "free");
}

/* The same shapes as plain MPI between the same two processes
 * (pymic_mpi_exchange): `bytes` there and a word back, a word there and
 * `bytes` back; per direction the best of `repeats` (a first warms up). */
static void exchanges(char *host, size_t bytes, int repeats, double *times, double best[2])
{
    char why[512];
    uint64_t word = 0;
    for (int d = 0; d < 2; d++) {
        int status = d == 0 ? pymic_mpi_exchange(0, (uint64_t)repeats + 1, host, bytes, &word,
                                                 sizeof word, times, why, sizeof why)
                            : pymic_mpi_exchange(0, (uint64_t)repeats + 1, &word, sizeof word,
                                                 host, bytes, times, why, sizeof why);
        if (status != PYMIC_OK) {
            fprintf(stderr, "bench_mpi_device: %s\n", why);
            exit(1);
        }
        best[d] = 1e30;
        for (int r = 1; r < repeats + 1; r++)
            if (times[r] < best[d])
                best[d] = times[r];
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_mpi_device KERNELS latency COUNT REPEATS | "
                        "KERNELS bandwidth REPEATS SIZE...\n");
        return 2;
    }
    pymic_stream *s;
    must(pymic_stream_create(0, &s), "stream");
    if (strcmp(argv[2], "latency") == 0) {
        pymic_library *lib;
        pymic_kernel *empty;
        must(pymic_library_load(0, argv[1], &lib), "library");
        must(pymic_kernel_find(lib, "bench_empty", &empty), "kernel");
        long count = atol(argv[3]);
        int repeats = atoi(argv[4]);
        for (long i = 0; i < 1000; i++) { /* warm-up */
            must(pymic_invoke(s, empty, 0, NULL), "invoke");
            must(pymic_stream_sync(s), "sync");
        }
        double *invoke_sync = calloc((size_t)repeats, sizeof *invoke_sync);
        double *round_trip = calloc((size_t)repeats, sizeof *round_trip);
        char why[512];
        if (!invoke_sync || !round_trip)
            must(PYMIC_ERR_SYSTEM, "memory");
        if (pymic_mpi_round_trip(0, 1000, &round_trip[0], why, sizeof why) != PYMIC_OK) {
            fprintf(stderr, "bench_mpi_device: %s\n", why);
            exit(1);
        }
        /* Taking turns, each first in every other repeat: both see the
         * same placement of the two processes on the cores. */
        for (int r = 0; r < repeats; r++) {
            for (int turn = 0; turn < 2; turn++) {
                if ((turn + r) % 2 == 0) {
                    double start = now();
                    for (long i = 0; i < count; i++) {
                        pymic_invoke(s, empty, 0, NULL);
                        pymic_stream_sync(s);
                    }
                    invoke_sync[r] = (now() - start) / (double)count;
                } else if (pymic_mpi_round_trip(0, (uint64_t)count, &round_trip[r], why,
                                                sizeof why) != PYMIC_OK) {
                    fprintf(stderr, "bench_mpi_device: %s\n", why);
                    exit(1);
                }
            }
        }
        const char *names[] = {"invoke_sync_s", "round_trip_s"};
        const double *series[] = {invoke_sync, round_trip};
        printf("{");
        for (int k = 0; k < 2; k++) {
            printf("%s\"%s\": [", k ? ", " : "", names[k]);
            for (int r = 0; r < repeats; r++)
                printf("%s%.9g", r ? ", " : "", series[k][r]);
            printf("]");
        }
        printf("}\n");
        free(invoke_sync);
        free(round_trip);
    } else {
        int repeats = atoi(argv[3]);
        int sizes = argc - 4;
        /* Per size: best seconds of [device h2d, device d2h, exchange h2d,
         * exchange d2h]. */
        double (*best)[4] = malloc((size_t)sizes * sizeof *best);
        double *times = malloc((size_t)(repeats + 1) * sizeof *times);
        if (!best || !times)
            must(PYMIC_ERR_SYSTEM, "memory");
        for (int k = 0; k < sizes; k++) {
            size_t bytes = (size_t)atol(argv[4 + k]);
            char *host = malloc(bytes);
            if (!host)
                must(PYMIC_ERR_SYSTEM, "memory");
            memset(host, 1, bytes);
            /* Taking turns, each first at every other size: both see
             * the same placement of the two processes on the cores.  (Not
             * at every repeat: each turn leaves the other's threads of the
             * device process polling for a while, on a machine with as
             * few cores as threads then busy.) */
            for (int turn = 0; turn < 2; turn++) {
                if ((turn + k) % 2 == 0)
                    device_copies(s, host, bytes, repeats, best[k]);
                else
                    exchanges(host, bytes, repeats, times, best[k] + 2);
            }
            free(host);
        }
        const char *names[] = {"device", "send_recv"};
        printf("{");
        for (int who = 0; who < 2; who++) {
            printf("%s\"%s\": {", who ? ", " : "", names[who]);
            for (int k = 0; k < sizes; k++)
                printf("%s\"%zu\": {\"h2d\": %.9g, \"d2h\": %.9g}", k ? ", " : "",
                       (size_t)atol(argv[4 + k]), best[k][2 * who], best[k][2 * who + 1]);
            printf("}");
        }
        printf("}\n");
        free(times);
        free(best);
    }
    must(pymic_stream_destroy(s), "destroy");
    return 0;
}
