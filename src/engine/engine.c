/*
 * engine.c -- the global engine: one-time initialisation from the
 * environment and the engine-wide tunables.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

pymic_engine pymic_global = {
    .spin_ns = 50000,
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status = PYMIC_OK;
static char init_message[1536];

/* CPUs of the process affinity mask, ascending. */
static int available_cpus(int **cpus_out, int *count_out)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return PYMIC_ERR_SYSTEM;
    int n = CPU_COUNT(&set), k = 0;
    int *cpus = malloc(sizeof *cpus * (size_t)(n > 0 ? n : 1));
    if (!cpus)
        return PYMIC_ERR_SYSTEM;
    for (int c = 0; c < CPU_SETSIZE && k < n; c++)
        if (CPU_ISSET(c, &set))
            cpus[k++] = c;
    *cpus_out = cpus;
    *count_out = k;
    return PYMIC_OK;
}

/* "host:0-3,6" style name from a sorted CPU list. */
static void format_device_name(const char *kind, const int *cpus, int n, char *out,
                               size_t len)
{
    size_t used = (size_t)snprintf(out, len, "%s:", kind);
    for (int i = 0; i < n && used < len; ) {
        int j = i;
        while (j + 1 < n && cpus[j + 1] == cpus[j] + 1)
            j++;
        const char *sep = i ? "," : "";
        if (j > i)
            used += (size_t)snprintf(out + used, len - used, "%s%d-%d", sep, cpus[i], cpus[j]);
        else
            used += (size_t)snprintf(out + used, len - used, "%s%d", sep, cpus[i]);
        i = j + 1;
    }
}

/* A whole decimal number in [0, max]: digits only (no sign, no spaces),
 * no overflow. */
