/*
 * test_bounds.c -- PYMIC_CHECK=bounds (run with it set, PYMIC_DEVICES
 * "host;proc", or "host" where the process device cannot run).
 *
 * On every device a kernel writing just past the end, or just before the
 * start, of an allocation is reported at the next sync as
 * PYMIC_ERR_OUT_OF_RANGE naming the kernel and the allocation, once, and
 * the device goes on.  On a process device a write far past the end hits
 * the guard page: the device is lost with a message naming the
 * allocation, and a reset brings it back with its guard pages.  An
 * allocation freed while a kernel that overruns it is still queued (as an
 * ndarray argument's staged copy is) is checked the same way.  A
 * failure also fails what depends on it, on any pair of devices.
 *
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *kernels_path;

static void write_past(pymic_stream *s, pymic_kernel *k, void *from, int64_t n)
{
    pymic_arg args[2] = {{from, 0}, {&n, sizeof n}};
    CHECK_OK(pymic_invoke(s, k, 2, args));
}

static void test_canaries(int device)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(device, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(device, kernels_path, &lib));
    pymic_kernel *k;
    CHECK_OK(pymic_kernel_find(lib, "write_past", &k));
    void *buffer, *other;
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &buffer));
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &other));
    char name[64];
    snprintf(name, sizeof name, "allocation %p (800 bytes)", buffer);

    write_past(s, k, buffer, 100); /* exactly the buffer: fine */
    CHECK_OK(pymic_stream_sync(s));
    write_past(s, k, buffer, 101); /* one double past the end */
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("kernel 'write_past'");
    CHECK_MESSAGE("past the end of");
    CHECK_MESSAGE(name);
    CHECK_OK(pymic_stream_sync(s)); /* reported once */
    write_past(s, k, (double *)buffer - 1, 1); /* just before the start */
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("before the start of");
    CHECK_MESSAGE(name);
    /* The device goes on. */
    write_past(s, k, other, 100);
    CHECK_OK(pymic_stream_sync(s));
    CHECK(pymic_device_lost(device, NULL, 0) == 0);
    CHECK_OK(pymic_mem_free(s, buffer));
    CHECK_OK(pymic_mem_free(s, other));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(s));
}

/* Hold stream `s` at a gate in device memory until open_gate. */
static void *close_gate(pymic_stream *s, pymic_library *lib)
{
    int device = pymic_stream_device(s);
    void *gate;
    static const int64_t closed = 0;
    CHECK_OK(pymic_mem_alloc(device, sizeof closed, 0, &gate));
    CHECK_OK(pymic_memcpy_h2d(s, gate, 0, &closed, sizeof closed));
    CHECK_OK(pymic_stream_sync(s)); /* closed before anybody can open it */
    pymic_kernel *wait;
    CHECK_OK(pymic_kernel_find(lib, "wait_for_gate", &wait));
    pymic_arg arg = {gate, 0};
    CHECK_OK(pymic_invoke(s, wait, 1, &arg));
    return gate;
}

/* Open it from this thread: device memory is this process's memory on a
 * host device, and mapped at the same address here on a process device.
 * (Not by a kernel: the check after it could see, and be blamed for, the
 * overrun of the kernel it lets run.) */
static void open_gate(void *gate)
{
    atomic_store((_Atomic int64_t *)gate, 1);
}

/* The free is called before the overrunning kernel runs (the gate holds
 * it): the allocation has left the table, but its memory has not gone
 * back, and the check after the kernel still sees it. */
