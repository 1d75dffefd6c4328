/*
 * bench_engine.c -- micro-benchmark of the engine from C.
 *
 * Prints figures, asserts nothing:
 *   - invoke + sync latency of an empty kernel (median of >= 10000 warm
 *     round trips), beside a direct call through a function pointer;
 *   - device sync against stream sync after one empty invoke (medians,
 *     alternating blocks), also with 1000 idle streams on the device;
 *   - enqueue throughput: 100000 empty invokes, then one sync;
 *   - copy bandwidth h2d / d2h / d2d from 4 KiB to 256 MiB, beside memcpy
 *     between two host buffers of the same size;
 *   - allocate + h2d of 64 MiB (the caching allocator's case).
 *
 * Device 0 is measured: PYMIC_DEVICES=proc measures a process device.
 *
 * usage: bench_engine KERNEL_LIBRARY [max_copy_MiB]
 *   KERNEL_LIBRARY must export empty_kernel (tests/c/kernels/test_kernels.c).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pymic.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MUST(call)                                                                 \
    do {                                                                           \
        if ((call) != PYMIC_OK) {                                                  \
            fprintf(stderr, "%s failed: %s\n", #call, pymic_last_error());         \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

enum { LATENCY_ITERS = 20000, WARMUP = 2000, THROUGHPUT_INVOKES = 100000 };

/* Returns the median round trip in seconds. */
static double bench_latency(pymic_stream *s, pymic_kernel *k, int in_this_process)
{
    static double samples[LATENCY_ITERS];
    for (int i = 0; i < WARMUP; i++) {
        MUST(pymic_invoke(s, k, 0, NULL));
        MUST(pymic_stream_sync(s));
    }
    for (int i = 0; i < LATENCY_ITERS; i++) {
        double t0 = now();
        pymic_invoke(s, k, 0, NULL);
        pymic_stream_sync(s);
        samples[i] = now() - t0;
    }
    qsort(samples, LATENCY_ITERS, sizeof *samples, compare_doubles);

    /* The floor: calling the same function directly (on a host device;
     * a process device's kernel address is the device process's). */
    double direct_us = 0;
    if (in_this_process) {
        void (*direct)(void);
        void *address = pymic_kernel_address(k);
        memcpy(&direct, &address, sizeof direct);
        double t0 = now();
        for (int i = 0; i < LATENCY_ITERS; i++)
            direct();
        direct_us = (now() - t0) / LATENCY_ITERS * 1e6;
    }

    printf("B1 invoke+sync, empty kernel (%d warm iterations):\n", LATENCY_ITERS);
    printf("   median %.3f us   p10 %.3f us   p90 %.3f us   p99 %.3f us\n",
           samples[LATENCY_ITERS / 2] * 1e6, samples[LATENCY_ITERS / 10] * 1e6,
           samples[LATENCY_ITERS * 9 / 10] * 1e6, samples[LATENCY_ITERS * 99 / 100] * 1e6);
    if (in_this_process)
        printf("   direct call through a function pointer: %.4f us\n", direct_us);
    return samples[LATENCY_ITERS / 2];
}

/* Invoke + device sync against invoke + stream sync on the same stream,
 * in alternating blocks; then the same with `idle` more streams on the
 * device that never get work (a device sync must not pay for them). */