static bool parse_decimal(const char *text, unsigned long long max, unsigned long long *value)
{
    if (*text < '0' || *text > '9')
        return false;
    unsigned long long v = 0;
    for (; *text; text++) {
        if (*text < '0' || *text > '9')
            return false;
        unsigned digit = (unsigned)(*text - '0');
        if (v > (max - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *value = v;
    return true;
}

/* The highest PYMIC_DEBUG level that means anything (higher is refused,
 * not silently clamped). */
#define PYMIC_DEBUG_MAX 9
/* Spin windows beyond a minute are a typo, not a tuning. */
#define PYMIC_SPIN_NS_MAX 60000000000ull

static int read_tunables(void)
{
    const char *text = getenv("PYMIC_DEBUG");
    unsigned long long value;
    if (text && *text) {
        if (!parse_decimal(text, PYMIC_DEBUG_MAX, &value)) {
            snprintf(init_message, sizeof init_message,
                     "starting pymic: PYMIC_DEBUG=\"%s\" is not a level from 0 to %d", text,
                     PYMIC_DEBUG_MAX);
            return PYMIC_ERR_CONFIG;
        }
        atomic_store(&pymic_global.debug_level, (int)value);
    }
    text = getenv("PYMIC_SPIN_NS");
    if (text && *text) {
        if (!parse_decimal(text, PYMIC_SPIN_NS_MAX, &value)) {
            snprintf(init_message, sizeof init_message,
                     "starting pymic: PYMIC_SPIN_NS=\"%s\" is not a number of nanoseconds from 0 "
                     "to %llu",
                     text, PYMIC_SPIN_NS_MAX);
            return PYMIC_ERR_CONFIG;
        }
        atomic_store(&pymic_global.spin_ns, (uint64_t)value);
    }
    text = getenv("PYMIC_CHECK");
    if (text && *text) {
        if (strcmp(text, "bounds") != 0) {
            snprintf(init_message, sizeof init_message,
                     "starting pymic: PYMIC_CHECK=\"%s\" is not a check pymic knows (\"bounds\")",
                     text);
            return PYMIC_ERR_CONFIG;
        }
        pymic_global.check_bounds = true;
    }
    text = getenv("PYMIC_KERNEL_TIMEOUT");
    if (text && *text) {
        char *end;
        double seconds = strtod(text, &end);
        if (end == text || *end || !(seconds >= 0) || seconds > 1e6) {
            snprintf(init_message, sizeof init_message,
                     "starting pymic: PYMIC_KERNEL_TIMEOUT=\"%s\" is not a number of seconds from 0 "
                     "(no watchdog) to 1000000",
                     text);
            return PYMIC_ERR_CONFIG;
        }
        atomic_store(&pymic_global.kernel_timeout_ns, (uint64_t)(seconds * 1e9));
    }
    return PYMIC_OK;
}

/* Physical memory, or less where the process's cgroup says so: a
 * container of 1 GiB on a 24 GiB machine must see 1 GiB, or an allocation
 * the limit allowed would be OOM-killed instead of refused. */
static size_t default_memory_limit(int ndevices)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t total = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : SIZE_MAX / 2;
    size_t cgroup = pymic_cgroup_memory_limit("/");
    if (cgroup && cgroup < total)
        total = cgroup;
    return total / (size_t)ndevices;
}

/* PYMIC_MEMORY_LIMIT was set: it, not a backend's capacity, is every
 * device's default limit. */
static bool limit_from_environment;

static int read_memory_limit(size_t *limit)
{
    const char *text = getenv("PYMIC_MEMORY_LIMIT");
    if (!text || !*text)
        return PYMIC_OK;
    limit_from_environment = true;
    if (!pymic_parse_size(text, limit) || *limit == 0 || *limit > PYMIC_MEMORY_LIMIT_MAX) {
        snprintf(init_message, sizeof init_message,
                 "starting pymic: PYMIC_MEMORY_LIMIT=\"%s\" is not a size such as 512M or 2G "
                 "(at most 2^62 bytes)",
                 text);
        return PYMIC_ERR_CONFIG;
    }
    return PYMIC_OK;
}

static int open_device(pymic_device *device, const char *op, bool on_first_use);

static int create_devices(pymic_device_spec *specs, int count, size_t limit)
{
    pymic_device *devices = calloc((size_t)count, sizeof *devices);
    if (!devices)
        return PYMIC_ERR_SYSTEM;
    for (int i = 0; i < count; i++) {
        pymic_device *d = &devices[i];
        d->id = i;
        d->ncpus = specs[i].ncpus;
        d->cpus = malloc(sizeof *d->cpus * (size_t)d->ncpus);
        d->ops = specs[i].ops;
        d->spec = specs[i].spec;
        specs[i].spec = NULL; /* the device's from now on */
        if (!d->cpus)
            return PYMIC_ERR_SYSTEM; /* process is out of memory at start-up */
        memcpy(d->cpus, specs[i].cpus, sizeof *d->cpus * (size_t)d->ncpus);
        CPU_ZERO(&d->cpuset);
        for (int c = 0; c < d->ncpus; c++)
            CPU_SET(d->cpus[c], &d->cpuset);
        format_device_name(d->ops->kind, d->cpus, d->ncpus, d->name, sizeof d->name);
        pthread_mutex_init(&d->lock, NULL);
        pthread_mutex_init(&d->open_lock, NULL);
        pymic_memory_table_init(d);
        d->memory_limit = limit;
        d->memory_default = limit;
        pymic_log(1, "device %d: %s (%d cores, memory limit %zu bytes)%s",
                  i, d->name, d->ncpus, limit, specs[i].lazy ? ", set up on first use" : "");
    }
    pymic_global.devices = devices;
    pymic_global.ndevices = count;
    /* PYMIC_CHECK=bounds reads canaries through the backend: refuse it,
     * rather than read memory this process may not have, where the
     * backend has no way to check. */
    for (int i = 0; i < count; i++)
        if (pymic_global.check_bounds && !devices[i].ops->bounds_arm) {
            snprintf(init_message, sizeof init_message,
                     "starting pymic: PYMIC_CHECK=bounds: bounds checks are not supported on "
                     "device kind \"%s\" (device %d)", devices[i].ops->kind, i);
            return PYMIC_ERR_CONFIG;
        }
    /* Only the devices this process will use cost threads, processes
     * and memory now; the others wait for pymic_device_open. */
    for (int i = 0; i < count; i++)
        if (!specs[i].lazy && open_device(&devices[i], "pymic_init", false) != PYMIC_OK)
            return PYMIC_ERR_SYSTEM;
    return PYMIC_OK;
}

/* A backend that knows its device's memory (memory_capacity) sets the
 * default limit, unless PYMIC_MEMORY_LIMIT did.  Open lock held. */
static void apply_capacity(pymic_device *device)
{
    if (!device->ops->memory_capacity || limit_from_environment)
        return;
    size_t capacity = device->ops->memory_capacity(device);
    if (capacity > PYMIC_MEMORY_LIMIT_MAX)
        capacity = PYMIC_MEMORY_LIMIT_MAX;
    pthread_mutex_lock(&device->table.lock);
    if (device->memory_limit == device->memory_default)
        device->memory_limit = capacity;
    device->memory_default = capacity;
    pthread_mutex_unlock(&device->table.lock);
    pymic_log(1, "device %d: memory limit %zu bytes (the device's capacity)", device->id,
              capacity);
}

/* Set `device` up (ops->open) unless it is; `on_first_use` only changes
 * the debug log. */
static int open_device(pymic_device *device, const char *op, bool on_first_use)
{
    if (atomic_load_explicit(&device->opened, memory_order_acquire))
        return PYMIC_OK;
    pthread_mutex_lock(&device->open_lock);
    bool ok = atomic_load_explicit(&device->opened, memory_order_relaxed) ||
              device->ops->open(device);
    if (ok && !atomic_load_explicit(&device->opened, memory_order_relaxed)) {
        apply_capacity(device);
        if (on_first_use)
            pymic_log(1, "device %d: %s set up on first use (%s)", device->id, device->name,
                      op);
        atomic_store_explicit(&device->opened, 1, memory_order_release);
    }
    pthread_mutex_unlock(&device->open_lock);
    if (!ok)
        return pymic_fail(PYMIC_ERR_SYSTEM, "%s: device %d: cannot set the device up (out of "
                          "memory or threads)", op, device->id);
    return PYMIC_OK;
}

int pymic_device_ensure_open(pymic_device *device, const char *op)
{
    return open_device(device, op, true);
}

/* fork() while other threads use the engine: a lock another thread held
 * at the moment of the fork would stay locked forever in the child, and
 * data it was changing would be half-changed.  So every global lock is
 * taken before the fork and released after it on both sides.  They are
 * taken in the engine's lock order, the order in which any path that
 * holds two of them takes them (docs/design.md), so prepare can never
 * wait for a thread that waits for a lock prepare already holds:
 *
 *   devices' open locks
 *   trace registry        -> a device's stream list (-> enqueue locks)
 *   library lock          -> the backend's locks (finding a kernel)
 *   devices' stream lists -> (a stream's failure lock, not taken here)
 *   event lock
 *   parked-release lock   -> what a release takes: backends, a table
 *   each backend's locks  -> a device's allocation table (a process
 *                            device's monitor names the allocation a
 *                            fault hit)
 *   a device's allocation table (a leaf: nothing is taken while holding
 *                            it, and only one is ever held; prefork takes
 *                            them all, in device order)
 *
 * Per-stream locks are never taken here: inherited streams are unusable
 * in the child (see pymic_stream_check).  In the child, locks are made
 * fresh and streams created before are marked as the parent's.  This is
 * the only pthread_atfork registration of libpymic.  A device's open lock
 * (held while its backend is set up, which may take any of the locks
 * above) comes before all of them. */
static void prefork(void)
{
    for (int i = 0; i < pymic_global.ndevices; i++)
        pthread_mutex_lock(&pymic_global.devices[i].open_lock);
    pymic_trace_prefork();
    pymic_library_prefork();
    for (int i = 0; i < pymic_global.ndevices; i++)
        pthread_mutex_lock(&pymic_global.devices[i].lock);
    pymic_event_prefork();
    pymic_parked_prefork();
    for (int i = 0; i < pymic_global.ndevices; i++)
        if (atomic_load_explicit(&pymic_global.devices[i].opened, memory_order_relaxed) &&
            pymic_global.devices[i].ops->prefork)
            pymic_global.devices[i].ops->prefork(&pymic_global.devices[i]);
    pymic_memory_prefork();
}

static void postfork_parent(void)
{
    pymic_memory_postfork_parent();
    for (int i = pymic_global.ndevices - 1; i >= 0; i--)
        if (atomic_load_explicit(&pymic_global.devices[i].opened, memory_order_relaxed) &&
            pymic_global.devices[i].ops->postfork_parent)
            pymic_global.devices[i].ops->postfork_parent(&pymic_global.devices[i]);
    pymic_parked_postfork_parent();
    pymic_event_postfork_parent();
    for (int i = pymic_global.ndevices - 1; i >= 0; i--)
        pthread_mutex_unlock(&pymic_global.devices[i].lock);
    pymic_library_postfork_parent();
    pymic_trace_postfork_parent();
    for (int i = pymic_global.ndevices - 1; i >= 0; i--)
        pthread_mutex_unlock(&pymic_global.devices[i].open_lock);
}

static void postfork_child(void)
{
    atomic_fetch_add(&pymic_global.fork_generation, 1);
    pymic_memory_postfork_child();
    pymic_parked_postfork_child();
    pymic_event_postfork_child();
    pymic_library_postfork_child();
    pymic_trace_postfork_child();
    for (int i = 0; i < pymic_global.ndevices; i++) {
        pthread_mutex_init(&pymic_global.devices[i].lock, NULL);
        pthread_mutex_init(&pymic_global.devices[i].open_lock, NULL);
        if (atomic_load_explicit(&pymic_global.devices[i].opened, memory_order_relaxed) &&
            pymic_global.devices[i].ops->postfork_child)
            pymic_global.devices[i].ops->postfork_child(&pymic_global.devices[i]);
    }
}

bool pymic_generation_inherited(unsigned fork_generation)
{
    return fork_generation !=
           atomic_load_explicit(&pymic_global.fork_generation, memory_order_relaxed);
}

static int initialise(void)
{
    int status = read_tunables();
    if (status != PYMIC_OK)
        return status;
    int *avail = NULL, navail = 0;
    if (available_cpus(&avail, &navail) != PYMIC_OK) {
        snprintf(init_message, sizeof init_message,
                 "starting pymic: cannot read the process affinity mask");
        return PYMIC_ERR_SYSTEM;
    }
    /* host:auto compares the mask with the node; unknown, it splits the mask. */
    int *node = NULL, nnode = 0;
    if (pymic_node_cpus(&node, &nnode) != PYMIC_OK)
        node = NULL;
    const char *layout = getenv("PYMIC_DEVICES");
    pymic_device_spec *specs = NULL;
    int count = 0;
    char why[1024], note[256];
    pymic_host_cpus cpus = {avail, navail, node, nnode};
    status = pymic_parse_devices(layout, &cpus, &specs, &count, why, sizeof why, note,
                                 sizeof note);
    free(avail);
    free(node);
    if (status != PYMIC_OK) {
        snprintf(init_message, sizeof init_message, "starting pymic: PYMIC_DEVICES=\"%s\": %s",
                 layout ? layout : "", why);
        return status;
    }
    if (note[0])
        pymic_log(1, "%s", note);
    size_t limit = default_memory_limit(count);
    status = read_memory_limit(&limit);
    if (status == PYMIC_OK) {
        pymic_global.default_memory_limit = limit;
        if (pymic_local_device(specs, count, &pymic_global.local_device,
                               pymic_global.local_device_why,
                               sizeof pymic_global.local_device_why) != PYMIC_OK)
            pymic_global.local_device = -1;
        status = create_devices(specs, count, limit);
    }
    pymic_free_device_specs(specs, count);
    if (status == PYMIC_ERR_CONFIG) {
        /* create_devices refused the configuration (message written). */
    } else if (status != PYMIC_OK) {
        snprintf(init_message, sizeof init_message, "starting pymic: out of memory");
    }
    if (status == PYMIC_OK && pthread_atfork(prefork, postfork_parent, postfork_child) != 0) {
        snprintf(init_message, sizeof init_message, "starting pymic: pthread_atfork failed");
        status = PYMIC_ERR_SYSTEM;
    }
    return status;
}

static void initialise_once(void)
{
    init_status = initialise();
}

int pymic_ensure_init(void)
{
    pthread_once(&init_once, initialise_once);
    if (init_status != PYMIC_OK)
        return pymic_fail(init_status, "%s", init_message);
    return PYMIC_OK;
}

int pymic_init(void)
{
    return pymic_ensure_init();
}

int pymic_local_device_index(int *device)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    if (!device)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_local_device_index: device is NULL");
    if (pymic_global.local_device < 0)
        return pymic_fail(PYMIC_ERR_CONFIG, "pymic_local_device_index: %s",
                          pymic_global.local_device_why);
    *device = pymic_global.local_device;
    return PYMIC_OK;
}

int pymic_version(void)
{
    return PYMIC_VERSION_MAJOR * 10000 + PYMIC_VERSION_MINOR * 100 + PYMIC_VERSION_PATCH;
}

int pymic_set_spin_ns(uint64_t ns)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    atomic_store_explicit(&pymic_global.spin_ns, ns, memory_order_relaxed);
    return PYMIC_OK;
}

int pymic_get_spin_ns(uint64_t *ns)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    if (!ns)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_get_spin_ns: ns is NULL");
    *ns = atomic_load_explicit(&pymic_global.spin_ns, memory_order_relaxed);
    return PYMIC_OK;
}

int pymic_set_debug_level(int level)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    atomic_store_explicit(&pymic_global.debug_level, level, memory_order_relaxed);
    return PYMIC_OK;
}

int pymic_get_debug_level(int *level)
{
    int status = pymic_ensure_init();
    if (status != PYMIC_OK)
        return status;
    if (!level)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_get_debug_level: level is NULL");
    *level = atomic_load_explicit(&pymic_global.debug_level, memory_order_relaxed);
    return PYMIC_OK;
}
