/*
 * connect.c -- the host's side of starting MPI devices and ending them.
 *
 * MPI is initialised with MPI_THREAD_MULTIPLE unless somebody (mpi4py)
 * has initialised it already, in which case the level it got must be
 * MPI_THREAD_MULTIPLE: each stream's worker and any thread making a
 * control request talk to the devices at the same time.
 *
 * Devices end before MPI does: an attribute on MPI_COMM_SELF is deleted
 * first thing in MPI_Finalize (MPI standard, "Allowing User Functions at
 * Process Termination"), whoever calls it -- this library at exit when it
 * initialised MPI, or mpi4py's own finalisation -- and its callback tells
 * every device to quit and waits for each to say it does.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "progress.h"
#include "launch.h"
#include "pymic_mpi.h"

static pthread_mutex_t launch_lock = PTHREAD_MUTEX_INITIALIZER;
static int launch_status = 1; /* 1: not tried yet */
static char launch_why[512];
static bool mpmd;
static MPI_Comm pair_comm = MPI_COMM_NULL, hosts_comm = MPI_COMM_NULL;
static int peers[256];
static int npeers, next_peer, wanted;
static mpi_device *opened; /* guarded by launch_lock */

/* MPI devices PYMIC_DEVICES asks for ("mpi", "mpi*N" entries). */
static int mpi_devices_wanted(void)
{
    const char *layout = getenv("PYMIC_DEVICES");
    int count = 0;
    for (const char *at = layout; at && *at;) {
        size_t len = strcspn(at, ";");
        if (len >= 3 && strncmp(at, "mpi", 3) == 0 && (len == 3 || at[3] == '*'))
            count += len == 3 ? 1 : atoi(at + 4);
        at += len + (at[len] == ';');
    }
    return count;
}

/* Say goodbye to every device: stop their stream threads and the device
 * processes (MPI_Finalize is about to run). */
static int quit_devices(MPI_Comm comm, int keyval, void *value, void *extra)
{
    (void)comm, (void)keyval, (void)value, (void)extra;
    pthread_mutex_lock(&launch_lock);
    for (mpi_device *md = opened; md; md = md->next) {
        pthread_mutex_lock(&md->control_lock);
        if (!md->gone && !atomic_load(&md->device->lost)) {
            mpidev_request rq = {.op = MPIDEV_STOP, .a = 1};
            pthread_mutex_lock(&md->lock);
            for (int i = 0; i < MPIDEV_MAX_STREAMS; i++)
                if (md->used[i])
                    mpidev_send(&rq, MPIDEV_REQUEST_HEAD, md->rank, MPIDEV_TAG_STREAM(i),
                             md->comm, &md->peer);
            pthread_mutex_unlock(&md->lock);
            rq.op = MPIDEV_QUIT;
            mpidev_reply reply;
            if (mpidev_send(&rq, MPIDEV_REQUEST_HEAD, md->rank, MPIDEV_TAG_CONTROL,
                         md->comm, &md->peer) == MPI_SUCCESS)
                mpidev_recv(&reply, sizeof reply, md->rank, MPIDEV_TAG_REPLY, md->comm,
                         MPI_STATUS_IGNORE, &md->peer);
        }
        md->gone = true;
        if (!atomic_load(&md->device->lost))
            pymic_device_mark_lost(md->device, "device %d lost: MPI was finalised, which ends "
                                   "its MPI device", md->device->id);
        /* A spawned device's process that has ended is let go of as a
         * reset does (mpidev_respawn): freed, not disconnected, since a
         * disconnect waits for the other side -- a device that ended in
         * the middle of a copy and was never reset hung the program's
         * MPI_Finalize now and then (mpi-ends-during-copy under CI). */
        if (md->spawned && md->comm != MPI_COMM_NULL) {
            if (atomic_load(&md->ended))
                MPI_Comm_free(&md->comm);
            else
                MPI_Comm_disconnect(&md->comm);
        }
        pthread_mutex_unlock(&md->control_lock);
    }
    if (pair_comm != MPI_COMM_NULL)
        MPI_Comm_free(&pair_comm);
    if (hosts_comm != MPI_COMM_NULL)
        MPI_Comm_free(&hosts_comm);
    pthread_mutex_unlock(&launch_lock);
    return MPI_SUCCESS;
}

