/*
 * error.c -- per-thread error messages and status names.
 */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PYMIC_MESSAGE_MAX 1024

/* Per thread so that concurrent failures never overwrite each other. */
static _Thread_local char last_message[PYMIC_MESSAGE_MAX];

int pymic_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    pymic_log(1, "%s: %s", pymic_status_name(status), last_message);
    return status;
}

int pymic_fail_reworded(int status, const char *engine_op, const char *prefix)
{
    char why[PYMIC_MESSAGE_MAX];
    snprintf(why, sizeof why, "%s", last_message);
    const char *reason = why;
    size_t length = strlen(engine_op);
    if (strncmp(reason, engine_op, length) == 0 && strncmp(reason + length, ": ", 2) == 0)
        reason += length + 2;
    /* "device 3: " is said by the prefix already. */
    int consumed = 0;
    int device;
    if (sscanf(reason, "device %d: %n", &device, &consumed) == 1 && consumed > 0)
        reason += consumed;
    return pymic_fail(status, "%s: %s", prefix, reason);
}

void pymic_log(int level, const char *fmt, ...)
{
    if (atomic_load_explicit(&pymic_global.debug_level, memory_order_relaxed) < level)
        return;
    char line[PYMIC_MESSAGE_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line keeps lines of concurrent threads whole. */
    fprintf(stderr, "PYMIC: %s\n", line);
}

const char *pymic_last_error(void)
{
    return last_message;
}

const char *pymic_status_name(int status)
{
    switch (status) {
    case PYMIC_OK: return "PYMIC_OK";
    case PYMIC_ERR_INVALID_ARGUMENT: return "PYMIC_ERR_INVALID_ARGUMENT";
    case PYMIC_ERR_OUT_OF_MEMORY: return "PYMIC_ERR_OUT_OF_MEMORY";
    case PYMIC_ERR_INVALID_POINTER: return "PYMIC_ERR_INVALID_POINTER";
    case PYMIC_ERR_OUT_OF_RANGE: return "PYMIC_ERR_OUT_OF_RANGE";
    case PYMIC_ERR_LIBRARY: return "PYMIC_ERR_LIBRARY";
    case PYMIC_ERR_KERNEL_NOT_FOUND: return "PYMIC_ERR_KERNEL_NOT_FOUND";
    case PYMIC_ERR_WRONG_DEVICE: return "PYMIC_ERR_WRONG_DEVICE";
    case PYMIC_ERR_TOO_MANY_ARGS: return "PYMIC_ERR_TOO_MANY_ARGS";
    case PYMIC_ERR_CONFIG: return "PYMIC_ERR_CONFIG";
    case PYMIC_ERR_SYSTEM: return "PYMIC_ERR_SYSTEM";
    case PYMIC_ERR_NOT_RECORDED: return "PYMIC_ERR_NOT_RECORDED";
    case PYMIC_ERR_TIMEOUT: return "PYMIC_ERR_TIMEOUT";
    case PYMIC_ERR_DEVICE_LOST: return "PYMIC_ERR_DEVICE_LOST";
    default: return "PYMIC_ERR_UNKNOWN";
    }
}
