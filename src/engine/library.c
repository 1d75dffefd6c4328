/*
 * library.c -- kernel libraries: dlopen'ed shared objects and the kernels
 * found in them.
 *
 * Opening a library and finding a kernel in it are the backend's
 * (host/kernel.c: dlopen in this process; proc/: in the device process);
 * the handle, the kernel cache and the messages are here.  A library is
 * an open file, not a name: the path is opened once here and what the
 * backend loads is that file, so what runs is the file that was opened
 * (and, for pymic_library_load_fd, checked by the caller).  A library
 * named by the user may be loaded by its path, so that `$ORIGIN` in its
 * run path names its directory, if the backend finds that the loader's
 * object is the open file; a checked one only ever through its descriptor
 * (no name is looked up after the check).
 *
 * Unloading never blocks: the library is closed once every stream of its
 * device has passed what was queued when unload was called (parked.c).
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct pymic_library {
    char *path;
    pymic_device *device;
    void *handle;
    unsigned generation;          /* the device's, when loaded */
    struct pymic_kernel *kernels; /* guarded by library_lock */
};

/* Guards every library's kernel list: lookups are rare (handles are
 * cached), and one lock is what the fork handlers can take. */
static pthread_mutex_t library_lock = PTHREAD_MUTEX_INITIALIZER;

/* `path` made absolute (relative to the working directory, as open(2)
 * took it), not resolved: the loader takes `$ORIGIN` from the name it
 * loaded.  NULL if that does not fit. */
static char *absolute_name(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return NULL;
    size_t dir_len = strlen(cwd), path_len = strlen(path);
    if (dir_len + 1 + path_len >= PATH_MAX)
        return NULL;
    char *name = malloc(dir_len + 1 + path_len + 1);
    if (name) {
        memcpy(name, cwd, dir_len);
        name[dir_len] = '/';
        memcpy(name + dir_len + 1, path, path_len + 1);
    }
    return name;
}

/* Load the file open as `fd` (owned from here on: the backend keeps it
 * while the library is loaded, or closes it); by its path too if
 * `by_path` (see backend.h, library_open). */
static int load_open_file(pymic_device *d, int fd, const char *path, bool by_path,
                          pymic_library **library_out)
{
    static const char op[] = "loading a library";
    struct stat st;
    const char *wrong = NULL;
    if (fstat(fd, &st) != 0)
        wrong = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        wrong = S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file";
    if (wrong) {
        close(fd);
        return pymic_fail(PYMIC_ERR_LIBRARY, "%s: device %d: cannot load \"%s\": %s", op,
                          d->id, path, wrong);
    }
    /* Without an absolute name (a working directory too deep or gone) the
     * descriptor is loaded: the same file, only `$ORIGIN` is lost. */
    char *name = by_path ? absolute_name(path) : NULL;
    char why[512];
    void *handle = d->ops->library_open(d, fd, name ? name : path, name != NULL, why,
                                        sizeof why);
    free(name);
    if (!handle)
        return pymic_fail(PYMIC_ERR_LIBRARY, "%s: device %d: cannot load \"%s\": %s", op,
                          d->id, path, why);
    pymic_library *lib = calloc(1, sizeof *lib);
    char *path_copy = strdup(path);
    if (!lib || !path_copy) {
        free(lib);
        free(path_copy);
        d->ops->library_close(d, handle);
        return pymic_fail(PYMIC_ERR_SYSTEM, "%s: device %d: out of host memory", op, d->id);
    }
    lib->path = path_copy;
    lib->device = d;
    lib->handle = handle;
    lib->generation = atomic_load(&d->generation);
    pymic_log(2, "%s: device %d: loaded %s (inode %llu)", op, d->id, path,
              (unsigned long long)st.st_ino);
    *library_out = lib;
    return PYMIC_OK;
}

int pymic_library_load(int device, const char *path, pymic_library **library_out)
{
    static const char op[] = "loading a library";
    int status;
    pymic_device *d = pymic_device_open(device, op, &status);
    if (!d)
        return status;
    if (!path || !*path || !library_out)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: device %d: empty path or NULL output",
                          op, device);
    /* Opened once: what is loaded is this file, whatever the name points
     * to later (glibc would match a name it loaded before, and load the
     * old file of a library rebuilt since). */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pymic_fail(PYMIC_ERR_LIBRARY, "%s: device %d: cannot load \"%s\": %s", op,
                          device, path, strerror(errno));
    return load_open_file(d, fd, path, true, library_out);
}

