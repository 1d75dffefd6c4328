/*
 * roundtrip_pymic.c -- B11's pymic side in C: empty-kernel invoke + stream
 * sync on device 0 (PYMIC_DEVICES=proc makes it a process device), timed
 * one by one like the other round-trip programs.
 *
 * usage: roundtrip_pymic KERNEL_LIBRARY KERNEL_NAME
 */
#include "pymic.h"
#include "roundtrip.h"

static void must(int status, const char *what)
{
    if (status != PYMIC_OK) {
        fprintf(stderr, "roundtrip_pymic: %s failed: %s\n", what, pymic_last_error());
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s KERNEL_LIBRARY KERNEL_NAME\n", argv[0]);
        return 2;
    }
    pymic_library *library;
    pymic_kernel *kernel;
    pymic_stream *stream;
    must(pymic_init(), "pymic_init");
    must(pymic_library_load(0, argv[1], &library), "pymic_library_load");
    must(pymic_kernel_find(library, argv[2], &kernel), "pymic_kernel_find");
    must(pymic_stream_create(0, &stream), "pymic_stream_create");
    static double seconds[ROUNDTRIP_ITERS];
    for (int i = 0; i < ROUNDTRIP_WARMUP + ROUNDTRIP_ITERS; i++) {
        double start = roundtrip_now();
        must(pymic_invoke(stream, kernel, 0, NULL), "pymic_invoke");
        must(pymic_stream_sync(stream), "pymic_stream_sync");
        if (i >= ROUNDTRIP_WARMUP)
            seconds[i - ROUNDTRIP_WARMUP] = roundtrip_now() - start;
    }
    must(pymic_stream_destroy(stream), "pymic_stream_destroy");
    must(pymic_library_unload(library), "pymic_library_unload");
    roundtrip_report(seconds, ROUNDTRIP_ITERS);
    return 0;
}
