/*
 * test_memory.c -- device memory: allocation, tracking, checked copies and
 * stream-ordered frees, with every error path.
 */
#include "check.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static const char *kernels_path;

static void test_alloc_and_query(void)
{
    void *p = NULL;
    CHECK_OK(pymic_mem_alloc(0, 1000, 0, &p));
    CHECK(p != NULL && (uintptr_t)p % 64 == 0);
    void *base = NULL;
    size_t size = 0;
    CHECK_OK(pymic_mem_query(0, p, &base, &size));
    CHECK(base == p && size == 1000);
    /* A pointer inside the allocation finds it too. */
    CHECK_OK(pymic_mem_query(0, (char *)p + 999, &base, &size));
    CHECK(base == p && size == 1000);
    CHECK_STATUS(pymic_mem_query(0, (char *)p + 1000, &base, &size), PYMIC_ERR_INVALID_POINTER);
    CHECK_MESSAGE("query of memory on device 0");
    CHECK_STATUS(pymic_mem_query(0, p, NULL, &size), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_mem_query(1, p, &base, &size), PYMIC_ERR_INVALID_ARGUMENT);

    uintptr_t address = 0;
    CHECK_OK(pymic_mem_translate(0, p, 0, &address));
    CHECK(address == (uintptr_t)p);
    CHECK_OK(pymic_mem_translate(0, p, 999, &address));
    CHECK(address == (uintptr_t)p + 999);
    CHECK_STATUS(pymic_mem_translate(0, p, 1000, &address), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_STATUS(pymic_mem_translate(0, p, SIZE_MAX, &address), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_STATUS(pymic_mem_translate(0, p, 0, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    int on_stack;
    CHECK_STATUS(pymic_mem_translate(0, &on_stack, 0, &address), PYMIC_ERR_INVALID_POINTER);

    /* Alignment: honoured, checked. */
    void *q = NULL;
    CHECK_OK(pymic_mem_alloc(0, 10, 4096, &q));
    CHECK((uintptr_t)q % 4096 == 0);
    void *r = NULL;
    CHECK_OK(pymic_mem_alloc(0, 3 << 20, 1 << 16, &r)); /* big and over-aligned */
    CHECK((uintptr_t)r % (1 << 16) == 0);
    void *bad = NULL;
    CHECK_STATUS(pymic_mem_alloc(0, 10, 48, &bad), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("power of two");
    CHECK_STATUS(pymic_mem_alloc(0, 0, 0, &bad), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_mem_alloc(0, 10, 0, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_mem_alloc(2, 10, 0, &bad), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_mem_alloc(0, SIZE_MAX, 0, &bad), PYMIC_ERR_OUT_OF_MEMORY);
    CHECK(bad == NULL);

    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_mem_free(s, p));
    CHECK_OK(pymic_mem_free(s, q));
    CHECK_OK(pymic_mem_free(s, r));
    CHECK_OK(pymic_stream_destroy(s));
}

static void test_copies(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    enum { N = 4096 };
    int64_t *host = malloc(N * sizeof *host), *back = calloc(N, sizeof *back);
    for (int i = 0; i < N; i++)
        host[i] = i * 7 + 1;

    void *a = NULL, *b = NULL;
    CHECK_OK(pymic_mem_alloc(0, N * sizeof(int64_t), 0, &a));
    CHECK_OK(pymic_mem_alloc(0, N * sizeof(int64_t), 0, &b));
    CHECK_OK(pymic_memcpy_h2d(s, a, 0, host, N * sizeof(int64_t)));
    CHECK_OK(pymic_memcpy_d2d(s, b, 0, a, 0, N * sizeof(int64_t)));
    CHECK_OK(pymic_memcpy_d2h(s, back, b, 0, N * sizeof(int64_t)));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(memcmp(host, back, N * sizeof(int64_t)) == 0);

    /* Offsets on both sides. */
    int64_t seven = 7777, got = 0;
    CHECK_OK(pymic_memcpy_h2d(s, a, 10 * sizeof(int64_t), &seven, sizeof seven));
    CHECK_OK(pymic_memcpy_d2d(s, b, 20 * sizeof(int64_t), a, 10 * sizeof(int64_t), 8));
    CHECK_OK(pymic_memcpy_d2h(s, &got, b, 20 * sizeof(int64_t), sizeof got));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(got == 7777);

    /* Overlapping device-to-device copy inside one allocation (memmove). */
    CHECK_OK(pymic_memcpy_h2d(s, a, 0, host, N * sizeof(int64_t)));
    CHECK_OK(pymic_memcpy_d2d(s, a, 8, a, 0, (N - 1) * sizeof(int64_t)));
    CHECK_OK(pymic_memcpy_d2h(s, back, a, 0, N * sizeof(int64_t)));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(back[0] == host[0] && back[1] == host[0] && back[N - 1] == host[N - 2]);

    /* A big copy takes the parallel path. */
    size_t big = (size_t)24 << 20;
    unsigned char *hbig = malloc(big), *hback = malloc(big);
    for (size_t i = 0; i < big; i++)
        hbig[i] = (unsigned char)(i * 131 + (i >> 12));
    void *dbig = NULL, *dbig2 = NULL;
    CHECK_OK(pymic_mem_alloc(0, big, 0, &dbig));
    CHECK_OK(pymic_mem_alloc(0, big, 0, &dbig2));
    CHECK_OK(pymic_memcpy_h2d(s, dbig, 0, hbig, big));
    CHECK_OK(pymic_memcpy_d2d(s, dbig2, 0, dbig, 0, big));
    CHECK_OK(pymic_memcpy_d2h(s, hback, dbig2, 0, big));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(memcmp(hbig, hback, big) == 0);
    CHECK_OK(pymic_mem_free(s, dbig));
    CHECK_OK(pymic_mem_free(s, dbig2));
    /* Freed big blocks are cached and reused: the next one of that size
     * still works and holds what we write. */
    CHECK_OK(pymic_mem_alloc(0, big, 0, &dbig));
    CHECK_OK(pymic_memcpy_h2d(s, dbig, 0, hbig, big));
    memset(hback, 0, big);
    CHECK_OK(pymic_memcpy_d2h(s, hback, dbig, 0, big));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(memcmp(hbig, hback, big) == 0);
    CHECK_OK(pymic_mem_free(s, dbig));

    /* Many big copies in a row, of odd sizes at odd offsets, each checked:
     * chunks of one copy must never mix with those of the next. */
    CHECK_OK(pymic_mem_alloc(0, big, 0, &dbig));
    int all_equal = 1;
    for (int round = 0; round < 12; round++) {
        size_t offset = (size_t)round * 4099, len = ((size_t)1 << 20) + (size_t)round * 777777;
        for (size_t i = 0; i < len; i++)
            hbig[offset + i] = (unsigned char)(i * 7 + (size_t)round);
        memset(hback, 0, len);
        CHECK_OK(pymic_memcpy_h2d(s, dbig, offset, hbig + offset, len));
        CHECK_OK(pymic_memcpy_d2h(s, hback, dbig, offset, len));
        CHECK_OK(pymic_stream_sync(s));
        all_equal &= memcmp(hbig + offset, hback, len) == 0;
    }
    CHECK(all_equal);
    CHECK_OK(pymic_mem_free(s, dbig));
    free(hbig);
    free(hback);

    CHECK_OK(pymic_mem_free(s, a));
    CHECK_OK(pymic_mem_free(s, b));
    CHECK_OK(pymic_stream_destroy(s));
    /* Destroy does not wait; a device sync sees the stream until it has
     * drained, frees included. */
    CHECK_OK(pymic_device_sync(0));
    free(host);
    free(back);
}

static void test_copy_errors(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    char host[256] = {0};
    void *a = NULL;
    CHECK_OK(pymic_mem_alloc(0, 128, 0, &a));
    uint64_t before = pymic_stream_last_enqueued(s);

    /* Beyond the end, by offset and by size, and offsets that overflow. */
    CHECK_STATUS(pymic_memcpy_h2d(s, a, 0, host, 129), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("copy to the device on stream ");
    CHECK_MESSAGE("device 0");
    CHECK_MESSAGE("128-byte allocation");
    CHECK_STATUS(pymic_memcpy_h2d(s, a, 100, host, 29), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_STATUS(pymic_memcpy_h2d(s, a, 128, host, 1), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_STATUS(pymic_memcpy_h2d(s, a, SIZE_MAX, host, 2), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_STATUS(pymic_memcpy_d2h(s, host, a, 1, SIZE_MAX), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("copy from the device on stream ");
    CHECK_STATUS(pymic_memcpy_d2d(s, a, 64, a, 0, 65), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("destination");
    CHECK_STATUS(pymic_memcpy_d2d(s, a, 0, a, 64, 65), PYMIC_ERR_OUT_OF_RANGE);
    CHECK_MESSAGE("source");
    /* Exactly to the end is fine. */
    CHECK_OK(pymic_memcpy_h2d(s, a, 100, host, 28));

    /* Unknown pointers: host memory, NULL, one past the end. */
    CHECK_STATUS(pymic_memcpy_h2d(s, host, 0, host, 1), PYMIC_ERR_INVALID_POINTER);
    CHECK_MESSAGE("not a live allocation");
    CHECK_STATUS(pymic_memcpy_h2d(s, NULL, 0, host, 1), PYMIC_ERR_INVALID_POINTER);
    CHECK_STATUS(pymic_memcpy_d2h(s, host, (char *)a + 128, 0, 1), PYMIC_ERR_INVALID_POINTER);
    CHECK_STATUS(pymic_memcpy_d2d(s, a, 0, host, 0, 1), PYMIC_ERR_INVALID_POINTER);

    /* Bad arguments. */
    CHECK_STATUS(pymic_memcpy_h2d(s, a, 0, host, 0), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_memcpy_h2d(s, a, 0, NULL, 1), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_memcpy_d2h(s, NULL, a, 0, 1), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_memcpy_d2h(NULL, host, a, 0, 1), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_memcpy_d2d(s, a, 0, a, 0, 0), PYMIC_ERR_INVALID_ARGUMENT);

    /* Failed calls enqueue nothing. */
    CHECK(pymic_stream_last_enqueued(s) == before + 1);

    /* Frees: interior pointer, double free, unknown pointer, use after free. */
    CHECK_STATUS(pymic_mem_free(s, (char *)a + 1), PYMIC_ERR_INVALID_POINTER);
    CHECK_MESSAGE("inside an allocation");
    CHECK_STATUS(pymic_mem_free(NULL, a), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_OK(pymic_mem_free(s, a));
    CHECK_STATUS(pymic_mem_free(s, a), PYMIC_ERR_INVALID_POINTER);
    CHECK_MESSAGE("free on stream ");
    CHECK_MESSAGE("already freed");
    CHECK_STATUS(pymic_memcpy_h2d(s, a, 0, host, 1), PYMIC_ERR_INVALID_POINTER);
    CHECK_STATUS(pymic_mem_free(s, host), PYMIC_ERR_INVALID_POINTER);
    CHECK_STATUS(pymic_mem_free(s, NULL), PYMIC_ERR_INVALID_POINTER);
    void *base;
    size_t size;
    CHECK_STATUS(pymic_mem_query(0, a, &base, &size), PYMIC_ERR_INVALID_POINTER);

    /* The engine stays usable after all those failures. */
    void *c = NULL;
    CHECK_OK(pymic_mem_alloc(0, 64, 0, &c));
    CHECK_OK(pymic_memcpy_h2d(s, c, 0, host, 64));
    CHECK_OK(pymic_mem_free(s, c));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_stream_destroy(s));

    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_used == 0);
}

/* A free waits for the commands queued before it: copy from the buffer,
 * free it, and the copy still sees the data. */
static void test_stream_ordered_free(void)
{
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    size_t n = 8 << 20;
    char *src = malloc(n), *dst = calloc(1, n);
    memset(src, 0x5a, n);
    void *d = NULL;
    CHECK_OK(pymic_mem_alloc(0, n, 0, &d));
    for (int i = 0; i < 4; i++)
        CHECK_OK(pymic_memcpy_h2d(s, d, 0, src, n));
    CHECK_OK(pymic_memcpy_d2h(s, dst, d, 0, n));
    CHECK_OK(pymic_mem_free(s, d));
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK_OK(pymic_stream_sync(s));
    CHECK(dst[0] == 0x5a && dst[n - 1] == 0x5a);
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_used == 0);
    CHECK_OK(pymic_stream_destroy(s));
    free(src);
    free(dst);
}

/* ------------------------------------------------ allocating freed memory */

typedef struct allocator {
    size_t nbytes;
    void *ptr;
    int status;
    char message[512];
    _Atomic int tid;  /* set when it starts           */
    _Atomic int done; /* set when pymic_mem_alloc returned */
} allocator;

static void *allocate(void *arg)
{
    allocator *a = arg;
    atomic_store(&a->tid, (int)gettid());
    a->status = pymic_mem_alloc(0, a->nbytes, 0, &a->ptr);
    snprintf(a->message, sizeof a->message, "%s", pymic_last_error());
    atomic_store(&a->done, 1);
    return NULL;
}

/* True once thread `tid` sleeps ("S" in /proc): the allocator can only
 * sleep in its wait for the free. */
static bool sleeping(int tid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool asleep = false;
    if (fgets(line, sizeof line, f)) {
        const char *end = strrchr(line, ')');
        asleep = end && end[1] == ' ' && end[2] == 'S';
    }
    fclose(f);
    return asleep;
}

/* An allocation short of memory waits for a free already queued (here
 * behind a kernel that waits for a gate), however long it takes: the gate
 * opens only once the allocating thread sleeps in that wait.  Before,
 * it failed at once with the freed memory counted as used. */
static void test_alloc_waits_for_queued_free(void)
{
    pymic_library *lib;
    CHECK_OK(pymic_library_load(0, kernels_path, &lib));
    pymic_kernel *gate_kernel;
    CHECK_OK(pymic_kernel_find(lib, "wait_for_gate", &gate_kernel));
    CHECK_OK(pymic_device_set_memory_limit(0, 1 << 20));
    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    _Atomic int64_t *gate; /* host device: its memory is this process's */
    CHECK_OK(pymic_mem_alloc(0, sizeof *gate, 0, (void **)&gate));
    atomic_store(gate, 0);
    void *big;
    CHECK_OK(pymic_mem_alloc(0, 600000, 0, &big));
    pymic_arg arg = {(void *)gate, 0};
    CHECK_OK(pymic_invoke(s, gate_kernel, 1, &arg));
    CHECK_OK(pymic_mem_free(s, big)); /* queued behind the gate */

    /* Not waiting: it fails and says how much is pending release. */
    void *other = NULL;
    CHECK_STATUS(pymic_mem_alloc_nowait(0, 600000, 0, &other), PYMIC_ERR_OUT_OF_MEMORY);
    CHECK_MESSAGE("(600000 of them freed and pending release)");
    /* Would not fit even with every free back: fails at once too. */
    CHECK_STATUS(pymic_mem_alloc(0, 1100000, 0, &other), PYMIC_ERR_OUT_OF_MEMORY);
    CHECK_MESSAGE("(600000 of them freed and pending release)");

    allocator a = {.nbytes = 600000};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, allocate, &a) == 0);
    while (!atomic_load(&a.done) && !(atomic_load(&a.tid) && sleeping(atomic_load(&a.tid))))
        sched_yield();
    CHECK(!atomic_load(&a.done)); /* it waits instead of failing */
    atomic_store(gate, 1);
    pthread_join(thread, NULL);
    if (a.status != PYMIC_OK)
        fprintf(stderr, "allocation: %s\n", a.message);
    CHECK_OK(a.status);
    CHECK_OK(pymic_mem_free(s, a.ptr));
    CHECK_OK(pymic_mem_free(s, (void *)gate));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_stream_destroy(s));
    CHECK_OK(pymic_library_unload(lib));
    CHECK_OK(pymic_device_set_memory_limit(0, 0));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s KERNEL_LIBRARY\n", argv[0]);
        return 2;
    }
    kernels_path = argv[1];
    test_alloc_and_query();
    test_copies();
    test_copy_errors();
    test_stream_ordered_free();
    test_alloc_waits_for_queued_free();
    return check_finish();
}
