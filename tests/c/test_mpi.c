/*
 * test_mpi.c -- the MPI device (run with PYMIC_DEVICES="mpi;host" when
 * pymic was built with MPI): device 0 is a pymic-device rank spawned by
 * this process (MPI_Comm_spawn), device 1 a host device beside it.
 *
 * Device memory lives in the device process: copies in and out, a copy
 * on the device, kernels with pointer and scalar arguments, two streams
 * ordered by an event, a copy larger than PYMIC_MPI_CHUNK (the meson run
 * sets it small so copies travel in many messages), a library the device
 * cannot see at its path (sent as bytes), and failures -- a
 * missing kernel, a library missing on the device's side, a copy out of
 * range -- that leave the device usable.  The "mpi-proc" run drives a
 * PROCESS device on the device side (PYMIC_MPI_DEVICE=proc) under
 * PYMIC_CHECK=bounds: a kernel that segfaults there is the command's
 * failure (the MPI job goes on) and a reset brings the device back; a
 * kernel writing past its allocation is reported by the device's bounds
 * checks.  On the default local host device a crash ends the device
 * process: the MPI device is lost, saying so (this process watches a
 * device process on its own node), and a reset spawns a new one.  A trace
 * holds each command's span in the device process, on this clock.
 *
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pymic_mpi.h"

static const char *kernels_path;

static pymic_kernel *find(pymic_library *lib, const char *name)
{
    pymic_kernel *k = NULL;
    CHECK_OK(pymic_kernel_find(lib, name, &k));
    return k;
}

/* On stream `s` of `device`: a counter at `start` in device memory,
 * incremented by `lib`'s kernel, read back (the device is usable). */