static void test_freed_while_queued(int device, int64_t past)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(device, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(device, kernels_path, &lib));
    pymic_kernel *k;
    CHECK_OK(pymic_kernel_find(lib, "write_past", &k));
    void *buffer;
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &buffer));
    char name[64];
    snprintf(name, sizeof name, "allocation %p (800 bytes)", buffer);
    void *gate = close_gate(s, lib);
    write_past(s, k, buffer, 100 + past);
    CHECK_OK(pymic_mem_free(s, buffer));
    open_gate(gate);
    int status = pymic_stream_sync(s);
    if (past == 1) {
        CHECK_STATUS(status, PYMIC_ERR_OUT_OF_RANGE);
        CHECK_MESSAGE("kernel 'write_past'");
        CHECK_MESSAGE("past the end of");
        CHECK_MESSAGE(name);
        CHECK_OK(pymic_stream_sync(s)); /* reported once */
    } else { /* into the guard page of a process device */
        CHECK_STATUS(status, PYMIC_ERR_DEVICE_LOST);
        CHECK_MESSAGE("killed by SIGSEGV writing past the end of");
        CHECK_MESSAGE(name);
        CHECK_OK(pymic_device_reset(device));
    }
    CHECK_OK(pymic_mem_free(s, gate));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(s));
}

static void test_guard_page(int device)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(device, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(device, kernels_path, &lib));
    pymic_kernel *k;
    CHECK_OK(pymic_kernel_find(lib, "write_past", &k));
    void *buffer;
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &buffer));
    char expected[160];
    snprintf(expected, sizeof expected,
             "kernel 'write_past' killed by SIGSEGV writing past the end of allocation %p "
             "(800 bytes)",
             buffer);
    write_past(s, k, buffer, 100 + 4096 / 8);
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE(expected);
    CHECK_OK(pymic_device_reset(device));
    pymic_library *again;
    CHECK_OK(pymic_library_load(device, kernels_path, &again));
    CHECK_OK(pymic_kernel_find(again, "write_past", &k));
    /* The guard page is back in the new device process. */
    write_past(s, k, buffer, 100 + 4096 / 8);
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_DEVICE_LOST);
    CHECK_MESSAGE(expected);
    CHECK_OK(pymic_device_reset(device));
    CHECK_OK(pymic_mem_free(s, buffer));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_library_unload(again));
    CHECK_OK(pymic_stream_destroy(s));
}

/* A failure reaches what depends on it: stream `a` (device `fail_on`)
 * overruns a buffer, then records an event; stream `b` (device `wait_on`)
 * waits for the event and increments a counter.  The increment must not
 * run, and b's sync reports the overrun (both streams report it once);
 * the same holds for a stream's own later commands. */
