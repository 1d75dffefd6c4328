/*
 * invoke.c -- enqueueing kernel invocations and running commands.
 *
 * pymic_invoke is the hot path: validate, take one ring slot, copy the
 * argument pointers and scalar bytes into it, publish.  No allocation, no
 * system call unless the worker sleeps.
 */
#include "engine.h"

#include <string.h>

/* Scalars are placed at 16-byte boundaries so any scalar type (long double,
 * double complex) is aligned for the kernel. */
static size_t scalar_footprint(size_t size)
{
    return (size + 15) & ~(size_t)15;
}

static int check_invoke(pymic_stream *stream, const pymic_kernel *kernel, int nargs,
                        const pymic_arg *args)
{
    static const char op[] = "invoke on";
    int status = pymic_stream_check(stream, op);
    if (status != PYMIC_OK)
        return status;
    if (!kernel)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT, "%s " PYMIC_STREAM_FMT ": kernel is NULL",
                          op, PYMIC_STREAM_ARGS(stream));
    if (kernel->device != stream->device)
        return pymic_fail(PYMIC_ERR_WRONG_DEVICE,
                          "%s " PYMIC_STREAM_FMT ": kernel \"%s\" was loaded on device %d", op,
                          PYMIC_STREAM_ARGS(stream), kernel->name, kernel->device->id);
    if (kernel->generation !=
        atomic_load_explicit(&stream->device->generation, memory_order_relaxed))
        return pymic_fail(PYMIC_ERR_LIBRARY,
                          "%s " PYMIC_STREAM_FMT ": kernel \"%s\" was found before the device "
                          "was reset; load its library again",
                          op, PYMIC_STREAM_ARGS(stream), kernel->name);
    if (nargs < 0)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s " PYMIC_STREAM_FMT ": negative argument count", op,
                          PYMIC_STREAM_ARGS(stream));
    if (nargs > PYMIC_MAX_KERNEL_ARGS)
        return pymic_fail(PYMIC_ERR_TOO_MANY_ARGS,
                          "%s " PYMIC_STREAM_FMT ": kernel \"%s\" given %d arguments (at most "
                          "%d)",
                          op, PYMIC_STREAM_ARGS(stream), kernel->name, nargs,
                          PYMIC_MAX_KERNEL_ARGS);
    if (nargs > 0 && !args)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "%s " PYMIC_STREAM_FMT ": argument array is NULL", op,
                          PYMIC_STREAM_ARGS(stream));
    return PYMIC_OK;
}

static int scalar_error(pymic_stream *stream, const pymic_kernel *kernel, int index,
                        const pymic_arg *arg)
{
    if (!arg->data)
        return pymic_fail(PYMIC_ERR_INVALID_ARGUMENT,
                          "invoke on " PYMIC_STREAM_FMT ": scalar argument %d has size %zu but "
                          "no data",
                          PYMIC_STREAM_ARGS(stream), index, arg->size);
    return pymic_fail(PYMIC_ERR_TOO_MANY_ARGS,
                      "invoke on " PYMIC_STREAM_FMT ": kernel \"%s\" given more than %d bytes "
                      "of scalars",
                      PYMIC_STREAM_ARGS(stream), kernel->name, PYMIC_MAX_SCALAR_BYTES);
}

