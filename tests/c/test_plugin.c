/*
 * test_plugin.c -- the backend seam, through a real plugin backend:
 * libpymic_loopback.so (plugins/loopback.c), whose device memory is not
 * addressable at the device addresses the engine hands out.
 *
 * Run with PYMIC_DEVICES="loopback*2;host;looppoll" and PYMIC_BACKEND_PATH naming
 * the directory the plugins were built in.  The registry's refusals run
 * first, each in a forked child (the engine reads its environment once),
 * before this process starts any thread.
 */
#include "check.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* The plugin's device addresses carry this bit (loopback.c). */
#define LOOPBACK_TAG ((uintptr_t)1 << 62)

static const char *kernels_path;

/* In a child: PYMIC_DEVICES=devices must be refused at initialisation
 * with a message that mentions each of `texts` (NULL-terminated). */
static void expect_refused(const char *devices, const char *const *texts)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        check_failed = 0;
        setenv("PYMIC_DEVICES", devices, 1);
        CHECK_STATUS(pymic_init(), PYMIC_ERR_CONFIG);
        for (const char *const *t = texts; *t; t++) {
            CHECK_MESSAGE(*t);
            if (!strstr(pymic_last_error(), *t))
                fprintf(stderr, "  PYMIC_DEVICES=%s: \"%s\" not in: %s\n", devices, *t,
                        pymic_last_error());
        }
        /* Still refused, with the same reason, on the next call. */
        CHECK_STATUS(pymic_device_count(&(int){0}), PYMIC_ERR_CONFIG);
        _exit(check_failed);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
          WEXITSTATUS(status) == 0);
}

static void test_registry_refusals(void)
{
    static const char *const unknown[] = {"libpymic_nosuch.so", "PYMIC_BACKEND_PATH",
                                          "unknown device kind \"nosuch\"", NULL};
    expect_refused("host;nosuch*2", unknown);
    static const char *const old_abi[] = {"libpymic_oldabi.so", "another version", NULL};
    expect_refused("oldabi", old_abi);
    /* The loopback backend takes no CPU list and has no parse_spec. */
    static const char *const no_spec[] = {"\"loopback\", \"loopback*N\"", NULL};
    expect_refused("loopback:0-1", no_spec);
    static const char *const bad_name[] = {"expected a device kind", NULL};
    expect_refused("Loopback", bad_name);
    /* Canaries are the backend's business: one that has no way to check
     * is refused, not read behind its back. */
    setenv("PYMIC_CHECK", "bounds", 1);
    static const char *const no_bounds[] = {
        "bounds checks are not supported on device kind \"loopback\" (device 1)", NULL};
    expect_refused("host;loopback", no_bounds);
    unsetenv("PYMIC_CHECK");
}

/* Copies and a kernel on a loopback device: the data goes through the
 * plugin's region, at device addresses this process cannot read. */
