/*
 * monitor.c -- starting and watching the device process.
 *
 * One monitor thread per process device.  It starts the device process
 * itself: PR_SET_PDEATHSIG (set by the child) fires when the *thread* that
 * started the child ends, and the monitor lives as long as the host
 * process, so the device dies with the host and not before.  The child is
 * started with posix_spawn (no fork handlers run in this process, nothing
 * is copied) and watched through a pidfd: poll says when it ended, and
 * waitid on the pidfd reaps it with the reason, whatever SIGCHLD handler
 * the program installed.
 *
 * The device process leads a process group of its own (terminal signals
 * do not reach it); on its death the monitor kills that group, so no child
 * a kernel started outlives it.
 *
 * On a death the monitor marks the device lost with the cause and the
 * kernel that was running, sets PROC_LOST in every mailbox's `done` and
 * wakes every waiter.  With PYMIC_KERNEL_TIMEOUT it also polls with a
 * period and kills the process when a kernel has run for longer.
 */
#include "proc.h"

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* pymic-device is installed beside libpymic.so. */
static bool device_executable(char *path, size_t len)
{
    Dl_info info;
    if (!dladdr((void *)&pymic_proc_backend, &info) || !info.dli_fname)
        return false;
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", info.dli_fname);
    snprintf(path, len, "%s/pymic-device", dirname(copy));
    return true;
}

static void format_cpus(const pymic_device *d, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < d->ncpus && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s%d", i ? "," : "", d->cpus[i]);
}

/* Every waiter on a mailbox wakes and finds PROC_LOST (the reason is
 * already in device->lost_why). */
static void fail_mailboxes(proc_device *pd)
{
    for (int i = 0; i < PROC_MAILBOXES; i++) {
        proc_mailbox *mb = &pd->control->mailbox[i];
        uint32_t posted = atomic_load(&mb->posted) & PROC_COUNT_MASK;
        atomic_store(&mb->done, posted | PROC_LOST);
        proc_futex_wake(&mb->done);
    }
}

/* With pd->lock held: start the device process. */
static void spawn_child(proc_device *pd)
{
    pymic_device *d = pd->device;
    char exe[PATH_MAX], fd_arg[16], addr_arg[32], bytes_arg[32], parent_arg[24], cpus_arg[8192];
    if (!device_executable(exe, sizeof exe)) {
        pymic_device_mark_lost(d, "device %d lost: the device executable cannot be located", d->id);
        pd->state = PROC_CHILD_DEAD;
        fail_mailboxes(pd);
        return;
    }
    int child_fd = pd->memfd == 3 ? 4 : 3;
    snprintf(fd_arg, sizeof fd_arg, "%d", child_fd);
    snprintf(addr_arg, sizeof addr_arg, "%llx", (unsigned long long)(uintptr_t)pd->base);
    snprintf(bytes_arg, sizeof bytes_arg, "%zu", pd->total);
    snprintf(parent_arg, sizeof parent_arg, "%ld", (long)getpid());
    format_cpus(d, cpus_arg, sizeof cpus_arg);
    char *argv[] = {exe, fd_arg, addr_arg, bytes_arg, parent_arg, cpus_arg, NULL};

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    /* dup2 onto another number clears close-on-exec in the child only. */
    posix_spawn_file_actions_adddup2(&actions, pd->memfd, child_fd);
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    /* A process group of its own (pgid = its pid): the terminal's
     * signals to the foreground group do not reach it, and its group --
     * it and the children its kernels leave -- can be killed as one. */
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        pymic_device_mark_lost(d, "device %d lost: cannot start %s: %s", d->id, exe,
                               strerror(rc));
        pd->state = PROC_CHILD_DEAD;
        fail_mailboxes(pd);
        return;
    }
    /* Our unreaped child: its pid cannot be reused before we wait. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pymic_device_mark_lost(d, "device %d lost: pidfd_open: %s", d->id, strerror(errno));
        pd->state = PROC_CHILD_DEAD;
        fail_mailboxes(pd);
        return;
    }
    pd->pid = pid;
    pd->pidfd = pidfd;
    pd->cause[0] = '\0';
    pd->state = PROC_CHILD_RUNNING;
    pymic_log(1, "device %d: device process %ld started on CPUs %s", d->id, (long)pid, cpus_arg);
}

static void describe_exit(const siginfo_t *info, char *out, size_t len)
{
    if (info->si_code == CLD_EXITED) {
        switch (info->si_status) {
        case PROC_EXIT_MAP:
            snprintf(out, len, "could not map the device memory at the host's address "
                               "(MAP_FIXED_NOREPLACE refused it)");
            return;
        case PROC_EXIT_AFFINITY:
            snprintf(out, len, "could not run on the device's CPUs");
            return;
        case PROC_EXIT_PARENT:
            snprintf(out, len, "found its parent gone at start");
            return;
        case PROC_EXIT_GROUP:
            snprintf(out, len, "was not started in a process group of its own");
            return;
        default:
            snprintf(out, len, "exited with status %d", info->si_status);
            return;
        }
    }
    const char *name = sigabbrev_np(info->si_status);
    if (name)
        snprintf(out, len, "killed by SIG%s", name);
    else
        snprintf(out, len, "killed by signal %d", info->si_status);
}

/* The kernel that was running on some stream, or NULL. */
static const struct pymic_kernel *running_kernel(proc_device *pd)
{
    for (int i = 1; i < PROC_MAILBOXES; i++) {
        const struct pymic_kernel *k = atomic_load(&pd->running[i]);
        if (k)
            return k;
    }
    return NULL;
}

