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

#include "../invoke_call.h"

/* The loader's message for the calling thread's last dl* failure.  It
 * stays valid until this thread's next dl* call, so it is copied out at
 * once. */
static void loader_reason(char *why, size_t len)
{
    const char *reason = dlerror();
    snprintf(why, len, "%s", reason ? reason : "unknown loader error");
}

void *pymic_host_library_open(pymic_device *device, const char *path, char *why,
                              size_t why_len)
{
    (void)device;
    dlerror();
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        loader_reason(why, why_len);
    return handle;
}

void *pymic_host_kernel_find(pymic_device *device, void *handle, const char *name, char *why,
                             size_t len)
{
    (void)device;
    dlerror();
    void *address = dlsym(handle, name);
    if (!address) {
        loader_reason(why, len);
        return NULL;
    }
    struct link_map *own = NULL, *holder = NULL;
    Dl_info info;
    const ElfW(Sym) *symbol = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &own) != 0 ||
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
    dlclose(handle);
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