static void bench_device_sync(pymic_stream *s, pymic_kernel *k, int idle)
{
    enum { BLOCK = 1000, BLOCKS = 10 };
    static double device[BLOCK * BLOCKS], stream[BLOCK * BLOCKS];
    pymic_stream **others = calloc((size_t)idle + 1, sizeof *others);
    for (int i = 0; i < idle; i++)
        MUST(pymic_stream_create(0, &others[i]));
    for (int b = 0; b < BLOCKS; b++) {
        for (int i = 0; i < BLOCK; i++) {
            double t0 = now();
            pymic_invoke(s, k, 0, NULL);
            pymic_device_sync(0);
            device[b * BLOCK + i] = now() - t0;
        }
        for (int i = 0; i < BLOCK; i++) {
            double t0 = now();
            pymic_invoke(s, k, 0, NULL);
            pymic_stream_sync(s);
            stream[b * BLOCK + i] = now() - t0;
        }
    }
    qsort(device, BLOCK * BLOCKS, sizeof *device, compare_doubles);
    qsort(stream, BLOCK * BLOCKS, sizeof *stream, compare_doubles);
    double d = device[BLOCK * BLOCKS / 2], st = stream[BLOCK * BLOCKS / 2];
    printf("B1 invoke + device sync vs invoke + stream sync (%d streams on the device): "
           "median %.3f us vs %.3f us (%.2fx)\n",
           idle + 1, d * 1e6, st * 1e6, d / st);
    for (int i = 0; i < idle; i++)
        MUST(pymic_stream_destroy(others[i]));
    free(others);
}

static void bench_throughput(pymic_stream *s, pymic_kernel *k)
{
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = now();
        for (int i = 0; i < THROUGHPUT_INVOKES; i++)
            pymic_invoke(s, k, 0, NULL);
        pymic_stream_sync(s);
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    printf("B2 enqueue throughput: %d invokes + 1 sync in %.2f ms = %.2f M invokes/s "
           "(best of 3)\n",
           THROUGHPUT_INVOKES, best * 1e3, THROUGHPUT_INVOKES / best / 1e6);
}

/* Repetitions so each measurement moves ~512 MiB (at least 3). */
static int repetitions(size_t bytes)
{
    size_t reps = ((size_t)512 << 20) / bytes;
    return reps < 3 ? 3 : reps > 20000 ? 20000 : (int)reps;
}

typedef enum { H2D, D2H, D2D, HOST_MEMCPY } copy_kind;

static double time_copies(pymic_stream *s, copy_kind kind, void *dev_a, void *dev_b,
                          char *host_a, char *host_b, size_t bytes, int reps)
{
    double best = 1e30;
    /* Best of 3 batches: the machine is shared and noisy. */
    for (int batch = 0; batch < 3; batch++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) {
            switch (kind) {
            case H2D: pymic_memcpy_h2d(s, dev_a, 0, host_a, bytes); break;
            case D2H: pymic_memcpy_d2h(s, host_b, dev_a, 0, bytes); break;
            case D2D: pymic_memcpy_d2d(s, dev_b, 0, dev_a, 0, bytes); break;
            case HOST_MEMCPY: memcpy(host_b, host_a, bytes); break;
            }
        }
        if (kind != HOST_MEMCPY)
            pymic_stream_sync(s);
        double t = (now() - t0) / reps;
        if (t < best)
            best = t;
    }
    return best;
}

