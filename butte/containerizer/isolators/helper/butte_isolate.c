/* butte-isolate: land a task in its container, then exec it; the agent's one exec per isolated task.
 *
 * Usage: butte-isolate --spawner FD (the agent's spawning process: spawner.c), or
 *        butte-isolate [--exit-status FILE] [--cgroup DIR]... [--reuse NAME] [--write FILE VALUE]...
 *                      [--oom FILE] [CGROUP_PROCS_FILE]... [--pidns]
 *                      [--remove [--recycle NAME] [--reset FILE VALUE]... [--recycle-below FILE BYTES]]
 *                      -- COMMAND [ARG]...
 *
 * With --cgroup it makes the container's cgroup DIR itself (it may be there already), then writes each
 * --write VALUE (the limits), then registers an eventfd of its own for the OOM notifications of --oom FILE
 * (cgroup v1 memory.oom_control) and reads it while it waits: an OOM kill in the container ends the
 * container (oom_watch.c). The task's side (the process that execs the task, or the namespace's init) then joins each
 * --cgroup and each given cgroup.procs file before anything else, so that nothing the task starts can escape
 * its cgroups. With --remove it stays as the task's parent, outside the cgroups, and once the task (or the
 * namespace) has ended removes them, last made first, unless FILE counts an OOM kill (the agent reads the
 * limitation there) or a cgroup is still busy (the agent kills what is left): the agent does no cgroup work
 * of its own for such a task (isolation.py, helper_prelude). Making and removing a cgroup is most of what
 * isolation costs the kernel, so the agent keeps a pool of used ones: --reuse NAME renames the cgroup NAME
 * beside each DIR into DIR in place of making it, and --recycle NAME renames each DIR to NAME in place of
 * removing it, after the --reset writes (counters back to zero), when the --recycle-below FILE shows no more
 * than BYTES still charged to it and no process is left in them (a rename would take it along).
 * With --pidns it makes a new pid and mount namespace and forks the namespace's init, which mounts
 * a private /proc and runs the task as its child; SIGTERM and friends are passed on down to the task (so a
 * kill's grace period means something), and a SIGKILL of this process takes the init, and with it the whole
 * namespace, down. Started as pid 1 (the agent made the namespace: containerizer/pid_namespaces.py), it is
 * that init itself, one process fewer. It exits as the task did. Replaces `sh -c <join>` + `unshare --pid --fork
 * --kill-child --mount-proc`, two execs, with one: see isolators/isolation.py for the measurements.
 * With --exit-status it stays as the task's parent and writes the task's exit status to FILE ("N\n", 128 + the
 * signal for a signal), so that an agent restarted meanwhile still learns how its task ended; SIGTERM, SIGINT
 * and SIGHUP do not end it (a kill signals the task's whole process group), as with the `sh -c` wrapper it
 * replaces at a third of its cost.
 * Exit status 125: the container could not be set up (the command never ran).
 *
 * Built without the C library where it can be (BUTTE_NOLIBC, x86-64 and arm64): a static glibc program
 * spends ~0.5 ms of its start asking the CPU about its caches (cpuid, which traps in a virtual machine),
 * twice what the rest of this program's exec costs. Everything below goes through sys(), raw system calls,
 * so the same code builds either way.
 */
#define _GNU_SOURCE
#include <asm/unistd.h>
#include <linux/errno.h>
#include <linux/fcntl.h>
#include <linux/mount.h>
#include <linux/prctl.h>
#include <linux/sched.h>

#ifndef WNOHANG
#define WNOHANG 1 /* <linux/wait.h>, which clashes with the C library's headers where those are used */
#endif
#define SETUP_FAILED 125
#define SIGNAL_BASE 128
#define MAX_SIGNAL 64

typedef unsigned long sigmask;

#include "system_calls.c" /* sys(), spawn_on_stack(), signal numbers: with or without the C library */

/* ---- small helpers over raw system calls (errors are negative errno values) ---- */

static unsigned long length(const char *text) {
    unsigned long n = 0;
    while (text[n]) n++;
    return n;
}