/* A descriptor of the caller's, duplicated for the backend to own. */
static int load_callers_fd(const char *op, int device, int fd, const char *path, bool by_path,
                           pymic_library **library_out)
{
    int status;
    pymic_device *d = pymic_device_lookup(device, op, &status);
    if (!d)
        return status;
    if (fd < 0 || !path || !*path || !library_out)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s: device %d: negative descriptor, empty path or NULL output", op,
                          device);
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0)
        return pymic_fail(PYMIC_ERR_LIBRARY, "%s: device %d: cannot load \"%s\": %s", op,
                          device, path, strerror(errno));
    return load_open_file(d, own, path, by_path, library_out);
}

int pymic_library_load_opened(int device, int fd, const char *path, pymic_library **library_out)
{
    return load_callers_fd("loading a library", device, fd, path, true, library_out);
}

int pymic_library_load_fd(int device, int fd, const char *path, pymic_library **library_out)
{
    /* Checked by the caller on the open file: never looked up by name. */
    return load_callers_fd("loading a checked library file", device, fd, path, false,
                           library_out);
}

static void close_library(void *arg)
{
    pymic_library *library = arg;
    struct pymic_kernel *k = library->kernels;
    while (k) {
        struct pymic_kernel *next = k->next;
        free(k->name);
        free(k);
        k = next;
    }
    library->device->ops->library_close(library->device, library->handle);
    free(library->path);
    free(library);
}

int pymic_library_unload(pymic_library *library)
{
    if (!library)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_library_unload: library is NULL");
    /* Queued invokes may still call into the library: it is closed once
     * every stream of the device has passed what is queued now. */
    pymic_use *uses;
    int n;
    int status = pymic_device_snapshot(library->device, &uses, &n);
    if (status != PYMIC_OK)
        return status;
    pymic_release_after(uses, n, close_library, library);
    return PYMIC_OK;
}

void pymic_library_prefork(void)
{
    pthread_mutex_lock(&library_lock);
}

void pymic_library_postfork_parent(void)
{
    pthread_mutex_unlock(&library_lock);
}

void pymic_library_postfork_child(void)
{
    pthread_mutex_init(&library_lock, NULL);
}

const char *pymic_library_path(const pymic_library *library)
{
    return library ? library->path : NULL;
}

int pymic_library_device(const pymic_library *library)
{
    if (!library)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_library_device: library is NULL");
    return library->device->id;
}

static struct pymic_kernel *find_cached(pymic_library *library, const char *name)
{
    for (struct pymic_kernel *k = library->kernels; k; k = k->next)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

int pymic_kernel_find(pymic_library *library, const char *name, pymic_kernel **kernel_out)
{
    static const char op[] = "looking up a kernel";
    if (!library || !name || !kernel_out)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s: NULL library, name or output", op);
    int device = library->device->id;
    if (library->generation != atomic_load(&library->device->generation))
        return pymic_fail(PYMIC_ERR_LIBRARY,
                          "%s: device %d: library \"%s\" was loaded before the device was "
                          "reset; load it again",
                          op, device, library->path);
    pthread_mutex_lock(&library_lock);
    struct pymic_kernel *k = find_cached(library, name);
    if (k) {
        pthread_mutex_unlock(&library_lock);
        *kernel_out = k;
        return PYMIC_OK;
    }
    char why[256];
    uint64_t handle = library->device->ops->kernel_find(library->device, library->handle, name,
                                                        why, sizeof why);
    if (!handle) {
        pthread_mutex_unlock(&library_lock);
        return pymic_fail(PYMIC_ERR_KERNEL_NOT_FOUND,
                          "%s: device %d: kernel \"%s\" not found in library \"%s\" (%s)", op,
                          device, name, library->path, why);
    }
    k = calloc(1, sizeof *k);
    char *name_copy = k ? strdup(name) : NULL;
    if (!name_copy) {
        free(k);
        pthread_mutex_unlock(&library_lock);
        return pymic_fail(PYMIC_ERR_SYSTEM, "%s: device %d: out of host memory", op, device);
    }
    k->name = name_copy;
    k->generation = library->generation;
    k->handle = handle;
    k->library = library;
    k->device = library->device;
    k->next = library->kernels;
    library->kernels = k;
    pthread_mutex_unlock(&library_lock);
    *kernel_out = k;
    return PYMIC_OK;
}

const char *pymic_kernel_name(const pymic_kernel *kernel)
{
    return kernel ? kernel->name : NULL;
}

/* The handle is the kernel's address (in the process that runs it) for
 * the host and process backends; another backend's handle is only a
 * number that names the kernel there. */
void *pymic_kernel_address(const pymic_kernel *kernel)
{
    return kernel ? (void *)(uintptr_t)kernel->handle : NULL;
}

int pymic_kernel_device(const pymic_kernel *kernel)
{
    if (!kernel)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "pymic_kernel_device: kernel is NULL");
    return kernel->device->id;
}

pymic_library *pymic_kernel_library(const pymic_kernel *kernel)
{
    return kernel ? kernel->library : NULL;
}