/* The process that initialised MPI (a fork()ed child must not finalise
 * its parent's MPI). */
static pid_t mpi_process;

static void finalize_at_exit(void)
{
    if (getpid() != mpi_process)
        return;
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Finalize();
}

/* The environment as it was, restored after MPI_Init_thread: a singleton
 * Open MPI adds its job's variables (PMIX_RANK, OMPI_MCA_ess=singleton,
 * ...) to the process environment, and every program this process
 * started afterwards -- a compiler, another Python -- would believe it
 * was an MPI rank of that job.  Those variables are read by MPI's
 * initialisation only. */
extern char **environ;

static char **environment_copy(void)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **copy = calloc(n + 1, sizeof *copy);
    for (size_t i = 0; copy && i < n; i++)
        copy[i] = strdup(environ[i]);
    return copy;
}

static void environment_restore(char **saved)
{
    if (!saved)
        return;
    /* Added or changed variables go (collected first: unsetenv changes
     * environ under the loop). */
    size_t n = 0;
    while (environ[n])
        n++;
    char **names = calloc(n + 1, sizeof *names);
    size_t count = 0;
    for (size_t i = 0; names && environ[i]; i++) {
        bool kept = false;
        for (size_t j = 0; saved[j] && !kept; j++)
            kept = strcmp(saved[j], environ[i]) == 0;
        if (!kept)
            names[count++] = strndup(environ[i], strcspn(environ[i], "="));
    }
    for (size_t i = 0; i < count; i++) {
        if (names[i])
            unsetenv(names[i]);
        free(names[i]);
    }
    free(names);
    /* Then what was there before is set again (changed or removed). */
    for (size_t j = 0; saved[j]; j++) {
        char *eq = strchr(saved[j], '=');
        if (eq) {
            *eq = '\0';
            setenv(saved[j], eq + 1, 0);
        }
        free(saved[j]);
    }
    free(saved);
}

/* A program started without a launcher becomes an MPI singleton, and
 * Open MPI's initialisation then forks a runtime daemon that inherits
 * descriptor 0 and reads this program's standard input away.  It gets
 * /dev/null instead; the program keeps its own stdin. */
static int shield_stdin(void)
{
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK"))
        return -1; /* under a launcher: nothing is forked */
    int saved = fcntl(0, F_DUPFD_CLOEXEC, 3);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (saved < 0 || null < 0 || dup2(null, 0) < 0) {
        if (saved >= 0)
            close(saved);
        saved = -1;
    }
    if (null >= 0)
        close(null);
    return saved;
}

static void unshield_stdin(int saved)
{
    if (saved < 0)
        return;
    dup2(saved, 0);
    close(saved);
}

static const char *level_name(int level)
{
    switch (level) {
    case MPI_THREAD_SINGLE:
        return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
        return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
        return "MPI_THREAD_SERIALIZED";
    default:
        return "MPI_THREAD_MULTIPLE";
    }
}

/* A device process that ends while this one writes to it over a socket
 * (TCP, the way a spawned device is reached even on one node) must make
 * the device lost, not end this process: Open MPI's TCP transport writes
 * without MSG_NOSIGNAL, and SIGPIPE's default action is to terminate.  So
 * a host of MPI devices ignores SIGPIPE unless its program chose another
 * action itself (a handler, or ignoring it already, as CPython does):
 * the write then fails with EPIPE, which MPI reports.  (A C host was
 * killed this way when its device ended in the middle of a copy, test
 * mpi-ends-during-copy.) */
static void ignore_sigpipe(void)
{
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) == 0 && !(current.sa_flags & SA_SIGINFO) &&
        current.sa_handler == SIG_DFL) {
        struct sigaction ignore = {.sa_handler = SIG_IGN};
        sigemptyset(&ignore.sa_mask);
        sigaction(SIGPIPE, &ignore, NULL);
    }
}

