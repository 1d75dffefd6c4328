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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

/* A library and the descriptor it was loaded through (-1: loaded by its
 * path, no descriptor kept). */
typedef struct host_library {
    void *dl;
    int fd;
} host_library;

static void fd_name(char *name, size_t len, int fd)
{
    snprintf(name, len, "/proc/self/fd/%d", fd);
}

/* The "device inode" of the file mapping that contains `address`, from
 * /proc/self/maps, into `id` ("" if none). */
static void mapped_file(FILE *maps, uintptr_t address, char *id, size_t len)
{
    char *line = NULL;
    size_t cap = 0;
    id[0] = '\0';
    rewind(maps);
    while (getline(&line, &cap, maps) > 0) {
        unsigned long start, end;
        char device[32], inode[32];
        if (sscanf(line, "%lx-%lx %*s %*s %31s %31s", &start, &end, device, inode) == 4 &&
            start <= address && address < end) {
            if (strcmp(inode, "0") != 0)
                snprintf(id, len, "%s %s", device, inode);
            break;
        }
    }
    free(line);
}

/* Whether the loaded object `dl` is mapped from the file open as `fd`.
 * The object's dynamic section lies in a mapping of its file; a page of
 * `fd` mapped here shows that file's identity as the kernel reports it for
 * mappings (on a stacked file system it may differ from what fstat says),
 * so the two entries of /proc/self/maps are compared, not fstat's. */
static bool object_is_file(void *dl, int fd)
{
    struct link_map *map = NULL;
    if (dlinfo(dl, RTLD_DI_LINKMAP, &map) != 0 || !map || !map->l_ld)
        return false;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *mine = mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mine == MAP_FAILED)
        return false;
    bool same = false;
    FILE *maps = fopen("/proc/self/maps", "re");
    if (maps) {
        char object_id[72], file_id[72];
        mapped_file(maps, (uintptr_t)map->l_ld, object_id, sizeof object_id);
        mapped_file(maps, (uintptr_t)mine, file_id, sizeof file_id);
        same = object_id[0] && strcmp(object_id, file_id) == 0;
        fclose(maps);
    }
    munmap(mine, page);
    return same;
}

/* Load `path`, keeping the handle only if the loader's object is the file
 * open as `fd`: glibc returns an object already loaded under that name
 * without opening the file, the old one for a library rebuilt since.  If
 * the loader fails, its reason goes to `why` (left alone otherwise). */
static void *open_by_path(int fd, const char *path, char *why, size_t len)
{
    dlerror();
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        loader_reason(why, len, path);
        return NULL;
    }
    if (object_is_file(dl, fd))
        return dl;
    dlclose(dl); /* another file's object: only the reference just taken */
    return NULL;
}

/* With `by_path` the library is loaded by its (absolute) path when that
 * gives the file open as `fd`: `$ORIGIN` in its run path is then its
 * directory.  Otherwise the loader opens the file through
 * /proc/self/fd/N: the very file that is open as `fd`, not what a path
 * names now.  glibc tells objects apart by the file's device and inode
 * once it has opened it, so the same file loaded twice is one object
 * while a library rebuilt at the same path is a new one. */
void *pymic_host_library_open(pymic_device *device, int fd, const char *path, bool by_path,
                              char *why, size_t why_len)
{
    (void)device;
    host_library *lib = malloc(sizeof *lib);
    if (!lib) {
        close(fd);
        snprintf(why, why_len, "out of host memory");
        return NULL;
    }
    char by_path_why[512] = "";
    if (by_path) {
        lib->dl = open_by_path(fd, path, by_path_why, sizeof by_path_why);
        if (lib->dl) {
            close(fd);
            lib->fd = -1;
            return lib;
        }
    }
    char name[32];
    fd_name(name, sizeof name, fd);
    dlerror();
    lib->dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib->dl) {
        /* The loader's reason for the path, if it gave one, is the one
         * that matters (a dependency found only through `$ORIGIN`). */
        if (by_path_why[0])
            snprintf(why, why_len, "%s", by_path_why);
        else
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
    if (lib->fd < 0) { /* loaded by its path: no descriptor's name to keep */
        free(lib);
        return;
    }
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

int pymic_host_invoke(pymic_stream *stream, const pymic_command *cmd, uint64_t seq)
{
    (void)stream;
    (void)seq;
    /* The handle is the function's address (host_kernel_find). */
    pymic_kernel_fn fn = (pymic_kernel_fn)(uintptr_t)cmd->u.call.kernel_handle;
    void *const *a = cmd->args;
    switch (cmd->nargs) {
        PYMIC_CALL_CASES
    default:
        break; /* excluded by pymic_invoke's checks */
    }
    return PYMIC_COMMAND_DONE;
}

void pymic_kernel_call(pymic_kernel_fn fn, int nargs, void *const *a)
{
    switch (nargs) {
        PYMIC_CALL_CASES
    default:
        break; /* excluded by pymic_invoke's checks */
    }
}