/* With pd->lock held, once the pidfd is readable. */
static void child_ended(proc_device *pd)
{
    pymic_device *d = pd->device;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    char how[320];
    /* Children its kernels left behind do not outlive it: kill its process
     * group while it is unreaped (a zombie still holds the group's id, so
     * no other group can have it). */
    kill(-pd->pid, SIGKILL);
    if (waitid((idtype_t)P_PIDFD, (id_t)pd->pidfd, &info, WEXITED) == 0)
        describe_exit(&info, how, sizeof how);
    else
        snprintf(how, sizeof how, "ended (its status was taken by someone else)");
    const struct pymic_kernel *k = running_kernel(pd);
    uint64_t fault = atomic_load(&pd->control->fault_address);
    char where[160];
    if (info.si_code != CLD_EXITED && fault &&
        pymic_memory_describe_fault(d, (uintptr_t)fault, where, sizeof where)) {
        size_t used = strlen(how);
        snprintf(how + used, sizeof how - used, " %s", where);
    }
    if (pd->cause[0])
        snprintf(how, sizeof how, "%s", pd->cause);
    if (k)
        pymic_device_mark_lost(d, "device %d lost: kernel '%s' %s", d->id, k->name, how);
    else
        pymic_device_mark_lost(d, "device %d lost: the device process %s%s", d->id,
                               strncmp(how, "killed", 6) == 0 ? "was " : "", how);
    fail_mailboxes(pd);
    close(pd->pidfd);
    pd->pidfd = -1;
    pd->pid = 0;
    pd->state = PROC_CHILD_DEAD;
}

/* With pd->lock held: kill the process if a kernel overran the timeout. */
static void check_timeout(proc_device *pd, uint64_t timeout_ns)
{
    uint64_t now = pymic_now_ns();
    for (int i = 1; i < PROC_MAILBOXES; i++) {
        uint64_t started = atomic_load(&pd->started_ns[i]);
        if (started && now - started > timeout_ns && pd->cause[0] == '\0') {
            snprintf(pd->cause, sizeof pd->cause,
                     "ran longer than PYMIC_KERNEL_TIMEOUT (%.3g s) and was killed",
                     (double)timeout_ns * 1e-9);
            syscall(SYS_pidfd_send_signal, pd->pidfd, SIGKILL, NULL, 0);
            return;
        }
    }
}

static void *monitor_main(void *arg)
{
    proc_device *pd = arg;
    pthread_mutex_lock(&pd->lock);
    for (;;) {
        if (pd->state == PROC_CHILD_SPAWN) {
            spawn_child(pd);
            pthread_cond_broadcast(&pd->cond);
        }
        if (pd->state != PROC_CHILD_RUNNING) {
            pthread_cond_wait(&pd->cond, &pd->lock);
            continue;
        }
        uint64_t timeout_ns = atomic_load(&pymic_global.kernel_timeout_ns);
        int period_ms = -1;
        if (timeout_ns) {
            uint64_t ms = timeout_ns / 4000000u;
            period_ms = ms < 10 ? 10 : ms > 250 ? 250 : (int)ms;
        }
        struct pollfd p = {.fd = pd->pidfd, .events = POLLIN};
        pthread_mutex_unlock(&pd->lock);
        int ready = poll(&p, 1, period_ms);
        pthread_mutex_lock(&pd->lock);
        if (ready > 0)
            child_ended(pd);
        else if (timeout_ns)
            check_timeout(pd, timeout_ns);
        pthread_cond_broadcast(&pd->cond);
    }
    return NULL;
}

bool proc_monitor_start(proc_device *pd)
{
    pd->pidfd = -1;
    pd->state = PROC_CHILD_SPAWN;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&pd->monitor, &attr, monitor_main, pd);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return false;
    pthread_mutex_lock(&pd->lock);
    while (pd->state == PROC_CHILD_SPAWN)
        pthread_cond_wait(&pd->cond, &pd->lock);
    pthread_mutex_unlock(&pd->lock);
    return true;
}

void proc_monitor_respawn(proc_device *pd)
{
    pthread_mutex_lock(&pd->lock);
    if (pd->state == PROC_CHILD_RUNNING) {
        if (pd->cause[0] == '\0')
            snprintf(pd->cause, sizeof pd->cause, "was stopped by a reset of the device");
        syscall(SYS_pidfd_send_signal, pd->pidfd, SIGKILL, NULL, 0);
        while (pd->state == PROC_CHILD_RUNNING)
            pthread_cond_wait(&pd->cond, &pd->lock);
    }
    /* Nobody runs now: the mailboxes start clean. */
    atomic_store(&pd->control->fault_address, 0);
    for (int i = 0; i < PROC_MAILBOXES; i++) {
        proc_mailbox *mb = &pd->control->mailbox[i];
        atomic_store(&mb->done, atomic_load(&mb->posted) & PROC_COUNT_MASK);
        atomic_store(&pd->running[i], NULL);
        atomic_store(&pd->started_ns[i], 0);
    }
    atomic_store(&pd->device->lost, 0);
    pd->state = PROC_CHILD_SPAWN;
    pthread_cond_broadcast(&pd->cond);
    while (pd->state == PROC_CHILD_SPAWN)
        pthread_cond_wait(&pd->cond, &pd->lock);
    pthread_mutex_unlock(&pd->lock);
}