static void test_loopback_device(void)
{
    int count = 0;
    CHECK_OK(pymic_device_count(&count));
    CHECK(count == 4);
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(strcmp(info.kind, "loopback") == 0);
    CHECK(strncmp(info.name, "loopback:", 9) == 0);
    CHECK(info.host_addressable == 0);
    CHECK_OK(pymic_device_get_info(2, &info));
    CHECK(strcmp(info.kind, "host") == 0 && info.host_addressable == 1);

    pymic_stream *stream = NULL;
    CHECK_OK(pymic_stream_create(0, &stream));
    pymic_library *library = NULL;
    CHECK_OK(pymic_library_load(0, kernels_path, &library));
    pymic_kernel *double_it = NULL;
    CHECK_OK(pymic_kernel_find(library, "double_it", &double_it));
    enum { N = 1000 };
    double in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i * 0.5;
    void *d_in = NULL, *d_out = NULL;
    CHECK_OK(pymic_mem_alloc(0, sizeof in, 0, &d_in));
    CHECK_OK(pymic_mem_alloc(0, sizeof out, 0, &d_out));
    CHECK(((uintptr_t)d_in & LOOPBACK_TAG) && ((uintptr_t)d_out & LOOPBACK_TAG));
    CHECK_OK(pymic_memcpy_h2d(stream, d_in, 0, in, sizeof in));
    int64_t n = N;
    pymic_arg args[3] = {{d_in, 0}, {d_out, 0}, {&n, sizeof n}};
    CHECK_OK(pymic_invoke(stream, double_it, 3, args));
    memset(out, 0, sizeof out);
    CHECK_OK(pymic_memcpy_d2h(stream, out, d_out, 0, sizeof out));
    CHECK_OK(pymic_stream_sync(stream));
    int wrong = 0;
    for (int i = 0; i < N; i++)
        wrong += out[i] != 2 * in[i];
    CHECK(wrong == 0);

    /* Device to device, inside the device, overlapping: shift by one. */
    CHECK_OK(pymic_memcpy_d2d(stream, d_in, sizeof(double), d_in, 0, sizeof in - sizeof(double)));
    CHECK_OK(pymic_memcpy_d2h(stream, out, d_in, 0, sizeof out));
    CHECK_OK(pymic_stream_sync(stream));
    wrong = out[0] != in[0];
    for (int i = 1; i < N; i++)
        wrong += out[i] != in[i - 1];
    CHECK(wrong == 0);

    /* Argument kinds: a pointer into the middle of an allocation is
     * device memory (translated by the backend), a host address is
     * passed on unchanged (this plugin's kernels run in this process),
     * scalars are read from the command. */
    pymic_kernel *add_scalars = NULL, *append = NULL;
    CHECK_OK(pymic_kernel_find(library, "add_scalars", &add_scalars));
    CHECK_OK(pymic_kernel_find(library, "append", &append));
    double host_out = 0, a = 1.5;
    int64_t b = 40;
    pymic_arg scalar_args[3] = {{&host_out, 0}, {&a, sizeof a}, {&b, sizeof b}};
    CHECK_OK(pymic_invoke(stream, add_scalars, 3, scalar_args));
    int64_t log[4] = {0, 0, 0, 0}, value = 7;
    void *d_log = NULL;
    CHECK_OK(pymic_mem_alloc(0, sizeof log + 64, 0, &d_log));
    CHECK_OK(pymic_memcpy_h2d(stream, d_log, 64, log, sizeof log));
    pymic_arg log_args[2] = {{(char *)d_log + 64, 0}, {&value, sizeof value}};
    CHECK_OK(pymic_invoke(stream, append, 2, log_args));
    CHECK_OK(pymic_memcpy_d2h(stream, log, d_log, 64, sizeof log));
    CHECK_OK(pymic_stream_sync(stream));
    CHECK(host_out == 41.5);
    CHECK(log[0] == 1 && log[1] == 7);
    CHECK_OK(pymic_mem_free(stream, d_log));
    /* Kernel handles are the backend's: this one numbers its kernels,
     * and the core never called the number. */
    CHECK((uintptr_t)pymic_kernel_address(double_it) >= 1 &&
          (uintptr_t)pymic_kernel_address(double_it) < 256);

    /* The core still checks ranges on a device it cannot read. */
    CHECK_STATUS(pymic_memcpy_h2d(stream, d_in, 8, in, sizeof in), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_OK(pymic_mem_free(stream, d_in));
    CHECK_OK(pymic_mem_free(stream, d_out));
    CHECK_OK(pymic_stream_sync(stream));
    CHECK_OK(pymic_library_unload(library));
    CHECK_OK(pymic_stream_destroy(stream));
}

/* The limit of a device whose backend knows its capacity is that
 * capacity (the plugin's region), not a share of the host's memory. */
static void test_capacity(void)
{
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(1, &info));
    CHECK(info.memory_total == (size_t)32 << 20);
    CHECK_OK(pymic_device_set_memory_limit(1, 4096));
    CHECK_OK(pymic_device_get_info(1, &info));
    CHECK(info.memory_total == 4096);
    CHECK_OK(pymic_device_set_memory_limit(1, 0)); /* back to the default */
    CHECK_OK(pymic_device_get_info(1, &info));
    CHECK(info.memory_total == (size_t)32 << 20);
    CHECK_OK(pymic_device_get_info(2, &info));
    CHECK(info.memory_total != (size_t)32 << 20);
}