static int start_mpi(char *why, size_t len)
{
    ignore_sigpipe();
    int initialized = 0, finalized = 0, level = 0;
    MPI_Finalized(&finalized);
    if (finalized) {
        snprintf(why, len, "MPI has been finalised already in this process");
        return PYMIC_ERR_CONFIG;
    }
    MPI_Initialized(&initialized);
    if (!initialized) {
        /* Open MPI's components are shared objects that expect libmpi's
         * symbols to be global, and this plugin was opened RTLD_LOCAL. */
        dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
        char **saved = environment_copy();
        int stdin_copy = shield_stdin();
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &level);
        unshield_stdin(stdin_copy);
        environment_restore(saved);
        if (rc != MPI_SUCCESS) {
            snprintf(why, len, "MPI_Init_thread failed");
            return PYMIC_ERR_SYSTEM;
        }
        mpi_process = getpid();
        atexit(finalize_at_exit);
    } else {
        MPI_Query_thread(&level);
    }
    if (level < MPI_THREAD_MULTIPLE) {
        snprintf(why, len,
                 "MPI was initialised with thread level %s; MPI devices need "
                 "MPI_THREAD_MULTIPLE (with mpi4py: set mpi4py.rc.thread_level = \"multiple\" "
                 "-- its default -- before importing mpi4py.MPI, or import pymic first)",
                 level_name(level));
        return PYMIC_ERR_CONFIG;
    }
    int keyval;
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, quit_devices, &keyval, NULL);
    MPI_Comm_set_attr(MPI_COMM_SELF, keyval, NULL);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    mpmd = mpidev_world_has_other_programs();
    if (!mpmd)
        return PYMIC_OK;
    wanted = mpi_devices_wanted();
    if (mpidev_handshake(wanted, &pair_comm, &hosts_comm, peers,
                         (int)(sizeof peers / sizeof *peers), &npeers, why,
                         len) != MPI_SUCCESS)
        return PYMIC_ERR_SYSTEM;
    MPI_Comm_set_errhandler(pair_comm, MPI_ERRORS_RETURN);
    if (npeers < wanted)
        pymic_log(0, "PYMIC_DEVICES asks for %d MPI devices, but the job has device ranks for "
                  "only %d of them on this rank (start more pymic-device ranks): devices "
                  "beyond them are lost", wanted, npeers);
    return PYMIC_OK;
}

int mpidev_host_ready(char *why, size_t len)
{
    pthread_mutex_lock(&launch_lock);
    if (launch_status == 1)
        launch_status = start_mpi(launch_why, sizeof launch_why);
    int status = launch_status;
    snprintf(why, len, "%s", launch_why);
    pthread_mutex_unlock(&launch_lock);
    return status;
}

MPI_Comm mpidev_host_comm(void)
{
    pthread_mutex_lock(&launch_lock);
    MPI_Comm comm = launch_status != PYMIC_OK ? MPI_COMM_NULL
                    : mpmd                    ? hosts_comm
                                              : MPI_COMM_WORLD;
    pthread_mutex_unlock(&launch_lock);
    return comm;
}

/* pymic-device is installed beside libpymic (as for process devices). */
static bool device_program(char *path, size_t len)
{
    Dl_info info;
    if (!dladdr((void *)&pymic_init, &info) || !info.dli_fname)
        return false;
    char *copy = strdup(info.dli_fname);
    if (!copy)
        return false;
    snprintf(path, len, "%s/pymic-device", dirname(copy));
    free(copy);
    return true;
}

/* PYMIC_MPI_SPAWN_INFO="key=value;key=value" (MPI_Comm_spawn's info
 * keys: host, hostfile, map_by, ...); by default Open MPI may put the
 * devices on this node's cores whatever its slot count (map_by
 * :OVERSUBSCRIBE). */