static void check_increment(int device, pymic_stream *s, pymic_library *lib, int64_t start)
{
    void *counter;
    int64_t value = start;
    CHECK_OK(pymic_mem_alloc(device, sizeof value, 0, &counter));
    CHECK_OK(pymic_memcpy_h2d(s, counter, 0, &value, sizeof value));
    pymic_arg args[] = {{counter, 0}};
    CHECK_OK(pymic_invoke(s, find(lib, "increment"), 1, args));
    CHECK_OK(pymic_memcpy_d2h(s, &value, counter, 0, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(value == start + 1);
    CHECK_OK(pymic_mem_free(s, counter));
}

static void test_device_info(void)
{
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    /* A device process that ends while this one writes to it over TCP
     * makes the device lost; SIGPIPE must not end this process. */
    struct sigaction sigpipe;
    CHECK(sigaction(SIGPIPE, NULL, &sigpipe) == 0 && sigpipe.sa_handler == SIG_IGN);
    CHECK(strcmp(info.kind, "mpi") == 0);
    CHECK(info.host_addressable == 0);
    CHECK(info.memory_total > 0);
    CHECK_OK(pymic_device_get_info(1, &info));
    CHECK(strcmp(info.kind, "host") == 0);
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
}

/* h2d, a kernel with pointer and scalar arguments, d2d, d2h. */
static void test_copies_and_kernels(pymic_library *lib)
{
    enum { N = 1000 };
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    double *in = malloc(N * sizeof *in), *out = calloc(N, sizeof *out);
    for (int i = 0; i < N; i++)
        in[i] = i + 0.5;
    void *din, *dout, *dcopy;
    CHECK_OK(pymic_mem_alloc(0, N * sizeof(double), 0, &din));
    CHECK_OK(pymic_mem_alloc(0, N * sizeof(double), 0, &dout));
    CHECK_OK(pymic_mem_alloc(0, N * sizeof(double), 0, &dcopy));
    CHECK_OK(pymic_memcpy_h2d(s, din, 0, in, N * sizeof(double)));
    int64_t n = N;
    pymic_arg args[] = {{din, 0}, {dout, 0}, {&n, sizeof n}};
    CHECK_OK(pymic_invoke(s, find(lib, "double_it"), 3, args));
    CHECK_OK(pymic_memcpy_d2d(s, dcopy, 0, dout, 0, N * sizeof(double)));
    CHECK_OK(pymic_memcpy_d2h(s, out, dcopy, 0, N * sizeof(double)));
    CHECK_OK(pymic_stream_sync(s));
    bool doubled = true;
    for (int i = 0; i < N; i++)
        doubled = doubled && out[i] == 2 * in[i];
    CHECK(doubled);

    /* Two scalars of different types, and a copy at an offset. */
    double a = 1.25, result = 0;
    int64_t b = 40;
    pymic_arg sums[] = {{dout, 0}, {&a, sizeof a}, {&b, sizeof b}};
    CHECK_OK(pymic_invoke(s, find(lib, "add_scalars"), 3, sums));
    CHECK_OK(pymic_memcpy_d2h(s, &result, dout, 0, sizeof result));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(result == 41.25);

    /* Scalars reach the kernel at 16-byte boundaries, whichever way the
     * device side calls it (in the request they lie 8 bytes off one). */
    char c = 'p';
    long double x = 2.5L;
    double d = -1.0;
    int64_t where[4] = {-1, -1, -1, -1};
    pymic_arg aligned[] = {{dout, 0}, {&c, sizeof c}, {&x, sizeof x}, {&d, sizeof d}};
    CHECK_OK(pymic_invoke(s, find(lib, "scalar_alignment"), 4, aligned));
    CHECK_OK(pymic_memcpy_d2h(s, where, dout, 0, sizeof where));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(where[0] == 0 && where[1] == 0 && where[2] == 0 && where[3] == 1);

    CHECK_OK(pymic_mem_free(s, din));
    CHECK_OK(pymic_mem_free(s, dout));
    CHECK_OK(pymic_mem_free(s, dcopy));
    CHECK_OK(pymic_stream_destroy(s));
    free(in);
    free(out);
}

/* An event orders two streams: what the first wrote on the device, the
 * second reads after waiting for it. */
static void test_streams_and_events(pymic_library *lib)
{
    pymic_stream *first, *second;
    CHECK_OK(pymic_stream_create(0, &first));
    CHECK_OK(pymic_stream_create(0, &second));
    pymic_event *written;
    CHECK_OK(pymic_event_create(&written));
    void *counter;
    int64_t zero = 0, seen = -1;
    CHECK_OK(pymic_mem_alloc(0, sizeof(int64_t), 0, &counter));
    CHECK_OK(pymic_memcpy_h2d(first, counter, 0, &zero, sizeof zero));
    pymic_arg args[] = {{counter, 0}};
    for (int i = 0; i < 10; i++)
        CHECK_OK(pymic_invoke(first, find(lib, "increment"), 1, args));
    CHECK_OK(pymic_event_record(written, first));
    CHECK_OK(pymic_stream_wait_event(second, written));
    CHECK_OK(pymic_memcpy_d2h(second, &seen, counter, 0, sizeof seen));
    CHECK_OK(pymic_stream_sync(second));
    CHECK(seen == 10);
    CHECK_OK(pymic_event_destroy(written));
    CHECK_OK(pymic_mem_free(second, counter));
    CHECK_OK(pymic_stream_destroy(first));
    CHECK_OK(pymic_stream_destroy(second));
}

/* A function of the MPI backend (`name`, in the plugin the registry
 * loaded from PYMIC_BACKEND_PATH). */
static void *plugin_function(const char *name)
{
    void *function = NULL;
    const char *dirs = getenv("PYMIC_BACKEND_PATH");
    char path[4096];
    for (const char *at = dirs; !function && at && *at;) {
        size_t len = strcspn(at, ":");
        snprintf(path, sizeof path, "%.*s/libpymic_mpi.so", (int)len, at);
        void *plugin = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (plugin) {
            function = dlsym(plugin, name);
            dlclose(plugin);
        }
        at += len + (at[len] == ':');
    }
    CHECK(function != NULL);
    return function;
}

/* A counter of the MPI backend. */
static uint64_t plugin_counter(const char *name)
{
    uint64_t (*counter)(void) = (uint64_t(*)(void))(uintptr_t)plugin_function(name);
    return counter ? counter() : 0;
}

/* Event waits the MPI backend handed to the device so far. */
static uint64_t waits_on_device(void)
{
    return plugin_counter("pymic_mpi_waits_on_device");
}

/* A kernel whose invokes have only ever run in flight (the worker's: it
 * sends them without waiting for their answers) is known short all the
 * same, from the time its answers took: so a wait that may run only quick
 * commands -- every slice of a Python sync -- runs the next ones itself,
 * one round trip each, instead of leaving each to the worker and polling
 * for its answer (a Python invoke + sync took 61 µs that way instead of
 * 1.6).  The worker may still take some of them (whoever claims first
 * runs), but not all: before the fix every one went in flight. */
static void test_kernels_run_in_flight_are_known_short(pymic_library *lib)
{
    enum { ROUNDS = 50 };
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    pymic_kernel *empty = find(lib, "empty_kernel");
    for (int i = 0; i < 4; i++)
        CHECK_OK(pymic_invoke(s, empty, 0, NULL));
    CHECK_OK(pymic_stream_wait_seq_runs(s, pymic_stream_last_enqueued(s), UINT64_MAX,
                                        PYMIC_WAIT_RUNS_NOTHING));
    uint64_t before = plugin_counter("pymic_mpi_invokes_in_flight");
    for (int round = 0; round < ROUNDS; round++) {
        CHECK_OK(pymic_invoke(s, empty, 0, NULL));
        CHECK_OK(pymic_stream_wait_seq_runs(s, pymic_stream_last_enqueued(s), UINT64_MAX,
                                            PYMIC_WAIT_RUNS_QUICK));
    }
    CHECK(plugin_counter("pymic_mpi_invokes_in_flight") - before < ROUNDS);
    CHECK_OK(pymic_stream_destroy(s));
}

/* pymic_mpi_round_trip (pymic_mpi.h): a one-word ping-pong with the
 * device's process on a tag of its own; bad arguments are refused before
 * any message, and the device's streams work on after it. */
static void test_round_trip(pymic_library *lib)
{
    int (*round_trip)(int, uint64_t, double *, char *, size_t) =
        (int (*)(int, uint64_t, double *, char *, size_t))(uintptr_t)plugin_function(
            "pymic_mpi_round_trip");
    if (!round_trip)
        return;
    char why[256];
    double seconds = 0;
    CHECK_OK(round_trip(0, 2000, &seconds, why, sizeof why));
    CHECK(seconds > 0 && seconds < 0.1);
    CHECK(round_trip(0, 0, &seconds, why, sizeof why) == PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(why, "1 to 100000000 words") != NULL);
    CHECK(round_trip(0, 10, NULL, why, sizeof why) == PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(round_trip(7, 10, &seconds, why, sizeof why) == PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(why, "not an MPI device this process has opened") != NULL);
    CHECK(round_trip(0, 0, &seconds, NULL, 0) == PYMIC_ERR_INVALID_ARGUMENT);
    /* The device goes on: copies and a kernel after the echo. */
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    check_increment(0, s, lib, 41);
    CHECK_OK(pymic_stream_destroy(s));
}

/* The time between two events recorded on an MPI device is the device's:
 * when it reached each, not when this process took each answer.  The
 * answers are held back here while a 100 ms kernel runs between the two
 * records and well after: taken at once, both would say the same time.
 * (Timed by the host, the start event's answer taken late -- a busy
 * host -- made the span shorter than the kernel it brackets: seen in the
 * suite run beside another.) */
static void test_event_time_is_the_devices(pymic_library *lib)
{
    void (*hold)(int) = (void (*)(int))(uintptr_t)plugin_function("pymic_mpi_hold_answers");
    if (!hold)
        return;
    pymic_stream *s;
    pymic_event *start, *end;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_event_create(&start));
    CHECK_OK(pymic_event_create(&end));
    int64_t ms = 100;
    pymic_arg args[] = {{&ms, sizeof ms}};
    hold(1);
    CHECK_OK(pymic_event_record(start, s));
    CHECK_OK(pymic_invoke(s, find(lib, "sleep_ms"), 1, args));
    CHECK_OK(pymic_event_record(end, s));
    struct timespec later = {0, 300 * 1000000L}; /* all three answered by now */
    nanosleep(&later, NULL);
    hold(0);
    CHECK_OK(pymic_event_sync(end));
    double seconds = 0;
    CHECK_OK(pymic_event_elapsed(start, end, &seconds));
    CHECK(seconds >= 0.099); /* the kernel between them slept 100 ms */
    CHECK_OK(pymic_event_destroy(start));
    CHECK_OK(pymic_event_destroy(end));
    CHECK_OK(pymic_stream_destroy(s));
}

/* pymic_mpi_exchange (pymic_mpi.h): messages of any size each way with
 * the device's process; what comes back is the first bytes of what went,
 * zeros past them; each exchange is timed; bad arguments are refused
 * before any message, and the device's streams work on after it. */
static void test_exchange(pymic_library *lib)
{
    typedef int exchange_fn(int, uint64_t, const void *, uint64_t, void *, uint64_t, double *,
                            char *, size_t);
    exchange_fn *exchange = (exchange_fn *)(uintptr_t)plugin_function("pymic_mpi_exchange");
    if (!exchange)
        return;
    enum { BIG = (3 << 20) + 5 };
    unsigned char *out = malloc(BIG), *in = malloc(BIG);
    CHECK(out && in);
    for (size_t i = 0; i < BIG; i++)
        out[i] = (unsigned char)(i * 7 + 1);
    char why[256];
    double seconds[3] = {0, 0, 0};
    /* Many bytes out, a word back (what an h2d stands on). */
    CHECK_OK(exchange(0, 3, out, BIG, in, 8, seconds, why, sizeof why));
    CHECK(memcmp(in, out, 8) == 0);
    CHECK(seconds[0] > 0 && seconds[1] > 0 && seconds[2] > 0);
    /* A word out, many bytes back (a d2h): the word, then zeros. */
    memset(in, 0xff, BIG);
    CHECK_OK(exchange(0, 2, out, 8, in, BIG, seconds, why, sizeof why));
    CHECK(memcmp(in, out, 8) == 0);
    size_t nonzero = 0;
    for (size_t i = 8; i < BIG; i++)
        nonzero += in[i] != 0;
    CHECK(nonzero == 0);
    /* The same size both ways: every byte comes back. */
    memset(in, 0, BIG);
    CHECK_OK(exchange(0, 1, out, BIG, in, BIG, seconds, why, sizeof why));
    CHECK(memcmp(in, out, BIG) == 0);
    /* Refused, with the reason. */
    CHECK(exchange(0, 0, out, 8, in, 8, seconds, why, sizeof why) ==
          PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(why, "1 to 100000000 exchanges") != NULL);
    CHECK(exchange(0, 1, out, 0, in, 8, seconds, why, sizeof why) ==
          PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(exchange(0, 1, out, 8, in, (uint64_t)1 << 31, seconds, why, sizeof why) ==
          PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(exchange(0, 1, NULL, 8, in, 8, seconds, why, sizeof why) ==
          PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(exchange(0, 1, out, 8, NULL, 8, seconds, why, sizeof why) ==
          PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(exchange(0, 1, out, 8, in, 8, NULL, why, sizeof why) == PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(exchange(7, 1, out, 8, in, 8, seconds, why, sizeof why) ==
          PYMIC_ERR_INVALID_ARGUMENT);
    CHECK(strstr(why, "not an MPI device this process has opened") != NULL);
    free(out);
    free(in);
    /* The device goes on: copies and a kernel after the exchanges. */
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    check_increment(0, s, lib, 43);
    CHECK_OK(pymic_stream_destroy(s));
}

/* How much the backend's `counter` grew while this thread waited for a
 * 300 ms kernel on a stream of its own, its wait running what `runs`
 * allows. */
static uint64_t counter_over_a_long_kernel(pymic_library *lib, const char *counter, int runs)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    int64_t ms = 300;
    pymic_arg args[] = {{&ms, sizeof ms}};
    uint64_t before = plugin_counter(counter);
    CHECK_OK(pymic_invoke(s, find(lib, "sleep_ms"), 1, args));
    CHECK_OK(pymic_stream_wait_seq_runs(s, pymic_stream_last_enqueued(s), UINT64_MAX, runs));
    uint64_t grown = plugin_counter(counter) - before;
    CHECK_OK(pymic_stream_destroy(s));
    return grown;
}

/* A long wait sleeps between its polls for longer the longer it has
 * waited (progress.c): at most 1/32 of the time waited, 50 us to 1 ms.
 * Its sleeps can be no shorter than asked, so a 300 ms kernel's sync
 * sleeps at most ~370 times (24 at 50 us, 75 growing, 268 at 1 ms).
 * Each wake takes a core from the kernel's OpenMP team or the host's
 * computation; with a fixed 50 us pause (100 us with Linux's timer
 * slack) the same wait slept about 3000 times. */
static void test_a_long_wait_wakes_seldom(pymic_library *lib)
{
    uint64_t pauses =
        counter_over_a_long_kernel(lib, "pymic_mpi_wait_pauses", PYMIC_WAIT_RUNS_ANY);
    CHECK(pauses > 0); /* it did sleep: a 300 ms wait outlasts the yields */
    CHECK(pauses < 500);
}

/* A sync that waits for a kernel the worker sent (in flight) polls for
 * its spin window, then sleeps while the worker polls, pacing itself: one
 * poller per stream.  Before, the syncing thread polled until the end,
 * yielding its core between polls whenever the worker held the stream's
 * poll lock -- about a hundred thousand polls in 300 ms, each a wake
 * that took a core from the kernel when the device shares this node.
 * (The wait runs nothing itself: the worker takes the kernel and sends
 * it.) */
static void test_a_sync_leaves_the_polls_to_the_worker(pymic_library *lib)
{
    CHECK(counter_over_a_long_kernel(lib, "pymic_mpi_polls_on_this_thread",
                                     PYMIC_WAIT_RUNS_NOTHING) < 20000);
}

/* Until the waiting stream's worker has handed its wait to the device
 * (which it does without waiting for the recording stream's commands:
 * those are held at a gate until the caller opens it). */
static void until_waits_on_device(uint64_t target)
{
    /* (The deadline only keeps a broken run from hanging: a wait handed
     * to the device shows at once.) */
    uint64_t tries = 0;
    while (waits_on_device() < target && check_failed == 0 && ++tries < 100000000u)
        sched_yield();
    CHECK(waits_on_device() >= target);
}

static int64_t read_on(pymic_stream *s, void *d);
static void *device_int(int device, pymic_stream *s, int64_t value);

/* The start of a test with a writer held at a gate on the device and a
 * reader waiting for its event: three streams (the opener opens the
 * gate), the event, and three zeroed ints in device memory. */
static void start_gated(pymic_stream **writer, pymic_stream **reader, pymic_stream **opener,
                        pymic_event **written, void **started, void **gate, void **counter)
{
    CHECK_OK(pymic_stream_create(0, writer));
    CHECK_OK(pymic_stream_create(0, reader));
    CHECK_OK(pymic_stream_create(0, opener));
    CHECK_OK(pymic_event_create(written));
    *started = device_int(0, *opener, 0);
    *gate = device_int(0, *opener, 0);
    *counter = device_int(0, *opener, 0);
}

/* The end of a test with a writer and a reader held at a gate: its four
 * blocks freed on `opener`, the three streams ended. */
static void end_gated(pymic_stream *opener, pymic_stream *writer, pymic_stream *reader,
                      void *const blocks[4])
{
    for (int i = 0; i < 4; i++)
        CHECK_OK(pymic_mem_free(opener, blocks[i]));
    CHECK_OK(pymic_stream_destroy(writer));
    CHECK_OK(pymic_stream_destroy(reader));
    CHECK_OK(pymic_stream_destroy(opener));
}

/* `count` int64s in device memory of `device`, the first set to `value`
 * on `s` (a log for the append kernel: its length, then its entries). */
static void *device_ints(int device, pymic_stream *s, int64_t value, size_t count)
{
    void *d;
    CHECK_OK(pymic_mem_alloc(device, count * sizeof value, 0, &d));
    CHECK_OK(pymic_memcpy_h2d(s, d, 0, &value, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    return d;
}

static void *device_int(int device, pymic_stream *s, int64_t value)
{
    return device_ints(device, s, value, 1);
}

/* A wait between two streams of the MPI device is resolved on the device:
 * the writer is held at a gate on the device, and the reader's worker
 * hands its wait to the device all the same (on the host it would wait
 * for the writer's answers) and sends what follows; the reader's kernel
 * still runs only after the writer's, and reads what it wrote.  Twice,
 * re-recording the event, the second time with the reader's wait sent
 * before the writer's record (the device waits for a point it has not
 * seen yet). */
static void test_wait_resolved_on_device(pymic_library *lib)
{
    pymic_stream *writer, *reader, *opener;
    pymic_event *written;
    void *started, *gate, *counter;
    start_gated(&writer, &reader, &opener, &written, &started, &gate, &counter);
    void *log = device_ints(0, opener, 0, 3);
    int64_t zero = 0, one = 1;
    pymic_arg held[] = {{started, 0}, {gate, 0}}, count[] = {{counter, 0}};
    pymic_arg logged[] = {{log, 0}, {counter, 0}}; /* appends the counter's value */
    for (int round = 1; round <= 2; round++) {
        uint64_t handed = waits_on_device();
        CHECK_OK(pymic_memcpy_h2d(opener, started, 0, &zero, sizeof zero));
        CHECK_OK(pymic_memcpy_h2d(opener, gate, 0, &zero, sizeof zero));
        CHECK_OK(pymic_stream_sync(opener));
        CHECK_OK(pymic_invoke(writer, find(lib, "announce_then_wait"), 2, held));
        for (int i = 0; i < 3; i++)
            CHECK_OK(pymic_invoke(writer, find(lib, "increment"), 1, count));
        CHECK_OK(pymic_event_record(written, writer));
        CHECK_OK(pymic_stream_wait_event(reader, written));
        CHECK_OK(pymic_invoke(reader, find(lib, "append"), 2, logged));
        until_waits_on_device(handed + 1);
        CHECK(pymic_stream_query(reader) == 0); /* held by the writer's gate */
        CHECK(pymic_event_query(written) == 0);
        while (read_on(opener, started) != 1)
            ;
        CHECK_OK(pymic_memcpy_h2d(opener, gate, 0, &one, sizeof one));
        CHECK_OK(pymic_stream_sync(reader));
        /* Passed by the reader: the event is done here too. */
        CHECK(pymic_event_query(written) == 1);
        CHECK_OK(pymic_stream_sync(writer));
        int64_t seen[3];
        CHECK_OK(pymic_memcpy_d2h(opener, seen, log, 0, sizeof seen));
        CHECK_OK(pymic_stream_sync(opener));
        CHECK(seen[0] == round);         /* entries appended so far */
        CHECK(seen[round] == 3 * round); /* what the writer had counted */
    }
    CHECK(waits_on_device() >= 2);
    CHECK_OK(pymic_event_destroy(written));
    void *blocks[] = {started, gate, counter, log};
    end_gated(opener, writer, reader, blocks);
}

/* Many waits on records that come and go: every one resolved, in order
 * (the device forgets the points the host no longer holds). */
static void test_many_waits_on_device(pymic_library *lib)
{
    enum { ROUNDS = 200 };
    pymic_stream *a, *b;
    CHECK_OK(pymic_stream_create(0, &a));
    CHECK_OK(pymic_stream_create(0, &b));
    void *counter = device_int(0, a, 0), *log = device_ints(0, a, 0, 2);
    pymic_arg count[] = {{counter, 0}}, logged[] = {{log, 0}, {counter, 0}};
    for (int i = 0; i < ROUNDS; i++) {
        pymic_event *e;
        CHECK_OK(pymic_event_create(&e));
        CHECK_OK(pymic_invoke(a, find(lib, "increment"), 1, count));
        CHECK_OK(pymic_event_record(e, a));
        CHECK_OK(pymic_stream_wait_event(b, e));
        CHECK_OK(pymic_event_destroy(e));
        if (i == ROUNDS - 1) /* the counter as the last wait let it be */
            CHECK_OK(pymic_invoke(b, find(lib, "append"), 2, logged));
    }
    CHECK_OK(pymic_stream_sync(b));
    int64_t seen[2];
    CHECK_OK(pymic_memcpy_d2h(a, seen, log, 0, sizeof seen));
    CHECK_OK(pymic_stream_sync(a));
    CHECK(seen[0] == 1 && seen[1] == ROUNDS);
    CHECK_OK(pymic_mem_free(a, counter));
    CHECK_OK(pymic_mem_free(a, log));
    CHECK_OK(pymic_stream_destroy(a));
    CHECK_OK(pymic_stream_destroy(b));
}

/* PYMIC_CHECK=bounds on a remote proc device: the writer's kernel fails
 * on the device before its record, with the reader's wait already on the
 * device.  The reader fails with the writer's failure, worded as on the
 * host, and its kernel sent after the wait does not run (the device skips
 * it); what it sends after the report runs. */
static void test_wait_failure_on_device(pymic_library *lib)
{
    pymic_stream *writer, *reader, *opener;
    pymic_event *written;
    void *started, *gate, *counter, *out;
    start_gated(&writer, &reader, &opener, &written, &started, &gate, &counter);
    CHECK_OK(pymic_mem_alloc(0, 4 * sizeof(double), 0, &out));
    int64_t one = 1, n = 5;
    pymic_arg held[] = {{started, 0}, {gate, 0}}, count[] = {{counter, 0}};
    pymic_arg past[] = {{out, 0}, {&n, sizeof n}};
    uint64_t handed = waits_on_device();
    CHECK_OK(pymic_invoke(writer, find(lib, "announce_then_wait"), 2, held));
    CHECK_OK(pymic_invoke(writer, find(lib, "write_past"), 2, past));
    CHECK_OK(pymic_event_record(written, writer));
    CHECK_OK(pymic_stream_wait_event(reader, written));
    CHECK_OK(pymic_invoke(reader, find(lib, "increment"), 1, count));
    until_waits_on_device(handed + 1);
    while (read_on(opener, started) != 1)
        ;
    CHECK_OK(pymic_memcpy_h2d(opener, gate, 0, &one, sizeof one));
    CHECK(pymic_stream_sync(reader) != PYMIC_OK);
    CHECK_MESSAGE("write_past");
    CHECK_MESSAGE("this stream waited for an event recorded after that on device 0");
    CHECK(read_on(opener, counter) == 0); /* skipped on the device */
    CHECK(pymic_stream_sync(writer) != PYMIC_OK);
    CHECK_MESSAGE("write_past");
    CHECK_OK(pymic_invoke(reader, find(lib, "increment"), 1, count));
    CHECK_OK(pymic_stream_sync(reader));
    CHECK(read_on(opener, counter) == 1); /* after the report: runs */
    CHECK_OK(pymic_event_destroy(written));
    void *blocks[] = {started, gate, counter, out};
    end_gated(opener, writer, reader, blocks);
}

/* A wait on an event of another device (the host device beside it) is
 * resolved through the host: it holds the MPI stream until the host
 * device's kernel has run, and the device is not asked to wait. */
static void test_wait_on_another_device(pymic_library *lib)
{
    pymic_library *here;
    pymic_stream *on_host, *opener, *on_mpi;
    CHECK_OK(pymic_library_load(1, kernels_path, &here));
    CHECK_OK(pymic_stream_create(1, &on_host));
    CHECK_OK(pymic_stream_create(1, &opener));
    CHECK_OK(pymic_stream_create(0, &on_mpi));
    pymic_event *done_here;
    CHECK_OK(pymic_event_create(&done_here));
    void *started = device_int(1, opener, 0), *gate = device_int(1, opener, 0);
    void *counter = device_int(0, on_mpi, 0);
    int64_t one = 1;
    pymic_arg held[] = {{started, 0}, {gate, 0}}, count[] = {{counter, 0}};
    uint64_t handed = waits_on_device();
    CHECK_OK(pymic_invoke(on_host, find(here, "announce_then_wait"), 2, held));
    CHECK_OK(pymic_event_record(done_here, on_host));
    CHECK_OK(pymic_stream_wait_event(on_mpi, done_here));
    CHECK_OK(pymic_invoke(on_mpi, find(lib, "increment"), 1, count));
    while (read_on(opener, started) != 1)
        ;
    CHECK(pymic_stream_query(on_mpi) == 0); /* held by the host device's gate */
    CHECK_OK(pymic_memcpy_h2d(opener, gate, 0, &one, sizeof one));
    CHECK_OK(pymic_stream_sync(on_mpi));
    CHECK(read_on(on_mpi, counter) == 1);
    CHECK(waits_on_device() == handed);
    CHECK_OK(pymic_event_destroy(done_here));
    CHECK_OK(pymic_mem_free(opener, started));
    CHECK_OK(pymic_mem_free(opener, gate));
    CHECK_OK(pymic_mem_free(on_mpi, counter));
    CHECK_OK(pymic_stream_destroy(on_host));
    CHECK_OK(pymic_stream_destroy(opener));
    CHECK_OK(pymic_stream_destroy(on_mpi));
    CHECK_OK(pymic_library_unload(here));
}

/* A wait left pending on the device: the writer's record cannot reach
 * the device, since the writer's worker waits first (on the host) for an
 * event of the host device beside it, held at a gate; the reader's wait
 * for that record is on the device, and a kernel of the reader's after
 * it.  pending_end opens the gate. */
typedef struct pending_wait {
    pymic_library *here;
    pymic_stream *writer, *reader, *held_here, *opener_here;
    pymic_event *written, *released;
    void *started, *gate; /* the host device's */
    void *counter;        /* the MPI device's */
} pending_wait;

static void pending_begin(pending_wait *p, pymic_library *lib)
{
    CHECK_OK(pymic_library_load(1, kernels_path, &p->here));
    CHECK_OK(pymic_stream_create(1, &p->held_here));
    CHECK_OK(pymic_stream_create(1, &p->opener_here));
    CHECK_OK(pymic_stream_create(0, &p->writer));
    CHECK_OK(pymic_stream_create(0, &p->reader));
    CHECK_OK(pymic_event_create(&p->written));
    CHECK_OK(pymic_event_create(&p->released));
    p->started = device_int(1, p->opener_here, 0);
    p->gate = device_int(1, p->opener_here, 0);
    p->counter = device_int(0, p->reader, 0);
    pymic_arg held[] = {{p->started, 0}, {p->gate, 0}}, count[] = {{p->counter, 0}};
    uint64_t handed = waits_on_device();
    CHECK_OK(pymic_invoke(p->held_here, find(p->here, "announce_then_wait"), 2, held));
    CHECK_OK(pymic_event_record(p->released, p->held_here));
    CHECK_OK(pymic_stream_wait_event(p->writer, p->released)); /* on the host */
    CHECK_OK(pymic_event_record(p->written, p->writer));
    CHECK_OK(pymic_stream_wait_event(p->reader, p->written)); /* on the device */
    CHECK_OK(pymic_invoke(p->reader, find(lib, "increment"), 1, count));
    until_waits_on_device(handed + 1);
    CHECK(pymic_stream_query(p->reader) == 0);
}

static void pending_end(pending_wait *p)
{
    int64_t one = 1;
    CHECK_OK(pymic_memcpy_h2d(p->opener_here, p->gate, 0, &one, sizeof one));
    CHECK_OK(pymic_stream_sync(p->held_here));
    CHECK_OK(pymic_mem_free(p->opener_here, p->started));
    CHECK_OK(pymic_mem_free(p->opener_here, p->gate));
    CHECK_OK(pymic_event_destroy(p->written));
    CHECK_OK(pymic_event_destroy(p->released));
    CHECK_OK(pymic_stream_destroy(p->held_here));
    CHECK_OK(pymic_stream_destroy(p->opener_here));
    CHECK_OK(pymic_library_unload(p->here));
}

/* A reset while a wait is pending on the device: the wait gives up (the
 * reader's sync returns; a failure of a command the reset caught is
 * forgiven), the writer's record still reaches the device later, and the
 * device works on: streams ordered by an event on the device again. */
static void test_reset_with_a_wait_pending(pymic_library *lib)
{
    pending_wait p;
    pending_begin(&p, lib);
    CHECK_OK(pymic_device_reset(0));
    int status = pymic_stream_sync(p.reader);
    CHECK(status == PYMIC_OK || strstr(pymic_last_error(), "reset") != NULL);
    pending_end(&p);
    CHECK_OK(pymic_stream_sync(p.writer));
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
    CHECK_OK(pymic_mem_free(p.reader, p.counter));
    CHECK_OK(pymic_stream_destroy(p.writer));
    CHECK_OK(pymic_stream_destroy(p.reader));
    pymic_library *again;
    CHECK_OK(pymic_library_load(0, kernels_path, &again));
    test_wait_resolved_on_device(again);
    CHECK_OK(pymic_library_unload(again));
}

/* A traced command on the MPI device has its span in the device process
 * too, translated to this process's clock: inside the command's own span
 * here (within the stated error of the translation), one after the other
 * in the stream's order.  A host device's commands have none. */
static void test_device_side_trace(pymic_library *lib)
{
    enum { N = 40000 }; /* several PYMIC_MPI_CHUNKs each way */
    pymic_stream *remote, *local;
    CHECK_OK(pymic_stream_create(0, &remote));
    CHECK_OK(pymic_stream_create(1, &local));
    pymic_library *here;
    CHECK_OK(pymic_library_load(1, kernels_path, &here));
    int64_t *values = calloc(N, sizeof *values);
    void *d, *h;
    CHECK_OK(pymic_mem_alloc(0, N * sizeof *values, 0, &d));
    CHECK_OK(pymic_mem_alloc(1, sizeof *values, 0, &h));
    CHECK_OK(pymic_trace_start(0));
    pymic_arg args[] = {{d, 0}}, local_args[] = {{h, 0}};
    CHECK_OK(pymic_memcpy_h2d(remote, d, 0, values, N * sizeof *values));
    CHECK_OK(pymic_invoke(remote, find(lib, "increment"), 1, args));
    CHECK_OK(pymic_invoke(remote, find(lib, "increment"), 1, args));
    CHECK_OK(pymic_memcpy_d2h(remote, values, d, 0, N * sizeof *values));
    /* Small copies travel inline (MPIDEV_INLINE_BYTES): their spans too. */
    CHECK_OK(pymic_memcpy_h2d(remote, d, sizeof *values, &values[N - 1], sizeof *values));
    CHECK_OK(pymic_memcpy_d2h(remote, &values[1], d, 0, sizeof *values));
    CHECK_OK(pymic_memcpy_h2d(local, h, 0, values, sizeof *values));
    CHECK_OK(pymic_invoke(local, find(here, "increment"), 1, local_args));
    CHECK_OK(pymic_stream_sync(remote));
    CHECK_OK(pymic_stream_sync(local));
    CHECK_OK(pymic_trace_stop());
    CHECK(values[0] == 2 && values[1] == 2 && values[N - 1] == 0);
    pymic_trace_command *commands;
    size_t n;
    CHECK_OK(pymic_trace_read(&commands, &n, NULL, NULL, NULL));
    int remote_spans = 0, local_commands = 0;
    uint64_t last_end = 0, last_seq = 0;
    for (size_t i = 0; i < n; i++) {
        const pymic_trace_command *c = &commands[i];
        if (c->device == 1) {
            local_commands++;
            CHECK(c->device_start_ns == 0 && c->device_end_ns == 0);
            continue;
        }
        CHECK(c->device == 0 && c->start_ns && c->device_start_ns);
        uint64_t error = c->device_clock_error_ns;
        CHECK(c->device_start_ns <= c->device_end_ns);
        CHECK(c->device_start_ns + error >= c->start_ns);
        CHECK(c->device_end_ns <= c->end_ns + error);
        CHECK(c->seq > last_seq && c->device_start_ns >= last_end);
        last_seq = c->seq;
        last_end = c->device_end_ns;
        remote_spans++;
    }
    CHECK(remote_spans == 6 && local_commands == 2);
    pymic_trace_free(commands);
    CHECK_OK(pymic_mem_free(remote, d));
    CHECK_OK(pymic_mem_free(local, h));
    CHECK_OK(pymic_stream_destroy(remote));
    CHECK_OK(pymic_stream_destroy(local));
    CHECK_OK(pymic_library_unload(here));
    free(values);
}

/* More bytes than PYMIC_MPI_CHUNK, and not a multiple of it; again and
 * again, so that with the chunk size learnt (the "mpi-learnt-chunks" run)
 * both ways of tuning.h carry it each way, the trials taking turns. */
static void test_large_copy(void)
{
    const size_t bytes = ((size_t)3 << 20) + 13;
    unsigned char *in = malloc(bytes), *out = malloc(bytes);
    pymic_stream *s;
    void *d;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_mem_alloc(0, bytes, 0, &d));
    for (int round = 0; round < PYMIC_MPI_LEARNING_COPIES + 2; round++) {
        for (size_t i = 0; i < bytes; i++)
            in[i] = (unsigned char)(i * 7 + i / 4096 + (size_t)round * 31);
        memset(out, 0, bytes);
        CHECK_OK(pymic_memcpy_h2d(s, d, 0, in, bytes));
        CHECK_OK(pymic_memcpy_d2h(s, out, d, 0, bytes));
        CHECK_OK(pymic_stream_sync(s));
        CHECK(memcmp(in, out, bytes) == 0);
    }
    CHECK_OK(pymic_mem_free(s, d));
    CHECK_OK(pymic_stream_destroy(s));
    free(in);
    free(out);
}

/* Copies around the size that still travels inside its request or answer
 * (4 KiB, protocol.h) and just past it, each checked bytewise, into the
 * middle of an allocation. */
static void test_copies_around_the_inline_size(void)
{
    const size_t sizes[] = {1, 4095, 4096, 4097, 8192 + 3};
    pymic_stream *s;
    void *d;
    unsigned char in[8200], out[8200];
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_mem_alloc(0, 3 * sizeof in, 0, &d));
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 13 + k);
        memset(out, 0, sizeof out);
        CHECK_OK(pymic_memcpy_h2d(s, d, sizeof in + k, in, n));
        CHECK_OK(pymic_memcpy_d2h(s, out, d, sizeof in + k, n));
        CHECK_OK(pymic_stream_sync(s));
        CHECK(memcmp(in, out, n) == 0);
        CHECK(out[n] == 0); /* not one byte more */
    }
    CHECK_OK(pymic_mem_free(s, d));
    CHECK_OK(pymic_stream_destroy(s));
}

/* A library the device cannot see at its path (here: a file already
 * deleted, as if the device's node had no shared file system) travels as
 * its bytes and runs there all the same. */
static void test_library_without_a_shared_path(void)
{
    char copy[] = "/tmp/pymic-test-mpi-XXXXXX";
    int out = mkstemp(copy);
    FILE *from = fopen(kernels_path, "rb");
    CHECK(out >= 0 && from != NULL);
    if (out < 0 || !from)
        return;
    char buffer[65536];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, from)) > 0)
        CHECK(write(out, buffer, n) == (ssize_t)n);
    fclose(from);
    unlink(copy);
    pymic_library *lib;
    CHECK_OK(pymic_library_load_fd(0, out, "deleted copy", &lib));
    close(out);
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    check_increment(0, s, lib, 1);
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_library_unload(lib));
}