static void test_dependents(int fail_on, int wait_on)
{
    pymic_stream *a, *b;
    CHECK_OK(pymic_stream_create(fail_on, &a));
    CHECK_OK(pymic_stream_create(wait_on, &b));
    pymic_library *lib_a, *lib_b;
    CHECK_OK(pymic_library_load(fail_on, kernels_path, &lib_a));
    CHECK_OK(pymic_library_load(wait_on, kernels_path, &lib_b));
    pymic_kernel *past, *increment_a, *increment_b;
    CHECK_OK(pymic_kernel_find(lib_a, "write_past", &past));
    CHECK_OK(pymic_kernel_find(lib_a, "increment", &increment_a));
    CHECK_OK(pymic_kernel_find(lib_b, "increment", &increment_b));
    void *buffer, *counter_a, *counter_b;
    int64_t zero = 0, got = -1;
    CHECK_OK(pymic_mem_alloc(fail_on, 800, 0, &buffer));
    CHECK_OK(pymic_mem_alloc(fail_on, sizeof zero, 0, &counter_a));
    CHECK_OK(pymic_mem_alloc(wait_on, sizeof zero, 0, &counter_b));
    CHECK_OK(pymic_memcpy_h2d(a, counter_a, 0, &zero, sizeof zero));
    CHECK_OK(pymic_memcpy_h2d(b, counter_b, 0, &zero, sizeof zero));
    CHECK_OK(pymic_stream_sync(a));
    CHECK_OK(pymic_stream_sync(b));
    pymic_event *ready;
    CHECK_OK(pymic_event_create(&ready));

    write_past(a, past, buffer, 101);
    pymic_arg arg_a = {counter_a, 0}, arg_b = {counter_b, 0};
    CHECK_OK(pymic_invoke(a, increment_a, 1, &arg_a)); /* after the failure: not run */
    CHECK_OK(pymic_event_record(ready, a));
    CHECK_OK(pymic_stream_wait_event(b, ready));
    CHECK_OK(pymic_invoke(b, increment_b, 1, &arg_b)); /* depends on it: not run */
    CHECK_OK(pymic_memcpy_d2h(b, &got, counter_b, 0, sizeof got));
    CHECK_STATUS(pymic_stream_sync(b), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("kernel 'write_past'");
    CHECK_MESSAGE("waited for an event");
    CHECK(got == -1); /* the copy back did not run either */
    CHECK_OK(pymic_stream_sync(b)); /* reported once */
    CHECK_STATUS(pymic_event_sync(ready), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_STATUS(pymic_stream_sync(a), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("kernel 'write_past'");

    /* Reported: both streams run again. */
    CHECK_OK(pymic_invoke(a, increment_a, 1, &arg_a));
    CHECK_OK(pymic_event_record(ready, a));
    CHECK_OK(pymic_stream_wait_event(b, ready));
    CHECK_OK(pymic_invoke(b, increment_b, 1, &arg_b));
    CHECK_OK(pymic_memcpy_d2h(b, &got, counter_b, 0, sizeof got));
    CHECK_OK(pymic_stream_sync(b));
    CHECK(got == 1);
    CHECK_OK(pymic_memcpy_d2h(a, &got, counter_a, 0, sizeof got));
    CHECK_OK(pymic_stream_sync(a));
    CHECK(got == 1); /* the increment queued after the failure never ran */

    CHECK_OK(pymic_event_destroy(ready));
    CHECK_OK(pymic_mem_free(a, buffer));
    CHECK_OK(pymic_mem_free(a, counter_a));
    CHECK_OK(pymic_mem_free(b, counter_b));
    CHECK_OK(pymic_library_unload(lib_a));
    CHECK_OK(pymic_library_unload(lib_b));
    CHECK_OK(pymic_stream_destroy(a));
    CHECK_OK(pymic_stream_destroy(b));
}

/* "allocation 0x... (800 bytes)", as a failure names it. */
static void allocation_name(char *name, size_t len, const void *block)
{
    snprintf(name, len, "allocation %p (800 bytes)", block);
}

/* Two streams whose kernels each overrun their own buffer each report
 * their own overrun, once: the check after one kernel does not take the
 * other's damage for its own.  The first kernel overruns the buffer
 * whose canaries a scan of the device meets first, then waits at a gate
 * (its check held back) while the second overruns the other buffer and
 * is checked, after a kernel of its that stays inside its buffer.
 * (Before, those checks reported -- and re-armed -- the first buffer as
 * the second stream's, so the first kernel's check found nothing, or the
 * second buffer's damage; a process that exited with two such streams
 * printed one unreported failure in about 1 of 100 runs.) */
static void test_concurrent_overruns_are_each_their_own(int device)
{
    pymic_stream *first, *second;
    CHECK_OK(pymic_stream_create(device, &first));
    CHECK_OK(pymic_stream_create(device, &second));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(device, kernels_path, &lib));
    pymic_kernel *past, *past_then_wait;
    CHECK_OK(pymic_kernel_find(lib, "write_past", &past));
    CHECK_OK(pymic_kernel_find(lib, "write_past_then_wait", &past_then_wait));
    void *a, *b, *flags;
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &a));
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &b));
    CHECK_OK(pymic_mem_alloc(device, 2 * sizeof(int64_t), 0, &flags));
    void *low = (uintptr_t)a < (uintptr_t)b ? a : b, *high = low == a ? b : a;
    char low_name[64], high_name[64];
    allocation_name(low_name, sizeof low_name, low);
    allocation_name(high_name, sizeof high_name, high);
    static const int64_t closed[2] = {0, 0};
    CHECK_OK(pymic_memcpy_h2d(first, flags, 0, closed, sizeof closed));
    CHECK_OK(pymic_stream_sync(first));
    _Atomic int64_t *started = flags, *gate = started + 1;

    int64_t n = 101;
    pymic_arg held[4] = {{low, 0}, {&n, sizeof n}, {started, 0}, {gate, 0}};
    CHECK_OK(pymic_invoke(first, past_then_wait, 4, held));
    while (atomic_load(started) == 0) /* its damage is done */
        sched_yield();
    write_past(second, past, high, 100); /* a kernel that stays inside */
    CHECK_OK(pymic_stream_sync(second)); /* is not blamed for the other's */
    write_past(second, past, high, 101);
    CHECK_STATUS(pymic_stream_sync(second), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE(high_name);
    CHECK(strstr(pymic_last_error(), low_name) == NULL);
    CHECK_OK(pymic_stream_sync(second)); /* reported once */
    atomic_store(gate, 1);
    CHECK_STATUS(pymic_stream_sync(first), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("kernel 'write_past_then_wait'");
    CHECK_MESSAGE(low_name);
    CHECK_OK(pymic_stream_sync(first)); /* reported once */
    CHECK_OK(pymic_device_sync(device)); /* and nothing else is left */

    CHECK_OK(pymic_mem_free(first, a));
    CHECK_OK(pymic_mem_free(first, b));
    CHECK_OK(pymic_mem_free(first, flags));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(first));
    CHECK_OK(pymic_stream_destroy(second));
}