static MPI_Info spawn_info(void)
{
    MPI_Info info;
    MPI_Info_create(&info);
    const char *text = getenv("PYMIC_MPI_SPAWN_INFO");
    if (!text) {
        MPI_Info_set(info, "map_by", ":OVERSUBSCRIBE");
        return info;
    }
    char *copy = strdup(text), *save = NULL;
    for (char *item = copy ? strtok_r(copy, ";", &save) : NULL; item;
         item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        if (eq) {
            *eq = '\0';
            MPI_Info_set(info, item, eq + 1);
        }
    }
    free(copy);
    return info;
}

/* Spawn a pymic-device for `md` (launch_lock held).  False with the
 * reason. */
static bool spawn_device(mpi_device *md, char *why, size_t len)
{
    char program[4096];
    int error = MPI_SUCCESS;
    if (!device_program(program, sizeof program)) {
        snprintf(why, len, "cannot find pymic-device beside libpymic");
        return false;
    }
    MPI_Info info = spawn_info();
    int rc = MPI_Comm_spawn(program, MPI_ARGV_NULL, 1, info, 0, MPI_COMM_SELF, &md->comm,
                            &error);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS || error != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING];
        int n = 0;
        MPI_Error_string(rc != MPI_SUCCESS ? rc : error, text, &n);
        snprintf(why, len, "MPI_Comm_spawn of %s failed: %s", program, text);
        md->comm = MPI_COMM_NULL;
        return false;
    }
    md->rank = 0;
    md->spawned = true;
    MPI_Comm_set_errhandler(md->comm, MPI_ERRORS_RETURN);
    return true;
}

bool mpidev_connect(mpi_device *md, char *why, size_t len)
{
    pthread_mutex_lock(&launch_lock);
    bool ok = true;
    if (mpmd) {
        if (next_peer >= npeers) {
            snprintf(why, len, "no device rank left for it: PYMIC_DEVICES asks for %d MPI "
                     "devices, the job gave this rank %d (start more pymic-device ranks)",
                     wanted, npeers);
            ok = false;
        } else {
            md->comm = pair_comm;
            md->rank = peers[next_peer++];
        }
    } else {
        ok = spawn_device(md, why, len);
    }
    if (ok) {
        md->next = opened;
        opened = md;
    }
    pthread_mutex_unlock(&launch_lock);
    return ok;
}

mpi_device *mpidev_opened(int id)
{
    pthread_mutex_lock(&launch_lock);
    mpi_device *md = opened;
    while (md && md->device->id != id)
        md = md->next;
    pthread_mutex_unlock(&launch_lock);
    return md;
}

bool mpidev_respawn(mpi_device *md, char *why, size_t len)
{
    /* The lock order of quit_devices: launch_lock, then control_lock. */
    pthread_mutex_lock(&launch_lock);
    pthread_mutex_lock(&md->control_lock);
    bool ok = false;
    if (md->gone) {
        snprintf(why, len, "MPI was finalised");
    } else {
        /* The old intercommunicator leads to a process that has ended:
         * freed, not disconnected (a disconnect waits for the other
         * side). */
        if (md->comm != MPI_COMM_NULL)
            MPI_Comm_free(&md->comm);
        ok = spawn_device(md, why, len);
    }
    pthread_mutex_unlock(&md->control_lock);
    pthread_mutex_unlock(&launch_lock);
    return ok;
}

/* For pymic.mpi.host_comm(): the Fortran handle (MPI_Comm_c2f) of the
 * communicator of the host ranks, or -1 with the reason in `why` when no
 * MPI device was ever started in this process. */
__attribute__((visibility("default"))) int pymic_mpi_host_comm(char *why, size_t len)
{
    pthread_mutex_lock(&launch_lock);
    int handle = -1;
    if (launch_status == 1)
        snprintf(why, len, "no MPI device has been started in this process (PYMIC_DEVICES "
                 "has no \"mpi\" entry, or its devices are not set up yet)");
    else if (launch_status != PYMIC_OK)
        snprintf(why, len, "%s", launch_why);
    else
        handle = (int)MPI_Comm_c2f(mpmd ? hosts_comm : MPI_COMM_WORLD);
    pthread_mutex_unlock(&launch_lock);
    return handle;
}