/* Mistakes are errors that leave the device usable. */
static void test_failures(pymic_library *lib)
{
    pymic_kernel *k;
    CHECK_STATUS(pymic_kernel_find(lib, "no_such_kernel", &k), PYMIC_ERR_KERNEL_NOT_FOUND);
    CHECK_MESSAGE("no_such_kernel");
    pymic_library *missing;
    CHECK_STATUS(pymic_library_load(0, "/nonexistent/libnothing.so", &missing),
                 PYMIC_ERR_LIBRARY);
    pymic_stream *s;
    void *d;
    double host[4] = {0};
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_mem_alloc(0, sizeof host, 0, &d));
    CHECK_STATUS(pymic_memcpy_h2d(s, d, 8, host, sizeof host), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_OK(pymic_memcpy_h2d(s, d, 0, host, sizeof host));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_mem_free(s, d));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
}

/* PYMIC_MPI_DEVICE=proc: a crash on the device's process device is the
 * command's failure; the device is lost until a reset. */
static void test_remote_crash_and_reset(void)
{
    pymic_library *lib;
    pymic_stream *s;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_invoke(s, find(lib, "crash_segv"), 0, NULL));
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("crash_segv");
    CHECK(pymic_device_lost(0, NULL, 0) == 1);
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_device_reset(0));
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
    /* Usable again: a fresh library, a kernel, a copy back. */
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    CHECK_OK(pymic_stream_create(0, &s));
    check_increment(0, s, lib, 41);
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_library_unload(lib));
}