static void bench_copies(pymic_stream *s, size_t max_bytes, double latency_reference)
{
    char *host_a = malloc(max_bytes), *host_b = malloc(max_bytes);
    void *dev_a, *dev_b;
    MUST(pymic_mem_alloc(0, max_bytes, 0, &dev_a));
    MUST(pymic_mem_alloc(0, max_bytes, 0, &dev_b));
    /* Touch everything once so no measurement pays first-touch faults. */
    memset(host_a, 1, max_bytes);
    memset(host_b, 2, max_bytes);
    MUST(pymic_memcpy_h2d(s, dev_a, 0, host_a, max_bytes));
    MUST(pymic_memcpy_h2d(s, dev_b, 0, host_a, max_bytes));
    MUST(pymic_stream_sync(s));

    printf("B3 copy bandwidth, GB/s (copy + sync per batch; memcpy = host memcpy):\n");
    printf("   %10s %9s %9s %9s %9s   %s\n", "size", "h2d", "d2h", "d2d", "memcpy",
           "h2d/memcpy");
    for (size_t bytes = 4096; bytes <= max_bytes; bytes *= 4) {
        int reps = repetitions(bytes);
        double t[4];
        for (int kind = 0; kind < 4; kind++)
            t[kind] = time_copies(s, (copy_kind)kind, dev_a, dev_b, host_a, host_b, bytes, reps);
        char label[32];
        if (bytes >= (1u << 20))
            snprintf(label, sizeof label, "%zu MiB", bytes >> 20);
        else
            snprintf(label, sizeof label, "%zu KiB", bytes >> 10);
        printf("   %10s %9.2f %9.2f %9.2f %9.2f   %.2f\n", label, bytes / t[H2D] / 1e9,
               bytes / t[D2H] / 1e9, bytes / t[D2D] / 1e9, bytes / t[HOST_MEMCPY] / 1e9,
               t[HOST_MEMCPY] / t[H2D]);
    }

    /* One 4 KiB transfer + sync, round trip, against the B1 median. */
    enum { N = 10000 };
    static double samples[N];
    for (int i = 0; i < N; i++) {
        double t0 = now();
        pymic_memcpy_h2d(s, dev_a, 0, host_a, 4096);
        pymic_stream_sync(s);
        samples[i] = now() - t0;
    }
    qsort(samples, N, sizeof *samples, compare_doubles);
    printf("   4 KiB h2d + sync: median %.3f us (%.2fx the empty invoke+sync)\n",
           samples[N / 2] * 1e6, samples[N / 2] / latency_reference);

    MUST(pymic_mem_free(s, dev_a));
    MUST(pymic_mem_free(s, dev_b));
    MUST(pymic_stream_sync(s));
    free(host_a);
    free(host_b);
}

/* Allocate + copy in + free, 64 MiB, repeatedly: after the first round the
 * caching allocator hands back mapped pages. */
static void bench_bind(pymic_stream *s)
{
    size_t bytes = (size_t)64 << 20;
    char *host = malloc(bytes), *other = malloc(bytes);
    memset(host, 3, bytes);
    memset(other, 4, bytes);
    double first = 0, best = 1e30;
    for (int round = 0; round < 6; round++) {
        double t0 = now();
        void *dev;
        MUST(pymic_mem_alloc(0, bytes, 0, &dev));
        MUST(pymic_memcpy_h2d(s, dev, 0, host, bytes));
        MUST(pymic_stream_sync(s));
        double t = now() - t0;
        MUST(pymic_mem_free(s, dev));
        MUST(pymic_stream_sync(s));
        if (round == 0)
            first = t;
        else if (t < best)
            best = t;
    }
    double t0 = now();
    memcpy(other, host, bytes);
    double copy = now() - t0;
    printf("B4 alloc + h2d of 64 MiB: first %.2f GB/s, cached %.2f GB/s, memcpy %.2f GB/s "
           "(cached/memcpy %.2f)\n",
           bytes / first / 1e9, bytes / best / 1e9, bytes / copy / 1e9, copy / best);
    free(host);
    free(other);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s KERNEL_LIBRARY [max_copy_MiB]\n", argv[0]);
        return 2;
    }
    size_t max_mib = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 256;
    if (max_mib == 0)
        max_mib = 256;
    MUST(pymic_init());
    pymic_device_info info;
    MUST(pymic_device_get_info(0, &info));
    uint64_t spin;
    MUST(pymic_get_spin_ns(&spin));
    printf("pymic %d, device 0: %s, %d cores, spin window %llu ns\n", pymic_version(),
           info.name, info.ncores, (unsigned long long)spin);

    pymic_library *lib;
    pymic_kernel *k;
    pymic_stream *s;
    MUST(pymic_library_load(0, argv[1], &lib));
    MUST(pymic_kernel_find(lib, "empty_kernel", &k));
    MUST(pymic_stream_create(0, &s));

    double latency = bench_latency(s, k, strcmp(info.kind, "host") == 0);
    bench_device_sync(s, k, 0);
    /* A process device serves at most 255 streams. */
    bench_device_sync(s, k, strcmp(info.kind, "proc") == 0 ? 200 : 1000);
    bench_throughput(s, k);
    bench_copies(s, max_mib << 20, latency);
    bench_bind(s);

    MUST(pymic_stream_destroy(s));
    MUST(pymic_library_unload(lib));
    return 0;
}