/* Two loopback devices hand out equal addresses: every check and every
 * use list is the device's own, and each device's data stays its own. */
static void test_equal_addresses(void)
{
    pymic_stream *s0 = NULL, *s1 = NULL;
    CHECK_OK(pymic_stream_create(0, &s0));
    CHECK_OK(pymic_stream_create(1, &s1));
    void *a0 = NULL, *a1 = NULL;
    CHECK_OK(pymic_mem_alloc(0, 4096, 0, &a0));
    CHECK_OK(pymic_mem_alloc(1, 1024, 0, &a1));
    CHECK(a0 != NULL && a0 == a1);
    int64_t v0[4] = {1, 2, 3, 4}, v1[4] = {10, 20, 30, 40}, got[4];
    CHECK_OK(pymic_memcpy_h2d(s0, a0, 0, v0, sizeof v0));
    CHECK_OK(pymic_memcpy_h2d(s1, a1, 0, v1, sizeof v1));
    /* Each device's own allocation bounds the range. */
    CHECK_OK(pymic_memcpy_h2d(s0, a0, 2048, v0, sizeof v0));
    CHECK_STATUS(pymic_memcpy_h2d(s1, a1, 2048, v1, sizeof v1), PYMIC_ERR_OUT_OF_RANGE);
    void *base = NULL;
    size_t nbytes = 0;
    CHECK_OK(pymic_mem_query(0, a0, &base, &nbytes));
    CHECK(base == a0 && nbytes == 4096);
    CHECK_OK(pymic_mem_query(1, a1, &base, &nbytes));
    CHECK(base == a1 && nbytes == 1024);

    /* A kernel on device 1 uses a1: freeing a0 on device 0 meanwhile
     * must neither wait for it nor touch device 1's allocation. */
    pymic_library *library = NULL;
    CHECK_OK(pymic_library_load(1, kernels_path, &library));
    pymic_kernel *increment = NULL;
    CHECK_OK(pymic_kernel_find(library, "increment", &increment));
    pymic_arg arg = {a1, 0};
    CHECK_OK(pymic_invoke(s1, increment, 1, &arg));
    CHECK_OK(pymic_mem_free(s0, a0));
    CHECK_OK(pymic_stream_sync(s0));
    CHECK_OK(pymic_mem_query(1, a1, &base, &nbytes));
    CHECK_STATUS(pymic_mem_query(0, a0, &base, &nbytes), PYMIC_ERR_WRONG_DEVICE);
    CHECK_MESSAGE("belongs to device 1");
    CHECK_OK(pymic_memcpy_d2h(s1, got, a1, 0, sizeof got));
    CHECK_OK(pymic_stream_sync(s1));
    CHECK(got[0] == 11 && got[1] == 20 && got[3] == 40);
    CHECK_OK(pymic_mem_free(s1, a1));
    CHECK_OK(pymic_stream_sync(s1));
    CHECK_STATUS(pymic_mem_free(s1, a1), PYMIC_ERR_INVALID_POINTER);
    CHECK_OK(pymic_library_unload(library));
    CHECK_OK(pymic_stream_destroy(s0));
    CHECK_OK(pymic_stream_destroy(s1));
}

/* ---------------------------------------------- completion out of order */

/* Kernels of the test library on `device`. */
typedef struct kernels {
    pymic_library *library;
    pymic_kernel *wait_for_gate, *announce_then_wait, *append, *increment, *crash;
} kernels;