int pymic_invoke(pymic_stream *stream, const pymic_kernel *kernel, int nargs,
                 const pymic_arg *args)
{
    int status = check_invoke(stream, kernel, nargs, args);
    if (status != PYMIC_OK)
        return status;
    /* Scalars are validated while they are copied, so the arguments are
     * walked once; a bad one abandons the slot unpublished. */
    pymic_command *cmd = pymic_stream_reserve(stream);
    size_t used = 0;
    for (int i = 0; i < nargs; i++) {
        size_t size = args[i].size;
        if (size == 0) {
            cmd->args[i] = (void *)args[i].data;
            cmd->arg_kind[i] = PYMIC_ARG_ADDRESS; /* or DEVICE: note_uses */
            continue;
        }
        if (!args[i].data || size > PYMIC_MAX_SCALAR_BYTES - used) {
            pymic_stream_cancel(stream);
            return scalar_error(stream, kernel, i, &args[i]);
        }
        memcpy(cmd->scalars + used, args[i].data, size);
        cmd->args[i] = cmd->scalars + used;
        cmd->arg_kind[i] = PYMIC_ARG_SCALAR;
        cmd->arg_offset[i] = (uint16_t)used; /* < PYMIC_MAX_SCALAR_BYTES */
        cmd->arg_size[i] = (uint16_t)size;
        used += scalar_footprint(size);
    }
    /* Pointers into device memory: the kernel uses those allocations, so
     * freeing one must wait for this command (any stream may free it). */
    status = pymic_memory_note_uses(stream, args, nargs, pymic_stream_reserved_seq(stream), cmd);
    if (status != PYMIC_OK) {
        pymic_stream_cancel(stream);
        return status;
    }
    cmd->kind = PYMIC_CMD_INVOKE;
    cmd->nargs = nargs;
    cmd->scalar_bytes = (int)used;
    cmd->u.call.kernel_handle = kernel->handle;
    cmd->u.call.handle = kernel;
    pymic_trace_label(kernel->name);
    pymic_stream_publish(stream);
    return PYMIC_OK;
}

/* A record handed to the backend (backend.h: record): the mark's part
 * -- the failure before it, `done` -- is finished by the core as
 * `completed` passes the command (stream.c), whether the backend
 * completes it later or at once. */
static int record_on_device(pymic_stream *stream, pymic_command *cmd, uint64_t seq)
{
    cmd->on_device = 1;
    if (stream->ops->record(stream, cmd, seq) == PYMIC_COMMAND_DONE)
        pymic_command_complete(stream, seq);
    return PYMIC_COMMAND_IN_FLIGHT; /* (completed by now, or by the backend) */
}

/* An event wait: on the device when its backend takes it (the mark was
 * recorded there and is not done yet); else here, once every command
 * before it has completed. */
static void wait_event(pymic_stream *stream, pymic_command *cmd, uint64_t seq, int *result)
{
    if (pymic_mark_device_resolves(stream, cmd->u.mark)) {
        cmd->on_device = 1;
        if (stream->ops->wait_mark(stream, cmd, seq) == PYMIC_COMMAND_IN_FLIGHT) {
            *result = PYMIC_COMMAND_IN_FLIGHT;
            return;
        }
    }
    cmd->on_device = 0;
    pymic_stream_fence(stream, seq);
    pymic_mark_execute_wait(stream, cmd->u.mark, seq);
}

int pymic_command_execute(pymic_stream *stream, pymic_command *cmd, uint64_t seq)
{
    int result;
    switch (cmd->kind) {
    case PYMIC_CMD_INVOKE:
        if (__builtin_expect(pymic_global.check_bounds, 0) && stream->ops->bounds_after_invoke) {
            /* Counted from its start to its check: a check looks past the
             * kernel's own arguments only when no other kernel of the
             * device may have done the damage (bounds.c). */
            atomic_fetch_add_explicit(&stream->device->bounds_kernels, 1, memory_order_acq_rel);
            result = stream->ops->invoke(stream, cmd, seq);
            /* A kernel still in flight is the backend's to check. */
            if (result == PYMIC_COMMAND_DONE)
                stream->ops->bounds_after_invoke(stream, cmd);
            atomic_fetch_sub_explicit(&stream->device->bounds_kernels, 1, memory_order_acq_rel);
            return result;
        }
        return stream->ops->invoke(stream, cmd, seq);
    case PYMIC_CMD_COPY:
        return stream->ops->copy(stream, cmd, seq);
    case PYMIC_CMD_FREE:
        pymic_alloc_execute_free(stream, cmd->u.alloc);
        break;
    case PYMIC_CMD_RECORD:
        if (stream->ops->record)
            return record_on_device(stream, cmd, seq);
        cmd->on_device = 0;
        pymic_mark_execute_record(stream, cmd->u.mark, seq);
        break;
    case PYMIC_CMD_WAIT_EVENT:
        result = PYMIC_COMMAND_DONE;
        wait_event(stream, cmd, seq, &result);
        return result;
    default:
        break;
    }
    return PYMIC_COMMAND_DONE;
}