static int same(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

static void say(int fd, const char *text) { sys(__NR_write, fd, (long)text, (long)length(text), 0, 0); }

/* The number a decimal argument starts with (0 for none). */
static long number(const char *text) {
    long value = 0;
    for (; *text >= '0' && *text <= '9'; text++) value = value * 10 + (*text - '0');
    return value;
}

/* The decimal digits of `value` (>= 0) into `out`, which must hold 21 bytes. */
static const char *decimal(long value, char *out) {
    char *end = out + 20;
    *end = 0;
    do *--end = (char)('0' + value % 10); while ((value /= 10) > 0);
    return end;
}

/* "butte-isolate: <what> <detail>: errno <n>" on stderr. */
static void complain(const char *what, const char *detail, long error) {
    char digits[21];
    say(2, "butte-isolate: ");
    say(2, what);
    say(2, detail);
    say(2, ": errno ");
    say(2, decimal(-error, digits));
    say(2, "\n");
}

static void within_cgroup(long *dir, const char **name); /* container_cgroups.c */

static long open_file(const char *path, long flags, long mode) {
    long dir = AT_FDCWD;
    within_cgroup(&dir, &path);
    return sys(__NR_openat, dir, (long)path, flags | O_CLOEXEC, mode, 0);
}

static long fork_process(void) { return sys(__NR_clone, SIGCHLD, 0, 0, 0, 0); }

static void quit(int code) {
    for (;;) sys(__NR_exit_group, code, 0, 0, 0, 0);
}

#include "run_state.c" /* struct run, this_run(): container, command, forward_to */

/* ---- signals ---- */

struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    unsigned long restorer;
    sigmask mask;
};