/* On the default local host device a crashing kernel takes the device
 * process down: the MPI device is lost, saying so, and this process and
 * its other devices go on. */
static void test_remote_process_ends(void)
{
    pymic_library *lib;
    pymic_stream *s;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    CHECK_OK(pymic_stream_create(0, &s));
    /* With a wait pending on the device: its stream's sync does not hang
     * either, nor does the writer's, whose record comes after the loss. */
    pending_wait p;
    pending_begin(&p, lib);
    CHECK_OK(pymic_invoke(s, find(lib, "crash_segv"), 0, NULL));
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("MPI device process");
    CHECK_MESSAGE("crash_segv");
    CHECK(pymic_device_lost(0, NULL, 0) == 1);
    CHECK_STATUS(pymic_stream_sync(p.reader), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("event wait");
    pending_end(&p);
    CHECK_STATUS(pymic_stream_sync(p.writer), PYMIC_ERR_DEVICE_LOST);
    CHECK_OK(pymic_stream_destroy(p.writer));
    CHECK_OK(pymic_stream_destroy(p.reader));
    CHECK_OK(pymic_stream_destroy(s));
    /* The host device beside it is untouched. */
    pymic_library *here;
    pymic_stream *h;
    CHECK_OK(pymic_library_load(1, kernels_path, &here));
    CHECK_OK(pymic_stream_create(1, &h));
    check_increment(1, h, here, 1);
    CHECK_OK(pymic_stream_destroy(h));
}

/* After test_remote_process_ends: a reset spawns a new device process
 * (twice here).
 * A stream made before the crash works again, the library is loaded
 * afresh, and memory of the ended process stays reserved until freed: the
 * new process's allocations (which its heap would place at the same
 * addresses) never coincide with it.  (With address space randomisation
 * the new heap usually lies elsewhere anyway; the mpi-no-aslr run, under
 * setarch -R, makes the addresses repeat, and fails without the guard.) */
static void test_reset_respawns_the_device(void)
{
    pymic_library *lib;
    pymic_stream *kept, *s;
    void *before[4];
    /* The device test_remote_process_ends lost comes back ... */
    CHECK(pymic_device_lost(0, NULL, 0) == 1);
    CHECK_OK(pymic_device_reset(0));
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
    /* ... and so it does after its process ends again. */
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    CHECK_OK(pymic_stream_create(0, &kept));
    CHECK_OK(pymic_stream_create(0, &s));
    for (int i = 0; i < 4; i++)
        CHECK_OK(pymic_mem_alloc(0, 4096, 0, &before[i]));
    CHECK_OK(pymic_invoke(s, find(lib, "crash_segv"), 0, NULL));
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_DEVICE_LOST);
    CHECK(pymic_device_lost(0, NULL, 0) == 1);
    CHECK_OK(pymic_device_reset(0));
    CHECK(pymic_device_lost(0, NULL, 0) == 0);
    /* The old library went with the old process. */
    pymic_kernel *stale = NULL;
    CHECK(pymic_kernel_find(lib, "increment", &stale) != PYMIC_OK);
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    void *after[4];
    for (int i = 0; i < 4; i++) {
        CHECK_OK(pymic_mem_alloc(0, 4096, 0, &after[i]));
        for (int j = 0; j < 4; j++)
            CHECK((char *)after[i] + 4096 <= (char *)before[j] ||
                  (char *)before[j] + 4096 <= (char *)after[i]);
    }
    for (int i = 0; i < 4; i++)
        CHECK_OK(pymic_mem_free(kept, before[i]));
    int64_t value = 41;
    pymic_arg args[] = {{after[0], 0}};
    CHECK_OK(pymic_memcpy_h2d(kept, after[0], 0, &value, sizeof value));
    CHECK_OK(pymic_invoke(kept, find(lib, "increment"), 1, args));
    CHECK_OK(pymic_memcpy_d2h(kept, &value, after[0], 0, sizeof value));
    CHECK_OK(pymic_stream_sync(kept));
    CHECK(value == 42);
    /* The stream that saw the crash runs too. */
    CHECK_OK(pymic_invoke(s, find(lib, "increment"), 1, args));
    CHECK_OK(pymic_memcpy_d2h(s, &value, after[0], 0, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(value == 43);
    for (int i = 0; i < 4; i++)
        CHECK_OK(pymic_mem_free(kept, after[i]));
    CHECK_OK(pymic_stream_sync(kept));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_stream_destroy(kept));
    CHECK_OK(pymic_library_unload(lib));
}

/* The device process ends in the middle of a copy with chunks in flight
 * (a kernel on another stream kills it once the copy's second chunk has
 * landed, long before its last): the copy fails, saying the device
 * process ended, instead of waiting for chunks that never come, and so
 * does the other stream's command; this process and its other devices go
 * on. */
static void test_device_ends_during_a_copy(void)
{
    const size_t bytes = (size_t)64 << 20;
    unsigned char *in = malloc(bytes);
    memset(in, 1, bytes);
    pymic_library *lib;
    pymic_stream *copier, *killer;
    void *d;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    CHECK_OK(pymic_stream_create(0, &copier));
    CHECK_OK(pymic_stream_create(0, &killer));
    CHECK_OK(pymic_mem_alloc(0, bytes, 0, &d));
    unsigned char zeros[1] = {0};
    CHECK_OK(pymic_memcpy_h2d(copier, d, 65536, zeros, 1)); /* memory not yet touched */
    CHECK_OK(pymic_stream_sync(copier));
    int64_t second_chunk = 65536; /* PYMIC_MPI_CHUNK of the meson run */
    pymic_arg args[] = {{d, 0}, {&second_chunk, sizeof second_chunk}};
    CHECK_OK(pymic_invoke(killer, find(lib, "kill_when_reached"), 2, args));
    CHECK_OK(pymic_memcpy_h2d(copier, d, 0, in, bytes));
    CHECK_STATUS(pymic_stream_sync(copier), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE("MPI device process");
    CHECK_MESSAGE("h2d copy");
    CHECK_STATUS(pymic_stream_sync(killer), PYMIC_ERR_DEVICE_LOST);
    CHECK(pymic_device_lost(0, NULL, 0) == 1);
    CHECK_OK(pymic_stream_destroy(copier));
    CHECK_OK(pymic_stream_destroy(killer));
    free(in);
    /* The host device beside it is untouched. */
    pymic_stream *h;
    void *here;
    int64_t value = 5, back = 0;
    CHECK_OK(pymic_stream_create(1, &h));
    CHECK_OK(pymic_mem_alloc(1, sizeof value, 0, &here));
    CHECK_OK(pymic_memcpy_h2d(h, here, 0, &value, sizeof value));
    CHECK_OK(pymic_memcpy_d2h(h, &back, here, 0, sizeof back));
    CHECK_OK(pymic_stream_sync(h));
    CHECK(back == 5);
    CHECK_OK(pymic_mem_free(h, here));
    CHECK_OK(pymic_stream_destroy(h));
}

/* Value of a device int64 at `d`, read on stream `s`. */
static int64_t read_on(pymic_stream *s, void *d)
{
    int64_t value = -1;
    CHECK_OK(pymic_memcpy_d2h(s, &value, d, 0, sizeof value));
    CHECK_OK(pymic_stream_sync(s));
    return value;
}

/* Invokes the stream's worker submitted while the device was busy with
 * the first (a kernel held at a gate): they are in flight at once, run in
 * their order, and, where one fails (PYMIC_CHECK=bounds: write_past),
 * those after it that were sent before the failure was seen do not run
 * (protocol.h, MPIDEV_SKIPPED), as the engine skips what follows a failed
 * command until the failure is reported; what comes after the report
 * runs. */
static void test_invokes_in_flight(pymic_library *lib, bool with_failure)
{
    enum { LOGGED = 40 };
    pymic_stream *s, *watcher;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_stream_create(0, &watcher));
    void *started, *gate, *counter, *out, *log;
    int64_t zero = 0, one = 1, n = 5;
    CHECK_OK(pymic_mem_alloc(0, sizeof zero, 0, &started));
    CHECK_OK(pymic_mem_alloc(0, sizeof zero, 0, &gate));
    CHECK_OK(pymic_mem_alloc(0, sizeof zero, 0, &counter));
    CHECK_OK(pymic_mem_alloc(0, 4 * sizeof(double), 0, &out));
    CHECK_OK(pymic_mem_alloc(0, (LOGGED + 1) * sizeof(int64_t), 0, &log));
    CHECK_OK(pymic_memcpy_h2d(s, started, 0, &zero, sizeof zero));
    CHECK_OK(pymic_memcpy_h2d(s, gate, 0, &zero, sizeof zero));
    CHECK_OK(pymic_memcpy_h2d(s, counter, 0, &zero, sizeof zero));
    CHECK_OK(pymic_memcpy_h2d(s, log, 0, &zero, sizeof zero));
    CHECK_OK(pymic_stream_sync(s));
    pymic_arg held[] = {{started, 0}, {gate, 0}}, count[] = {{counter, 0}};
    pymic_arg past[] = {{out, 0}, {&n, sizeof n}};
    CHECK_OK(pymic_invoke(s, find(lib, "announce_then_wait"), 2, held));
    CHECK_OK(pymic_invoke(s, find(lib, "increment"), 1, count));
    if (with_failure)
        CHECK_OK(pymic_invoke(s, find(lib, "write_past"), 2, past));
    for (int64_t i = 0; i < LOGGED; i++) {
        pymic_arg logged[] = {{log, 0}, {&i, sizeof i}};
        CHECK_OK(pymic_invoke(s, find(lib, "append"), 2, logged));
    }
    CHECK_OK(pymic_invoke(s, find(lib, "increment"), 1, count));
    /* Nobody syncs `s`: its worker submits; open the gate once the first
     * kernel runs on the device. */
    while (read_on(watcher, started) != 1)
        ;
    CHECK_OK(pymic_memcpy_h2d(watcher, gate, 0, &one, sizeof one));
    CHECK_OK(pymic_stream_sync(watcher));
    if (with_failure) {
        CHECK(pymic_stream_sync(s) != PYMIC_OK);
        CHECK_MESSAGE("write_past");
        CHECK(read_on(watcher, counter) == 1); /* nothing after the failure ran */
        CHECK(read_on(watcher, log) == 0);
        CHECK_OK(pymic_invoke(s, find(lib, "increment"), 1, count));
        CHECK_OK(pymic_stream_sync(s));
        CHECK(read_on(watcher, counter) == 2); /* after the report: runs */
    } else {
        CHECK_OK(pymic_stream_sync(s));
        CHECK(read_on(watcher, counter) == 2);
        int64_t logged[LOGGED + 1];
        CHECK_OK(pymic_memcpy_d2h(watcher, logged, log, 0, sizeof logged));
        CHECK_OK(pymic_stream_sync(watcher));
        CHECK(logged[0] == LOGGED);
        bool in_order = true;
        for (int64_t i = 0; i < LOGGED; i++)
            in_order = in_order && logged[1 + i] == i;
        CHECK(in_order);
    }
    void *blocks[] = {started, gate, counter, out, log};
    for (int i = 0; i < 5; i++)
        CHECK_OK(pymic_mem_free(s, blocks[i]));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_stream_destroy(watcher));
}

