/* butte-isolate: land a task in its container, then exec it; the agent's one exec per isolated task.
 *
 * Usage: butte-isolate [--exit-status FILE] [CGROUP_PROCS_FILE]... [--pidns] -- COMMAND [ARG]...
 *
 * Writes its own pid to each cgroup.procs file first, so that nothing the task starts can escape its
 * cgroups. With --pidns it makes a new pid and mount namespace and forks the namespace's init, which mounts
 * a private /proc and runs the task as its child; SIGTERM and friends are passed on down to the task (so a
 * kill's grace period means something), and a SIGKILL of this process takes the init, and with it the whole
 * namespace, down. It exits as the task did. Replaces `sh -c <join>` + `unshare --pid --fork
 * --kill-child --mount-proc`, two execs, with one: see isolators/isolation.py for the measurements.
 * With --exit-status it stays as the task's parent and writes the task's exit status to FILE ("N\n", 128 + the
 * signal for a signal), so that an agent restarted meanwhile still learns how its task ended; SIGTERM, SIGINT
 * and SIGHUP do not end it (a kill signals the task's whole process group), as with the `sh -c` wrapper it
 * replaces at a third of its cost.
 * Exit status 125: the container could not be set up (the command never ran).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125

static int join_cgroup(const char *procs_file, const char *pid) {
    int fd = open(procs_file, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, pid, strlen(pid)) < 0) {
        fprintf(stderr, "butte-isolate: cannot join %s: %s\n", procs_file, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

/* Where the signals a kill sends (SIGTERM first, for the grace period) are passed on to. */
static volatile pid_t forward_to = 0;

static void forward(int sig) {
    if (forward_to > 0) kill(forward_to, sig);
}

static const int passed_on[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

/* Block the signals passed on until the handler is in place: a SIGTERM that arrives between a fork and the
 * sigaction would otherwise end this process instead of reaching the task (the task may already run). */
static sigset_t block_passed_on(void) {
    sigset_t set, previous;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof passed_on / sizeof passed_on[0]; i++) sigaddset(&set, passed_on[i]);
    sigprocmask(SIG_BLOCK, &set, &previous);
    return previous;
}

/* Pass the signals on to `target` from now on; then let the blocked ones (and any pending) through. */
static void forward_signals(pid_t target, const sigset_t *previous) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward;
    action.sa_flags = SA_RESTART;
    forward_to = target;
    for (size_t i = 0; i < sizeof passed_on / sizeof passed_on[0]; i++) sigaction(passed_on[i], &action, NULL);
    sigprocmask(SIG_SETMASK, previous, NULL);
}

/* Wait for `child`, reaping any other child met meanwhile (the namespace's init inherits orphans). */
static int wait_for(pid_t child) {
    int status;
    for (;;) {
        pid_t ended = waitpid(-1, &status, 0);
        if (ended == child) break;
        if (ended < 0 && errno != EINTR) return SETUP_FAILED;
    }
    /* A signal is passed up as 128 + its number, as a shell does; the outer process turns it back. */
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* The outer process: end as the namespace ended (a signal as that signal, so the agent sees it as such). */
static int end_like(int code) {
    if (code > 128 && code < 128 + NSIG) {
        signal(code - 128, SIG_DFL);
        kill(getpid(), code - 128);
    }
    return code;
}

/* Keep the task's exit status where the agent finds it after a restart. */
static void record_status(const char *path, int code) {
    if (path == NULL) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    dprintf(fd, "%d\n", code);
    close(fd);
}

static void ignore_signal(int sig) { (void)sig; }

/* Without a namespace: fork the task, outlive a group SIGTERM, record how the task ended, end as it did. */
static int run_recording(const char *status_path) {
    sigset_t previous = block_passed_on();
    pid_t task = fork();
    if (task < 0) return -1;
    if (task == 0) {
        sigprocmask(SIG_SETMASK, &previous, NULL);
        return 0;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ignore_signal; /* a handler, not SIG_IGN: the task must not inherit an ignore */
    for (size_t i = 0; i < sizeof passed_on / sizeof passed_on[0]; i++) sigaction(passed_on[i], &action, NULL);
    sigprocmask(SIG_SETMASK, &previous, NULL);
    int code = wait_for(task);
    record_status(status_path, code);
    _exit(end_like(code));
}

/* The namespace's init (pid 1): mounts its /proc, runs the task as pid 2, passes signals on to it. The
 * kernel drops signals to an init that has no handler, so the task itself must not be pid 1. */
static int run_init(const sigset_t *previous) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the outer process died: take the namespace down */
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        perror("butte-isolate: mount /proc");
        return -1;
    }
    pid_t task = fork();
    if (task < 0) return -1;
    if (task == 0) {
        sigprocmask(SIG_SETMASK, previous, NULL); /* the task starts with the mask it was given */
        return 0;
    }
    forward_signals(task, previous);
    _exit(wait_for(task));
}

static int enter_pid_namespace(const char *status_path) {
    if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0) {
        perror("butte-isolate: unshare");
        return -1;
    }
    sigset_t previous = block_passed_on();
    pid_t init = fork();
    if (init < 0) return -1;
    if (init == 0) return run_init(&previous);
    forward_signals(init, &previous);
    int code = wait_for(init);
    record_status(status_path, code);
    _exit(end_like(code));
}

int main(int argc, char **argv) {
    char pid[32];
    int pidns = 0, i;
    const char *status_path = NULL;
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--pidns") == 0) {
            pidns = 1;
        } else if (strcmp(argv[i], "--exit-status") == 0 && i + 1 < argc) {
            status_path = argv[++i];
        } else if (join_cgroup(argv[i], pid) < 0) {
            return SETUP_FAILED;
        }
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "usage: butte-isolate [--exit-status FILE] [CGROUP_PROCS]... [--pidns] -- COMMAND [ARG]...\n");
        return SETUP_FAILED;
    }
    if (pidns && enter_pid_namespace(status_path) < 0) return SETUP_FAILED;
    if (!pidns && status_path != NULL && run_recording(status_path) < 0) return SETUP_FAILED;
    execvp(argv[i + 1], argv + i + 1);
    fprintf(stderr, "butte-isolate: cannot run %s: %s\n", argv[i + 1], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
