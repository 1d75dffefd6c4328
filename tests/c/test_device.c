/*
 * test_device.c -- engine-wide calls, status names and device queries.
 */
#include "check.h"

#include <sched.h>
#include <stdint.h>

static void test_engine_calls(void)
{
    CHECK_OK(pymic_init());
    CHECK_OK(pymic_init()); /* idempotent */
    CHECK(pymic_version() == PYMIC_VERSION_MAJOR * 10000 + PYMIC_VERSION_MINOR * 100 +
                                 PYMIC_VERSION_PATCH);

    uint64_t spin = 1;
    CHECK_OK(pymic_get_spin_ns(&spin));
    CHECK(spin == 50000); /* the default; the test runs without PYMIC_SPIN_NS */
    CHECK_OK(pymic_set_spin_ns(1234));
    CHECK_OK(pymic_get_spin_ns(&spin));
    CHECK(spin == 1234);
    CHECK_OK(pymic_set_spin_ns(50000));
    CHECK_STATUS(pymic_get_spin_ns(NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("pymic_get_spin_ns");

    int level = -1;
    CHECK_OK(pymic_get_debug_level(&level));
    CHECK(level == 0);
    CHECK_OK(pymic_set_debug_level(2));
    CHECK_OK(pymic_get_debug_level(&level));
    CHECK(level == 2);
    CHECK_OK(pymic_set_debug_level(0));
    CHECK_STATUS(pymic_get_debug_level(NULL), PYMIC_ERR_INVALID_ARGUMENT);
}

static void test_status_names(void)
{
    CHECK(strcmp(pymic_status_name(PYMIC_OK), "PYMIC_OK") == 0);
    CHECK(strcmp(pymic_status_name(PYMIC_ERR_OUT_OF_RANGE), "PYMIC_ERR_OUT_OF_RANGE") == 0);
    CHECK(strcmp(pymic_status_name(PYMIC_ERR_NOT_RECORDED), "PYMIC_ERR_NOT_RECORDED") == 0);
    CHECK(strcmp(pymic_status_name(-1000), "PYMIC_ERR_UNKNOWN") == 0);
    for (int s = PYMIC_OK; s >= PYMIC_ERR_NOT_RECORDED; s--)
        CHECK(strncmp(pymic_status_name(s), "PYMIC_", 6) == 0);
}

static void test_device_queries(void)
{
    int count = 0;
    CHECK_OK(pymic_device_count(&count));
    CHECK(count == 1); /* default layout: one device on every core */
    CHECK_STATUS(pymic_device_count(NULL), PYMIC_ERR_INVALID_ARGUMENT);

    cpu_set_t mask;
    CHECK(sched_getaffinity(0, sizeof mask, &mask) == 0);
    int ncpus = CPU_COUNT(&mask);

    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.id == 0);
    CHECK(strcmp(info.kind, "host") == 0);
    CHECK(strncmp(info.name, "host:", 5) == 0);
    CHECK(info.ncores == ncpus);
    CHECK(info.memory_total > 0);
    CHECK(info.memory_used == 0);
    CHECK_STATUS(pymic_device_get_info(0, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_device_get_info(1, &info), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("device 1");
    CHECK_STATUS(pymic_device_get_info(-1, &info), PYMIC_ERR_INVALID_ARGUMENT);

    int cpus[CPU_SETSIZE];
    int n = 0;
    CHECK_OK(pymic_device_get_cpus(0, cpus, CPU_SETSIZE, &n));
    CHECK(n == ncpus);
    for (int i = 0; i < n; i++)
        CHECK(CPU_ISSET(cpus[i], &mask));
    /* A short buffer gets the first CPUs and the full count. */
    int first = -1;
    CHECK_OK(pymic_device_get_cpus(0, &first, 1, &n));
    CHECK(n == ncpus && first == cpus[0]);
    CHECK_OK(pymic_device_get_cpus(0, NULL, 0, &n));
    CHECK(n == ncpus);
    CHECK_STATUS(pymic_device_get_cpus(0, NULL, 4, &n), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_device_get_cpus(0, cpus, 4, NULL), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_device_get_cpus(0, cpus, -1, &n), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(pymic_device_get_cpus(7, cpus, 4, &n), PYMIC_ERR_INVALID_ARGUMENT);

    CHECK_OK(pymic_device_sync(0));
    CHECK_STATUS(pymic_device_sync(3), PYMIC_ERR_INVALID_ARGUMENT);
}

static void test_memory_limit(void)
{
    pymic_device_info info;
    CHECK_OK(pymic_device_get_info(0, &info));
    size_t default_limit = info.memory_total;

    CHECK_OK(pymic_device_set_memory_limit(0, 1 << 20));
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_total == 1 << 20);

    void *a = NULL, *b = NULL;
    CHECK_OK(pymic_mem_alloc(0, 768 << 10, 0, &a));
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_used == 768 << 10);
    /* Beyond the limit: an error status, not an OOM kill. */
    CHECK_STATUS(pymic_mem_alloc(0, 512 << 10, 0, &b), PYMIC_ERR_OUT_OF_MEMORY);
    CHECK_MESSAGE("allocation of ");
    CHECK_MESSAGE("device 0");
    CHECK(b == NULL);
    /* Limit below what is allocated is refused. */
    CHECK_STATUS(pymic_device_set_memory_limit(0, 4096), PYMIC_ERR_OUT_OF_MEMORY);
    CHECK_STATUS(pymic_device_set_memory_limit(5, 4096), PYMIC_ERR_INVALID_ARGUMENT);
    CHECK_OK(pymic_mem_alloc(0, 256 << 10, 0, &b)); /* exactly fills the limit */

    pymic_stream *s;
    CHECK_OK(pymic_stream_create(0, &s));
    CHECK_OK(pymic_mem_free(s, a));
    CHECK_OK(pymic_mem_free(s, b));
    CHECK_OK(pymic_stream_sync(s));
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_used == 0);
    CHECK_OK(pymic_stream_destroy(s));

    CHECK_OK(pymic_device_set_memory_limit(0, 0)); /* back to the default */
    CHECK_OK(pymic_device_get_info(0, &info));
    CHECK(info.memory_total == default_limit);
}

int main(void)
{
    test_engine_calls();
    test_status_names();
    test_device_queries();
    test_memory_limit();
    return check_finish();
}