static void load_kernels(int device, kernels *k)
{
    CHECK_OK(pymic_library_load(device, kernels_path, &k->library));
    CHECK_OK(pymic_kernel_find(k->library, "wait_for_gate", &k->wait_for_gate));
    CHECK_OK(pymic_kernel_find(k->library, "announce_then_wait", &k->announce_then_wait));
    CHECK_OK(pymic_kernel_find(k->library, "append", &k->append));
    CHECK_OK(pymic_kernel_find(k->library, "increment", &k->increment));
    CHECK_OK(pymic_kernel_find(k->library, "crash_abort", &k->crash));
}

/* The loopback backend leaves every copy and invoke in flight and its
 * progress thread completes them, newest first.  While a kernel holds the
 * progress thread, the worker has submitted what follows, and nothing
 * after the held kernel counts as completed; once released, every command
 * completes, in order, with its effects in order. */
static void test_in_flight(int device)
{
    pymic_stream *s = NULL;
    CHECK_OK(pymic_stream_create(device, &s));
    kernels k;
    load_kernels(device, &k);
    enum { N = 40 };
    int64_t log[N + 1] = {0};
    void *d_log = NULL;
    CHECK_OK(pymic_mem_alloc(device, sizeof log, 0, &d_log));
    CHECK_OK(pymic_memcpy_h2d(s, d_log, 0, log, sizeof log));
    /* Host addresses: this backend's kernels run in this process. */
    _Atomic int64_t started = 0, gate = 0;
    pymic_arg gate_args[2] = {{(void *)&started, 0}, {(void *)&gate, 0}};
    CHECK_OK(pymic_invoke(s, k.announce_then_wait, 2, gate_args));
    uint64_t held = pymic_stream_last_enqueued(s);
    for (int64_t i = 0; i < N; i++) {
        pymic_arg args[2] = {{d_log, 0}, {&i, sizeof i}};
        CHECK_OK(pymic_invoke(s, k.append, 2, args));
    }
    CHECK_OK(pymic_memcpy_d2h(s, log, d_log, 0, sizeof log));
    uint64_t last = pymic_stream_last_enqueued(s);
    /* Refused at submission, done at once, while all before it are in
     * flight: it must not count as completed before them. */
    CHECK_OK(pymic_invoke(s, k.crash, 0, NULL));
    while (atomic_load(&started) == 0)
        sched_yield(); /* the progress thread is in the held kernel */
    CHECK(pymic_stream_query(s) == 0);
    CHECK(pymic_stream_completed(s) < held);
    CHECK_STATUS(pymic_stream_wait_seq_timeout(s, held, 0), PYMIC_ERR_TIMEOUT);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_wait_seq(s, last));
    CHECK(pymic_stream_completed(s) >= last);
    int wrong = log[0] != N;
    for (int64_t i = 0; i < N; i++)
        wrong += log[1 + i] != i;
    CHECK(wrong == 0);
    /* The failure, reported by the sync that covers it, once. */
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_SYSTEM);
    CHECK_MESSAGE("refuses kernel 'crash_abort'");
    CHECK_OK(pymic_stream_sync(s));

    /* FREE is a fence: the memory goes back once the commands before it
     * have completed, not when they were submitted. */
    pymic_device_info info;
    size_t used_before;
    CHECK_OK(pymic_device_get_info(device, &info));
    used_before = info.memory_used;
    atomic_store(&started, 0);
    atomic_store(&gate, 0);
    CHECK_OK(pymic_invoke(s, k.announce_then_wait, 2, gate_args));
    pymic_arg use = {d_log, 0};
    CHECK_OK(pymic_invoke(s, k.increment, 1, &use));
    CHECK_OK(pymic_mem_free(s, d_log));
    while (atomic_load(&started) == 0)
        sched_yield();
    CHECK_OK(pymic_device_get_info(device, &info));
    CHECK(info.memory_used == used_before); /* still held by the kernel */
    atomic_store(&gate, 1);
    CHECK_OK(pymic_device_sync(device));
    CHECK_OK(pymic_device_get_info(device, &info));
    CHECK(info.memory_used == used_before - sizeof log);
    CHECK(pymic_stream_completed(s) == pymic_stream_last_enqueued(s));
    CHECK_OK(pymic_library_unload(k.library));
    CHECK_OK(pymic_stream_destroy(s));
}