/* PYMIC_CHECK=bounds: the device's engine checks its own canaries. */
static void test_remote_bounds(pymic_library *lib)
{
    pymic_stream *s;
    void *d;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_mem_alloc(0, 4 * sizeof(double), 0, &d));
    int64_t n = 5;
    pymic_arg args[] = {{d, 0}, {&n, sizeof n}};
    CHECK_OK(pymic_invoke(s, find(lib, "write_past"), 2, args));
    CHECK(pymic_stream_sync(s) != PYMIC_OK);
    CHECK_MESSAGE("write_past");
    CHECK_MESSAGE("past the end");
    CHECK_OK(pymic_mem_free(s, d));
    CHECK_OK(pymic_stream_destroy(s));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_mpi KERNEL_LIBRARY\n");
        return 2;
    }
    kernels_path = argv[1];
    /* A run of its own: it ends the device process. */
    if (strcmp(argv[argc - 1], "device-ends-during-a-copy") == 0) {
        test_device_ends_during_a_copy();
        return check_finish();
    }
    const char *local = getenv("PYMIC_MPI_DEVICE");
    bool remote_proc = local && strcmp(local, "proc") == 0;
    test_device_info();
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    test_copies_and_kernels(lib);
    test_streams_and_events(lib);
    test_device_side_trace(lib);
    test_large_copy();
    test_copies_around_the_inline_size();
    test_library_without_a_shared_path();
    test_failures(lib);
    test_invokes_in_flight(lib, false);
    test_kernels_run_in_flight_are_known_short(lib);
    test_round_trip(lib);
    test_exchange(lib);
    test_event_time_is_the_devices(lib);
    test_a_long_wait_wakes_seldom(lib);
    test_a_sync_leaves_the_polls_to_the_worker(lib);
    test_wait_resolved_on_device(lib);
    test_many_waits_on_device(lib);
    test_wait_on_another_device(lib);
    if (remote_proc) {
        test_remote_bounds(lib);
        test_invokes_in_flight(lib, true);
        test_wait_failure_on_device(lib);
        test_reset_with_a_wait_pending(lib);
        CHECK_OK(pymic_library_unload(lib)); /* (the reset made it stale) */
        test_remote_crash_and_reset();
    } else {
        test_reset_with_a_wait_pending(lib);
        CHECK_OK(pymic_library_unload(lib));
        /* Last: they end the device process (a reset starts a new one),
         * over shared memory and over TCP alike. */
        test_remote_process_ends();
        test_reset_respawns_the_device();
    }
    return check_finish();
}
