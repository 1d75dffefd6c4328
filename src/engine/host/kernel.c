/*
 * kernel.c -- kernel libraries and kernel calls on the host device.
 *
 * Libraries are opened with RTLD_NOW so an undefined symbol is reported
 * when the library is loaded, with the loader's own reason, instead of
 * killing a worker in the middle of a kernel call later.
 *
 * A kernel is a *function defined by the library*: dlsym also finds what
 * the library's dependencies define (printf, stdout) and data objects, and
 * calling those would crash the worker, so each name found is checked
 * against the library's own symbol table entry.
 */
#include "host.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../invoke_call.h"

/* The loader's message for the calling thread's last dl* failure, without
 * the "/proc/self/fd/N: " it starts with when it is about the library
 * itself (the caller names the library by its path).  It stays valid
 * until this thread's next dl* call, so it is copied out at once. */
static void loader_reason(char *why, size_t len, const char *name)
{
    const char *reason = dlerror();
    if (!reason)
        reason = "unknown loader error";
    size_t n = name ? strlen(name) : 0;
    if (n && strncmp(reason, name, n) == 0 && strncmp(reason + n, ": ", 2) == 0)
        reason += n + 2;
    snprintf(why, len, "%s", reason);
}

/* A library and the descriptor it was loaded through. */
typedef struct host_library {
    void *dl;
    int fd;
} host_library;

static void fd_name(char *name, size_t len, int fd)
{
    snprintf(name, len, "/proc/self/fd/%d", fd);
}

/* The loader opens the file through /proc/self/fd/N: the very file that
 * is open as `fd`, not what a path names now.  glibc tells objects apart
 * by the file's device and inode once it has opened it, so the same file
 * loaded twice is one object while a library rebuilt at the same path is
 * a new one. */
void *pymic_host_library_open(pymic_device *device, int fd, const char *path, char *why,
                              size_t why_len)
{
    (void)device;
    (void)path;
    host_library *lib = malloc(sizeof *lib);
    if (!lib) {
        close(fd);
        snprintf(why, why_len, "out of host memory");
        return NULL;
    }
    char name[32];
    fd_name(name, sizeof name, fd);
    dlerror();
    lib->dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib->dl) {
        loader_reason(why, why_len, name);
        close(fd);
        free(lib);
        return NULL;
    }
    lib->fd = fd;
    return lib;
}

void *pymic_host_kernel_find(pymic_device *device, void *handle, const char *name, char *why,
                             size_t len)
{
    (void)device;
    host_library *lib = handle;
    dlerror();
    void *address = dlsym(lib->dl, name);
    if (!address) {
        loader_reason(why, len, NULL);
        return NULL;
    }
    struct link_map *own = NULL, *holder = NULL;
    Dl_info info;
    const ElfW(Sym) *symbol = NULL;
    if (dlinfo(lib->dl, RTLD_DI_LINKMAP, &own) != 0 ||
        !dladdr1(address, &info, (void **)&holder, RTLD_DL_LINKMAP) ||
        !dladdr1(address, &info, (void **)&symbol, RTLD_DL_SYMENT) || !symbol) {
        snprintf(why, len, "the loader cannot describe symbol \"%s\"", name);
        return NULL;
    }
    if (holder != own) {
        snprintf(why, len, "\"%s\" is defined by %s, not by this library", name,
                 info.dli_fname ? info.dli_fname : "another object");
        return NULL;
    }
    int type = ELF64_ST_TYPE(symbol->st_info);
    if (type != STT_FUNC && type != STT_GNU_IFUNC) {
        snprintf(why, len, "\"%s\" is not a function", name);
        return NULL;
    }
    return address;
}

void pymic_host_library_close(pymic_device *device, void *handle)
{
    (void)device;
    host_library *lib = handle;
    dlclose(lib->dl);
    /* glibc looks an object up by the name it was loaded under before it
     * opens any file.  If the object stays (another handle to the same
     * file, RTLD_NODELETE, unique symbols), its name /proc/self/fd/N must
     * not come to mean another file: then the descriptor stays open. */
    char name[32];
    fd_name(name, sizeof name, lib->fd);
    void *still = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (still)
        dlclose(still);
    else
        close(lib->fd);
    free(lib);
}

void pymic_host_invoke(pymic_stream *stream, const pymic_command *cmd)
{
    (void)stream;
    pymic_kernel_fn fn = cmd->u.call.fn;
    void *const *a = cmd->args;
    switch (cmd->nargs) {
        PYMIC_CALL_CASES
    default:
        break; /* excluded by pymic_invoke's checks */
    }
}