/* An event recorded on a loopback stream after a held kernel: a host
 * stream that waits for it runs its kernel only after the loopback
 * kernels before the record have completed. */
static void test_event_across_backends(void)
{
    pymic_stream *lb = NULL, *host = NULL;
    CHECK_OK(pymic_stream_create(0, &lb));
    CHECK_OK(pymic_stream_create(2, &host));
    kernels kl, kh;
    load_kernels(0, &kl);
    load_kernels(2, &kh);
    _Atomic int64_t started = 0, gate = 0;
    int64_t counter = 0;
    int64_t log[3] = {0, 0, 0};
    pymic_arg gate_args[2] = {{(void *)&started, 0}, {(void *)&gate, 0}};
    CHECK_OK(pymic_invoke(lb, kl.announce_then_wait, 2, gate_args));
    pymic_arg count = {&counter, 0};
    CHECK_OK(pymic_invoke(lb, kl.increment, 1, &count));
    pymic_event *event = NULL;
    CHECK_OK(pymic_event_create(&event));
    CHECK_OK(pymic_event_record(event, lb));
    CHECK_OK(pymic_stream_wait_event(host, event));
    /* append(log, &counter): logs the counter as the host kernel sees it. */
    pymic_arg append_args[2] = {{log, 0}, {&counter, 0}};
    CHECK_OK(pymic_invoke(host, kh.append, 2, append_args));
    while (atomic_load(&started) == 0)
        sched_yield();
    CHECK(pymic_event_query(event) == 0);
    CHECK(pymic_stream_query(host) == 0);
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(host));
    CHECK(log[0] == 1 && log[1] == 1);
    CHECK(pymic_event_query(event) == 1);
    CHECK_OK(pymic_event_destroy(event));
    CHECK_OK(pymic_library_unload(kl.library));
    CHECK_OK(pymic_library_unload(kh.library));
    CHECK_OK(pymic_stream_destroy(lb));
    CHECK_OK(pymic_stream_destroy(host));
}

/* A backend that completes commands only when polled: syncs, device syncs
 * and frees still finish (waiters, and the worker, poll). */
static void test_polled(void)
{
    int device = 3;
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(device, &info));
    CHECK(strcmp(info.kind, "looppoll") == 0);
    test_in_flight(device);
    pymic_stream *s = NULL;
    CHECK_OK(pymic_stream_create(device, &s));
    kernels k;
    load_kernels(device, &k);
    void *counter = NULL;
    CHECK_OK(pymic_mem_alloc(device, sizeof(int64_t), 0, &counter));
    int64_t value = 0;
    CHECK_OK(pymic_memcpy_h2d(s, counter, 0, &value, sizeof value));
    for (int i = 0; i < 1000; i++) {
        pymic_arg arg = {counter, 0};
        CHECK_OK(pymic_invoke(s, k.increment, 1, &arg));
    }
    CHECK_OK(pymic_memcpy_d2h(s, &value, counter, 0, sizeof value));
    CHECK_OK(pymic_mem_free(s, counter));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(value == 1000);
    CHECK_OK(pymic_library_unload(k.library));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_device_sync(device));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s test_kernels.so\n", argv[0]);
        return 2;
    }
    kernels_path = argv[1];
    test_registry_refusals();
    test_loopback_device();
    test_capacity();
    test_equal_addresses();
    test_in_flight(0);
    test_event_across_backends();
    test_polled();
    return check_finish();
}