static const int passed_on[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define PASSED_ON (sizeof passed_on / sizeof passed_on[0])

static sigmask bit(int sig) { return 1UL << (sig - 1); }

static sigmask set_mask(int how, sigmask mask) {
    sigmask previous = 0;
    sys(__NR_rt_sigprocmask, how, (long)&mask, (long)&previous, sizeof mask, 0);
    return previous;
}

static void on_signal(int sig, void (*handler)(int), unsigned long flags) {
#ifdef BUTTE_NOLIBC
    struct kernel_sigaction action = {handler, flags | (RESTORER ? SA_RESTORER : 0), RESTORER, 0};
    sys(__NR_rt_sigaction, sig, (long)&action, 0, sizeof(sigmask), 0);
#else
    struct sigaction action = {0};
    action.sa_handler = handler;
    action.sa_flags = (int)flags;
    sigaction(sig, &action, 0);
#endif
}

static void forward(int sig) {
    if (forward_to != 0) sys(__NR_kill, forward_to, sig, 0, 0, 0);
}

static void ignore_signal(int sig) { (void)sig; }

/* Block the signals passed on until the handler is in place: a SIGTERM that arrives between a fork and the
 * sigaction would otherwise end this process instead of reaching the task (the task may already run). */
static sigmask block_passed_on(void) {
    sigmask mask = 0;
    for (unsigned long i = 0; i < PASSED_ON; i++) mask |= bit(passed_on[i]);
    return set_mask(SIG_BLOCK, mask);
}

/* Pass the signals on to `target` from now on; then let the blocked ones (and any pending) through. */
static void forward_signals(long target, sigmask previous) {
    forward_to = target;
    for (unsigned long i = 0; i < PASSED_ON; i++) on_signal(passed_on[i], forward, SA_RESTART);
    set_mask(SIG_SETMASK, previous);
}

#include "container_cgroups.c" /* --cgroup, --write, --reuse, --recycle: struct setup container */
#include "oom_watch.c"        /* --oom */

/* ---- processes ---- */

/* Wait for `child`, reaping any other child met meanwhile (the namespace's init inherits orphans); with --oom,
 * an OOM kill in the container SIGKILLs `on_oom` (oom_watch.c). */
static int wait_for(long child, long on_oom) {
    int status = 0;
    watch_children();
    for (;;) {
        long ended = sys(__NR_wait4, -1, (long)&status, container.oom_event >= 0 ? WNOHANG : 0, 0, 0);
        if (ended == child) break;
        if (ended == 0) await_child_or_oom(on_oom);
        else if (ended < 0 && ended != -EINTR) return SETUP_FAILED;
    }
    /* A signal is passed up as 128 + its number, as a shell does; the outer process turns it back. */
    int signal = status & 0x7f;
    return signal != 0 && signal != 0x7f ? SIGNAL_BASE + signal : (status >> 8) & 0xff;
}

/* The outer process: end as the namespace ended (a signal as that signal, so the agent sees it as such). */
static int end_like(int code) {
    if (code > SIGNAL_BASE && code < SIGNAL_BASE + MAX_SIGNAL) {
        int signal = code - SIGNAL_BASE;
        on_signal(signal, 0 /* SIG_DFL */, 0);
        set_mask(SIG_SETMASK, 0);
        sys(__NR_kill, sys(__NR_getpid, 0, 0, 0, 0, 0), signal, 0, 0, 0);
    }
    return code;
}

/* Keep the task's exit status where the agent finds it after a restart. */
static void record_status(const char *path, int code) {
    if (path == 0) return;
    long fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    char digits[22];
    const char *text = decimal(code, digits);
    digits[20] = '\n';
    digits[21] = 0;
    say((int)fd, text);
    sys(__NR_close, fd, 0, 0, 0, 0);
}

/* The task (or its namespace) has ended: record how, take its cgroups down (--remove), end as it did. */
static void finish(const char *status_path, int code) {
    record_status(status_path, code);
    remove_cgroups();
    quit(end_like(code));
}

/* ---- starting the task ---- */

static int run(char **argv, char **envp);

/* The task's side of spawn_task(), on a stack of its own and in this process's memory until it execs. */
static int start_task(void *unused) {
    (void)unused;
    if (command.join && join_container() < 0) return SETUP_FAILED;
    if (command.own_group) sys(__NR_setpgid, 0, 0, 0, 0, 0);
    restore_oom_score();
    set_mask(SIG_SETMASK, command.mask); /* the task starts with the mask it was given */
    return run(command.argv, command.envp);
}

/* Start the task as vfork does (CLONE_VM | CLONE_VFORK): no copy of this process's memory is made, then torn
 * down again by the exec (in a VM the teardown's TLB shootdown interrupts the other cpus); this process waits
 * until the task has exec'd. */
static long spawn_task(int join, sigmask mask) {
    struct run *run = this_run();
    command.join = join;
    command.mask = mask;
    run->task_side = 1; /* here, not by CLONE_CHILD_SETTID: this process may be killed before that side runs */
    long flags = CLONE_VM | CLONE_VFORK | CLONE_CHILD_CLEARTID | SIGCHLD;
    char *top = run->task_stack + sizeof run->task_stack;
    long task = spawn_on_stack(flags, top, start_task, 0, 0, &run->task_side);
    if (task < 0) run->task_side = 0;
    return task;
}

/* Without a namespace: start the task, outlive a group SIGTERM, then finish() as the task ended. */
static int run_recording(const char *status_path) {
    sigmask previous = block_passed_on();
    long task = spawn_task(1, previous);
    if (task < 0) return -1;
    /* a handler, not SIG_IGN: the task must not inherit an ignore */
    for (unsigned long i = 0; i < PASSED_ON; i++) on_signal(passed_on[i], ignore_signal, 0);
    set_mask(SIG_SETMASK, previous);
    finish(status_path, wait_for(task, task));
    return -1;
}

/* The namespace's own /proc, in a mount namespace of its own (the caller's, unshared already or now). */
static int mount_proc(int unshare_first) {
    long failed = unshare_first ? sys(__NR_unshare, CLONE_NEWNS, 0, 0, 0, 0) : 0;
    if (failed == 0) failed = sys(__NR_mount, (long)"none", (long)"/", 0, MS_REC | MS_PRIVATE, 0);
    long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (failed == 0) failed = sys(__NR_mount, (long)"proc", (long)"/proc", (long)"proc", flags, 0);
    if (failed < 0) complain("mount /proc", "", failed);
    return failed < 0 ? -1 : 0;
}

/* The namespace's init (pid 1): mounts its /proc, runs the task as pid 2, passes signals on to it. The
 * kernel drops signals to an init that has no handler, so the task itself must not be pid 1. */
static int run_init(sigmask previous) {
    sys(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* the outer process died: take the namespace down */
    if (join_container() < 0 || mount_proc(0) < 0) return -1;
    long task = spawn_task(0, previous);
    if (task < 0) return -1;
    forward_signals(task, previous);
    container.oom_event = -1; /* the outer process watches */
    quit(wait_for(task, 0));
    return -1;
}

/* The agent made the pid namespace and started this process as its init (pid 1): one process fewer than
 * enter_pid_namespace(). It runs the task as pid 2, passes signals on to it and reaps orphans; when the task
 * has ended it ends the rest of the namespace, and then takes the cgroups down as the outer process would.
 * The task leads a process group of its own, which the init passes signals on to: a kill signals the init's
 * group, and the task hears each signal once, not once from the kill and again from the init.
 * An init cannot end by a signal of its own, so a task's signal N leaves as exit code 128 + N (the agent reads
 * it back as the signal, as it does the recorded status). */
static int run_as_init(const char *status_path) {
    if (mount_proc(1) < 0) return -1;
    sigmask previous = block_passed_on();
    command.own_group = 1;
    long task = spawn_task(1, previous);
    if (task < 0) return -1;
    forward_signals(-task, previous);
    int code = wait_for(task, -1);
    forward_to = 0;
    /* Every process of the namespace descends from its init, so one with no child left is alone in it. Else
     * the namespace ends with its task (kill(-1) walks every process of the machine: only when needed). */
    if (sys(__NR_wait4, -1, 0, WNOHANG, 0, 0) != -ECHILD) {
        sys(__NR_kill, -1, SIGKILL, 0, 0, 0);
        while (sys(__NR_wait4, -1, 0, 0, 0, 0) != -ECHILD) continue;
    }
    finish(status_path, code);
    return -1;
}

static int enter_pid_namespace(const char *status_path) {
    long failed = sys(__NR_unshare, CLONE_NEWPID | CLONE_NEWNS, 0, 0, 0, 0);
    if (failed < 0) {
        complain("unshare", "", failed);
        return -1;
    }
    sigmask previous = block_passed_on();
    long init = fork_process();
    if (init < 0) return -1;
    if (init == 0) return run_init(previous);
    forward_signals(init, previous);
    finish(status_path, wait_for(init, init));
    return -1;
}

#include "run_command.c" /* run(): exec the command, searching PATH as execvp does */

static int isolate(int argc, char **argv, char **envp) {
    const char *status_path = 0;
    int pidns = 0, i;
    start_run();
    for (i = 1; i < argc && !same(argv[i], "--"); i++) {
        if (same(argv[i], "--pidns")) {
            pidns = container.pidns = 1;
        } else if (same(argv[i], "--remove")) {
            container.remove = 1;
        } else if (same(argv[i], "--exit-status") && i + 1 < argc) {
            status_path = argv[++i];
        } else if (same(argv[i], "--cgroup") && i + 1 < argc && container.n_cgroups < MAX_CGROUPS) {
            container.cgroups[container.n_cgroups++] = argv[++i];
        } else if (same(argv[i], "--write") && i + 2 < argc && container.n_writes < MAX_WRITES) {
            container.writes[container.n_writes][0] = argv[++i];
            container.writes[container.n_writes++][1] = argv[++i];
        } else if (same(argv[i], "--oom") && i + 1 < argc) {
            container.oom_file = argv[++i];
        } else if (same(argv[i], "--reuse") && i + 1 < argc) {
            container.reuse = argv[++i];
        } else if (same(argv[i], "--recycle") && i + 1 < argc) {
            container.recycle = argv[++i];
        } else if (same(argv[i], "--reset") && i + 2 < argc && container.n_resets < MAX_WRITES) {
            container.resets[container.n_resets][0] = argv[++i];
            container.resets[container.n_resets++][1] = argv[++i];
        } else if (same(argv[i], "--recycle-below") && i + 2 < argc) {
            container.usage_file = argv[++i];
            container.usage_limit = number(argv[++i]);
        } else if (argv[i][0] != '-' && container.n_joins < MAX_CGROUPS) {
            container.joins[container.n_joins++] = argv[i];
        } else {
            i = argc; /* an option it does not know, or too many: refuse below */
        }
    }
    if (i + 1 >= argc) {
        say(2, "usage: butte-isolate [--exit-status FILE] [--cgroup DIR]... [--reuse NAME] [--write FILE VALUE]... "
               "[--oom FILE] [CGROUP_PROCS]... [--pidns] [--remove [--recycle NAME] [--reset FILE VALUE]... "
               "[--recycle-below FILE BYTES]] -- COMMAND [ARG]...\n");
        return SETUP_FAILED;
    }
    command.argv = argv + i + 1;
    command.envp = envp;
    if (set_up() < 0) return SETUP_FAILED;
    if (pidns && sys(__NR_getpid, 0, 0, 0, 0, 0) == 1) {
        run_as_init(status_path); /* returns only when the task could not be started */
    } else if (pidns) {
        enter_pid_namespace(status_path); /* returns only when the namespace could not be made */
    } else if (status_path != 0 || container.remove) {
        run_recording(status_path); /* returns only when the task could not be started */
    } else {
        return join_container() < 0 ? SETUP_FAILED : run(command.argv, command.envp);
    }
    return SETUP_FAILED;
}

#include "spawner.c" /* --spawner FD: serve(), the agent's spawning process */

static int start(int argc, char **argv, char **envp) {
    return argc == 3 && same(argv[1], "--spawner") ? serve(number(argv[2])) : isolate(argc, argv, envp);
}

#ifdef BUTTE_NOLIBC
void start_c(long *stack) {
    int argc = (int)stack[0];
    char **argv = (char **)(stack + 1);
    quit(start(argc, argv, argv + argc + 1));
}
#else
int main(int argc, char **argv, char **envp) { return start(argc, argv, envp); }
#endif
