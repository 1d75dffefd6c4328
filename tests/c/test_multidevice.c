/*
 * test_multidevice.c -- two devices (run with PYMIC_DEVICES=host*2):
 * objects of one device used on the other are WRONG_DEVICE, accounting is
 * per device, events order work across devices.
 *
 * argv[1]: the test kernel library.
 */
#include "check.h"

#include <stdatomic.h>
#include <stdint.h>

static void test_wrong_device_memory(void)
{
    pymic_stream *s0;
    CHECK_OK(pymic_stream_create(0, &s0));
    void *p0 = NULL, *p1 = NULL;
    CHECK_OK(pymic_mem_alloc(0, 4096, 0, &p0));
    CHECK_OK(pymic_mem_alloc(1, 8192, 0, &p1));
    char host[64] = {0};

    CHECK_STATUS(pymic_memcpy_h2d(s0, p1, 0, host, 8), PYMIC_ERR_WRONG_DEVICE);
    CHECK_MESSAGE("device 0");
    CHECK_MESSAGE("belongs to device 1");
    CHECK_STATUS(pymic_memcpy_d2h(s0, host, p1, 0, 8), PYMIC_ERR_WRONG_DEVICE);
    CHECK_STATUS(pymic_memcpy_d2d(s0, p0, 0, p1, 0, 8), PYMIC_ERR_WRONG_DEVICE);
    CHECK_STATUS(pymic_memcpy_d2d(s0, p1, 0, p0, 0, 8), PYMIC_ERR_WRONG_DEVICE);
    CHECK_STATUS(pymic_mem_free(s0, p1), PYMIC_ERR_WRONG_DEVICE);
    CHECK_MESSAGE("free on stream ");
    void *base;
    size_t size;
    uintptr_t address;
    CHECK_STATUS(pymic_mem_query(0, p1, &base, &size), PYMIC_ERR_WRONG_DEVICE);
    CHECK_STATUS(pymic_mem_translate(0, p1, 0, &address), PYMIC_ERR_WRONG_DEVICE);
    CHECK_OK(pymic_mem_query(1, p1, &base, &size));
    CHECK(base == p1 && size == 8192);

    pymic_device_info i0, i1;
    CHECK_OK(pymic_device_get_info(0, &i0));
    CHECK_OK(pymic_device_get_info(1, &i1));
    CHECK(i0.memory_used == 4096 && i1.memory_used == 8192);
    /* A limit on device 1 leaves device 0 alone. */
    CHECK_OK(pymic_device_set_memory_limit(1, 10000));
    void *q = NULL;
    CHECK_STATUS(pymic_mem_alloc(1, 4096, 0, &q), PYMIC_ERR_OUT_OF_MEMORY);
    CHECK_MESSAGE("device 1");
    CHECK_OK(pymic_mem_alloc(0, 4096, 0, &q));
    CHECK_OK(pymic_device_set_memory_limit(1, 0));

    pymic_stream *s1;
    CHECK_OK(pymic_stream_create(1, &s1));
    CHECK(pymic_stream_device(s1) == 1);
    CHECK_OK(pymic_mem_free(s1, p1));
    CHECK_OK(pymic_mem_free(s0, p0));
    CHECK_OK(pymic_mem_free(s0, q));
    CHECK_OK(pymic_stream_destroy(s0));
    CHECK_OK(pymic_stream_destroy(s1));
}

static void test_wrong_device_kernel_and_events(const char *path)
{
    pymic_library *lib0, *lib1;
    CHECK_OK(pymic_library_load(0, path, &lib0));
    CHECK_OK(pymic_library_load(1, path, &lib1));
    CHECK(pymic_library_device(lib1) == 1);
    pymic_kernel *append0, *append1, *gate0;
    CHECK_OK(pymic_kernel_find(lib0, "append", &append0));
    CHECK_OK(pymic_kernel_find(lib1, "append", &append1));
    CHECK_OK(pymic_kernel_find(lib0, "wait_for_gate", &gate0));
    CHECK(pymic_kernel_device(append1) == 1);

    pymic_stream *s0, *s1;
    CHECK_OK(pymic_stream_create(0, &s0));
    CHECK_OK(pymic_stream_create(1, &s1));
    int64_t log[8] = {0}, one = 1, two = 2;
    pymic_arg a1[2] = {{log, 0}, {&one, sizeof one}};
    pymic_arg a2[2] = {{log, 0}, {&two, sizeof two}};
    CHECK_STATUS(pymic_invoke(s0, append1, 2, a1), PYMIC_ERR_WRONG_DEVICE);
    CHECK_MESSAGE("loaded on device 1");

    /* Device 1 waits for an event of device 0, which a gate holds back. */
    _Atomic int64_t gate = 0;
    pymic_arg g = {(void *)&gate, 0};
    pymic_event *e;
    CHECK_OK(pymic_event_create(&e));
    CHECK_OK(pymic_invoke(s0, gate0, 1, &g));
    CHECK_OK(pymic_invoke(s0, append0, 2, a1));
    CHECK_OK(pymic_event_record(e, s0));
    CHECK_OK(pymic_stream_wait_event(s1, e));
    CHECK_OK(pymic_invoke(s1, append1, 2, a2));
    atomic_store(&gate, 1);
    CHECK_OK(pymic_stream_sync(s1));
    CHECK(log[0] == 2 && log[1] == 1 && log[2] == 2);

    CHECK_OK(pymic_device_sync(0));
    CHECK_OK(pymic_device_sync(1));
    CHECK_OK(pymic_event_destroy(e));
    CHECK_OK(pymic_stream_destroy(s0));
    CHECK_OK(pymic_stream_destroy(s1));
    CHECK_OK(pymic_library_unload(lib0));
    CHECK_OK(pymic_library_unload(lib1));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s test_kernels.so\n", argv[0]);
        return 2;
    }
    int count = 0;
    CHECK_OK(pymic_device_count(&count));
    if (count != 2) {
        fprintf(stderr, "run with PYMIC_DEVICES=host*2\n");
        return 2;
    }
    test_wrong_device_memory();
    test_wrong_device_kernel_and_events(argv[1]);
    return check_finish();
}
