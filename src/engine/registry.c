/*
 * registry.c -- backends found by name.
 *
 * "host" and "proc" are built in.  Any other name N is a plugin: the
 * shared object libpymic_N.so, looked for beside libpymic itself (the
 * directory its own file was loaded from), then in each directory of
 * PYMIC_BACKEND_PATH (colon-separated), opened with RTLD_NOW|RTLD_LOCAL,
 * and asked for its operation table by its one exported function
 * pymic_backend_N(PYMIC_BACKEND_ABI) (backend.h).  A plugin is opened once
 * and never closed: its table is used for the life of the process.
 *
 * Only engine initialisation looks names up, but the list of loaded
 * plugins has a lock anyway: it costs nothing and keeps the registry
 * correct for any caller.
 *
 * This file uses nothing of the engine but the two built-in tables, so
 * tests/c/test_config.c compiles it in beside config.c.
 */
#include "engine.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A backend's name is a C identifier fragment: it becomes part of a file
 * name and of a symbol name. */
#define NAME_MAX_LEN 32

typedef struct plugin {
    char name[NAME_MAX_LEN + 1];
    const pymic_backend_ops *ops;
    struct plugin *next;
} plugin;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static plugin *plugins; /* guarded by registry_lock */

static const pymic_backend_ops *const builtin[] = {&pymic_host_backend, &pymic_proc_backend};

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* The directory libpymic was loaded from ("" if unknown). */
static void own_directory(char *dir, size_t len)
{
    Dl_info info;
    dir[0] = '\0';
    if (!dladdr((void *)&pymic_backend_find, &info) || !info.dli_fname)
        return;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash)
        return;
    size_t n = (size_t)(slash - info.dli_fname);
    if (n >= len)
        return;
    memcpy(dir, info.dli_fname, n);
    dir[n] = '\0';
}

/* The operations every backend must have; the others may be NULL. */
static const char *missing_op(const pymic_backend_ops *ops)
{
    if (!ops->kind)
        return "kind";
    if (!ops->open)
        return "open";
    if (!ops->block_get || !ops->block_put)
        return "block_get/block_put";
    if (!ops->start_worker || !ops->worker_exit)
        return "start_worker/worker_exit";
    if (!ops->copy || !ops->invoke)
        return "copy/invoke";
    if (!ops->library_open || !ops->kernel_find || !ops->library_close)
        return "library_open/kernel_find/library_close";
    return NULL;
}

/* Open the plugin file `path` and take its table; NULL with the reason. */
static const pymic_backend_ops *open_plugin(const char *name, const char *path, char *why,
                                            size_t why_len)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *reason = dlerror();
        snprintf(why, why_len, "cannot load the backend plugin %s: %s", path,
                 reason ? reason : "unknown reason");
        return NULL;
    }
    char symbol[sizeof "pymic_backend_" + NAME_MAX_LEN];
    snprintf(symbol, sizeof symbol, "pymic_backend_%s", name);
    pymic_backend_entry entry;
    void *address = dlsym(handle, symbol);
    memcpy(&entry, &address, sizeof entry);
    const pymic_backend_ops *ops = entry ? entry(PYMIC_BACKEND_ABI) : NULL;
    const char *missing = ops ? missing_op(ops) : NULL;
    if (!entry)
        snprintf(why, why_len, "the backend plugin %s does not define %s()", path, symbol);
    else if (!ops || ops->abi_version != PYMIC_BACKEND_ABI)
        snprintf(why, why_len, "the backend plugin %s was built for another version of "
                 "pymic's backend interface (%s(%u) gave %s; rebuild it against this pymic)",
                 path, symbol, PYMIC_BACKEND_ABI, ops ? "a table of another version" : "NULL");
    else if (missing)
        snprintf(why, why_len, "the backend plugin %s has no %s operation", path, missing);
    else if (strcmp(ops->kind, name) != 0)
        snprintf(why, why_len, "the backend plugin %s calls itself \"%s\", not \"%s\"", path,
                 ops->kind, name);
    else
        return ops;
    dlclose(handle);
    return NULL;
}

/* Look for libpymic_<name>.so beside libpymic, then along
 * PYMIC_BACKEND_PATH; open the first that exists. */
static const pymic_backend_ops *load_plugin(const char *name, char *why, size_t why_len)
{
    char file[sizeof "libpymic_.so" + NAME_MAX_LEN];
    snprintf(file, sizeof file, "libpymic_%s.so", name);
    char own[4096];
    own_directory(own, sizeof own);
    const char *search = getenv("PYMIC_BACKEND_PATH");
    char path[4096 + sizeof file + 1];
    const char *dir = own;
    size_t dir_len = strlen(own);
    const char *rest = search;
    for (;;) {
        if (dir_len > 0 && dir_len < 4096) {
            snprintf(path, sizeof path, "%.*s/%s", (int)dir_len, dir, file);
            if (access(path, F_OK) == 0)
                return open_plugin(name, path, why, why_len);
        }
        if (!rest || !*rest)
            break;
        dir = rest;
        const char *colon = strchr(rest, ':');
        dir_len = colon ? (size_t)(colon - rest) : strlen(rest);
        rest = colon ? colon + 1 : NULL;
    }
    snprintf(why, why_len, "unknown device kind \"%s\" (\"host\" and \"proc\" are built in, "
             "and there is no backend plugin %s in %s or in PYMIC_BACKEND_PATH (%s))", name, file,
             own[0] ? own : "libpymic's directory (unknown)",
             search && *search ? search : "unset");
    return NULL;
}

const pymic_backend_ops *pymic_backend_find(const char *name, char *why, size_t why_len)
{
    for (size_t i = 0; i < sizeof builtin / sizeof *builtin; i++)
        if (strcmp(builtin[i]->kind, name) == 0)
            return builtin[i];
    if (!valid_name(name)) {
        snprintf(why, why_len, "unknown device kind \"%s\" (a backend's name is 1 to %d of "
                 "a-z, 0-9 and _; \"host\" and \"proc\" are built in)", name, NAME_MAX_LEN);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    const pymic_backend_ops *ops = NULL;
    for (plugin *p = plugins; p && !ops; p = p->next)
        if (strcmp(p->name, name) == 0)
            ops = p->ops;
    if (!ops) {
        plugin *p = malloc(sizeof *p);
        ops = p ? load_plugin(name, why, why_len) : NULL;
        if (ops) {
            snprintf(p->name, sizeof p->name, "%s", name);
            p->ops = ops;
            p->next = plugins;
            plugins = p;
        } else {
            if (!p)
                snprintf(why, why_len, "out of memory");
            free(p);
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return ops;
}