/* A kernel that overruns memory none of its arguments points into (a
 * device pointer passed as a number) is still caught, when no other
 * kernel of the device runs, and the failure says so. */
static void test_overrun_outside_the_arguments(int device)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(device, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(device, kernels_path, &lib));
    pymic_kernel *past_at;
    CHECK_OK(pymic_kernel_find(lib, "write_past_at", &past_at));
    void *buffer;
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &buffer));
    char name[64];
    allocation_name(name, sizeof name, buffer);
    int64_t address = (int64_t)(intptr_t)buffer, n = 101;
    pymic_arg args[2] = {{&address, sizeof address}, {&n, sizeof n}};
    CHECK_OK(pymic_invoke(s, past_at, 2, args));
    CHECK_STATUS(pymic_stream_sync(s), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("kernel 'write_past_at'");
    CHECK_MESSAGE(name);
    CHECK_MESSAGE("which none of its arguments points into");
    CHECK_OK(pymic_stream_sync(s)); /* reported once */
    CHECK_OK(pymic_mem_free(s, buffer));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_stream_destroy(s));
}

/* A stream destroyed before anybody synced it leaves its failure to the
 * device: the next device sync reports it, once. */
static void test_destroyed_stream_failure(int device)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(device, &s));
    pymic_library *lib;
    CHECK_OK(pymic_library_load(device, kernels_path, &lib));
    pymic_kernel *k;
    CHECK_OK(pymic_kernel_find(lib, "write_past", &k));
    void *buffer;
    CHECK_OK(pymic_mem_alloc(device, 800, 0, &buffer));
    write_past(s, k, buffer, 101);
    CHECK_OK(pymic_mem_free(s, buffer));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_STATUS(pymic_device_sync(device), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("kernel 'write_past'");
    CHECK_OK(pymic_device_sync(device)); /* reported once */
    CHECK_OK(pymic_library_unload(lib));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s KERNEL_LIBRARY\n", argv[0]);
        return 2;
    }
    kernels_path = argv[1];
    int count;
    CHECK_OK(pymic_device_count(&count));
    for (int d = 0; d < count; d++) {
        pymic_device_info info;
        CHECK_OK(pymic_device_get_info(d, &info));
        test_canaries(d);
        test_concurrent_overruns_are_each_their_own(d);
        test_overrun_outside_the_arguments(d);
        test_destroyed_stream_failure(d);
        test_freed_while_queued(d, 1);
        if (strcmp(info.kind, "proc") == 0) {
            test_guard_page(d);
            test_freed_while_queued(d, 4096 / 8);
        }
    }
    for (int d = 0; d < count; d++)
        for (int w = 0; w < count; w++)
            test_dependents(d, w);
    return check_finish();
}
