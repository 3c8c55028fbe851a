/* butte-isolate: land a task in its container, then exec it; the agent's one exec per isolated task.
 *
 * Usage: butte-isolate [--exit-status FILE] [--cgroup DIR]... [--reuse NAME] [--write FILE VALUE]...
 *                      [--oom-eventfd FD FILE] [CGROUP_PROCS_FILE]... [--pidns]
 *                      [--remove [--recycle NAME] [--reset FILE VALUE]... [--recycle-below FILE BYTES]]
 *                      -- COMMAND [ARG]...
 *
 * With --cgroup it makes the container's cgroup DIR itself (it may be there already), then writes each
 * --write VALUE (the limits), then registers the eventfd FD it inherited from the agent for the OOM
 * notifications of FILE (cgroup v1 memory.oom_control, through cgroup.event_control in the same directory) and
 * closes it. The task's side (the process that execs the task, or the namespace's init) then joins each
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
 * namespace, down. It exits as the task did. Replaces `sh -c <join>` + `unshare --pid --fork
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

#define SETUP_FAILED 125
#define SIGNAL_BASE 128
#define MAX_SIGNAL 64

typedef unsigned long sigmask;

#ifdef BUTTE_NOLIBC

/* Signal numbers and flags as the kernel has them on x86-64 and arm64 (the C library's headers are not used). */
#define SIGHUP 1
#define SIGINT 2
#define SIGQUIT 3
#define SIGKILL 9
#define SIGUSR1 10
#define SIGUSR2 12
#define SIGTERM 15
#define SIGCHLD 17
#define SIG_BLOCK 0
#define SIG_SETMASK 2
#define SA_RESTART 0x10000000UL
#define SA_RESTORER 0x04000000UL

#if defined(__x86_64__)
static long sys(long n, long a, long b, long c, long d, long e) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n\txor %ebp, %ebp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n"
        "\tcall start_c\n\thlt\n"
        ".global restore_rt\nrestore_rt:\n\tmov $15, %eax\n\tsyscall\n");
void restore_rt(void);
#define RESTORER ((unsigned long)restore_rt)
/* clone(flags, stack_top); the child calls fn(arg) on that stack and exits with what it returns. */
__asm__(".text\n.global spawn_on_stack\nspawn_on_stack:\n\tmov %rdx, %r8\n\tmov %rcx, %r9\n"
        "\txor %edx, %edx\n\txor %r10d, %r10d\n\tmov $56, %eax\n\tsyscall\n\ttest %rax, %rax\n\tjnz 1f\n"
        "\txor %ebp, %ebp\n\tmov %r9, %rdi\n\tcall *%r8\n\tmov %eax, %edi\n\tmov $231, %eax\n\tsyscall\n"
        "\thlt\n1:\tret\n");
#elif defined(__aarch64__)
static long sys(long n, long a, long b, long c, long d, long e) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n\tmov x0, sp\n\tbl start_c\n");
#define RESTORER 0UL /* the kernel returns through the vDSO's trampoline */
__asm__(".text\n.global spawn_on_stack\nspawn_on_stack:\n\tmov x9, x2\n\tmov x10, x3\n\tmov x2, xzr\n"
        "\tmov x3, xzr\n\tmov x4, xzr\n\tmov x8, #220\n\tsvc #0\n\tcbnz x0, 1f\n\tmov x0, x10\n\tblr x9\n"
        "\tmov x8, #94\n\tsvc #0\n1:\tret\n");
#else
#error "BUTTE_NOLIBC: no system call glue for this architecture (build without it)"
#endif

long spawn_on_stack(long flags, void *stack_top, int (*fn)(void *), void *arg);

/* The compiler may call these for struct copies; nothing else here needs the C library. */
void *memset(void *to, int value, unsigned long n) {
    unsigned char *bytes = to;
    while (n--) *bytes++ = (unsigned char)value;
    return to;
}
void *memcpy(void *to, const void *from, unsigned long n) {
    unsigned char *out = to;
    const unsigned char *in = from;
    while (n--) *out++ = *in++;
    return to;
}

#else /* with the C library, for architectures without the glue above: the same raw calls */

#include <errno.h>
#include <signal.h>
#include <unistd.h>
static long sys(long n, long a, long b, long c, long d, long e) {
    long ret = syscall(n, a, b, c, d, e);
    return ret == -1 ? -errno : ret;
}
extern int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);
static long spawn_on_stack(long flags, void *stack_top, int (*fn)(void *), void *arg) {
    long pid = clone(fn, stack_top, (int)flags, arg);
    return pid == -1 ? -errno : pid;
}

#endif

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

static long open_file(const char *path, long flags, long mode) {
    return sys(__NR_openat, AT_FDCWD, (long)path, flags | O_CLOEXEC, mode, 0);
}

static long fork_process(void) { return sys(__NR_clone, SIGCHLD, 0, 0, 0, 0); }

static void quit(int code) {
    for (;;) sys(__NR_exit_group, code, 0, 0, 0, 0);
}

/* Write `value` to a control file; on failure say "<what><path>" and return -1. */
static int write_value(const char *path, const char *value, const char *what) {
    long fd = open_file(path, O_WRONLY, 0);
    long written = fd < 0 ? fd : sys(__NR_write, fd, (long)value, (long)length(value), 0, 0);
    if (fd >= 0) sys(__NR_close, fd, 0, 0, 0, 0);
    if (written < 0) {
        complain(what, path, written);
        return -1;
    }
    return 0;
}

static int join_cgroup(const char *procs_file, const char *pid) {
    return write_value(procs_file, pid, "cannot join ");
}

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

/* Where the signals a kill sends (SIGTERM first, for the grace period) are passed on to. */
static volatile long forward_to = 0;

static void forward(int sig) {
    if (forward_to > 0) sys(__NR_kill, forward_to, sig, 0, 0, 0);
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

/* ---- the container's cgroups, when the helper makes them (--cgroup, --write, --oom-eventfd, --remove) ---- */

#define MAX_CGROUPS 8
#define MAX_WRITES 16
#define PATH_BYTES 4096

struct setup {
    const char *cgroups[MAX_CGROUPS]; /* made here, in this order */
    int n_cgroups;
    const char *writes[MAX_WRITES][2]; /* file, value */
    int n_writes;
    long oom_eventfd;
    const char *oom_file;
    int remove;
    const char *joins[MAX_CGROUPS]; /* cgroup.procs files of cgroups made by the agent */
    int n_joins;
    const char *reuse;   /* a recycled cgroup's name, taken over in place of a mkdir */
    const char *recycle; /* the name the cgroups go under when the task has ended, in place of a rmdir */
    const char *resets[MAX_WRITES][2]; /* written before they are recycled (counters back to zero) */
    int n_resets;
    const char *usage_file; /* recycled only when this file's number is at most usage_limit */
    long usage_limit;
    int pidns; /* the task runs in a pid namespace: when it ends, every process of the container has */
};

/* The container this run sets up (isolate() fills it in from the arguments). */
static struct setup container;

/* `dir` + "/" + `name` into `out` (PATH_BYTES); 0 when it does not fit. */
static const char *join_path(char *out, const char *dir, const char *name) {
    unsigned long a = length(dir), b = length(name);
    if (a + 1 + b + 1 > PATH_BYTES) return 0;
    for (unsigned long i = 0; i < a; i++) out[i] = dir[i];
    out[a] = '/';
    for (unsigned long i = 0; i <= b; i++) out[a + 1 + i] = name[i];
    return out;
}

/* cgroup v1's OOM notification: "<eventfd> <fd of memory.oom_control>" into cgroup.event_control beside it. */
static int register_oom_eventfd(long eventfd, const char *oom_file) {
    char control_path[PATH_BYTES], digits[21], line[48];
    unsigned long n = length(oom_file);
    while (n > 0 && oom_file[n - 1] != '/') n--;
    if (n == 0 || n + sizeof "cgroup.event_control" > PATH_BYTES) return -1;
    for (unsigned long i = 0; i < n; i++) control_path[i] = oom_file[i];
    const char *name = "cgroup.event_control";
    for (unsigned long i = 0; i <= length(name); i++) control_path[n + i] = name[i];
    long control = open_file(oom_file, O_RDONLY, 0);
    if (control < 0) {
        complain("cannot open ", oom_file, control);
        return -1;
    }
    unsigned long at = 0;
    for (const char *d = decimal(eventfd, digits); *d; d++) line[at++] = *d;
    line[at++] = ' ';
    for (const char *d = decimal(control, digits); *d; d++) line[at++] = *d;
    line[at] = 0;
    int result = write_value(control_path, line, "cannot write ");
    sys(__NR_close, control, 0, 0, 0, 0);
    return result;
}

/* `name` beside `dir` (in its parent) into `out` (PATH_BYTES); 0 when it does not fit. */
static const char *sibling(char *out, const char *dir, const char *name) {
    unsigned long n = length(dir);
    while (n > 0 && dir[n - 1] != '/') n--;
    if (n == 0 || n + length(name) + 1 > PATH_BYTES) return 0;
    for (unsigned long i = 0; i < n; i++) out[i] = dir[i];
    for (unsigned long i = 0; i <= length(name); i++) out[n + i] = name[i];
    return out;
}

static long rename_dir(const char *from, const char *to) {
    return sys(__NR_renameat2, AT_FDCWD, (long)from, AT_FDCWD, (long)to, 0);
}

/* The number at the start of a small file, or -1. */
static long read_number(const char *path) {
    char text[32];
    long fd = open_file(path, O_RDONLY, 0);
    long n = fd < 0 ? fd : sys(__NR_read, fd, (long)text, sizeof text - 1, 0, 0);
    if (fd >= 0) sys(__NR_close, fd, 0, 0, 0, 0);
    if (n <= 0 || text[0] < '0' || text[0] > '9') return -1;
    long value = 0;
    for (long i = 0; i < n && text[i] >= '0' && text[i] <= '9'; i++) value = value * 10 + (text[i] - '0');
    return value;
}

/* Make (or take over a recycled) cgroup, write the limits, register for OOM events: all before the joins. */
static int set_up(void) {
    struct setup *setup = &container;
    char idle[PATH_BYTES];
    for (int i = 0; i < setup->n_cgroups; i++) {
        if (setup->reuse != 0 && sibling(idle, setup->cgroups[i], setup->reuse) != 0 &&
            rename_dir(idle, setup->cgroups[i]) == 0) {
            continue;
        }
        long made = sys(__NR_mkdirat, AT_FDCWD, (long)setup->cgroups[i], 0755, 0, 0);
        if (made < 0 && made != -EEXIST) {
            complain("cannot make ", setup->cgroups[i], made);
            return -1;
        }
    }
    for (int i = 0; i < setup->n_writes; i++) {
        if (write_value(setup->writes[i][0], setup->writes[i][1], "cannot write ") < 0) return -1;
    }
    if (setup->oom_file != 0) {
        int registered = register_oom_eventfd(setup->oom_eventfd, setup->oom_file);
        sys(__NR_close, setup->oom_eventfd, 0, 0, 0, 0); /* the task must not hold it; the agent keeps its own */
        if (registered < 0) return -1;
    }
    return 0;
}

/* Whether FILE counts an OOM kill ("oom_kill N", N > 0): the agent then reads the limitation there. */
static int oom_killed(const char *oom_file) {
    char text[1024];
    long fd = open_file(oom_file, O_RDONLY, 0);
    if (fd < 0) return 0;
    long n = sys(__NR_read, fd, (long)text, sizeof text - 1, 0, 0);
    sys(__NR_close, fd, 0, 0, 0, 0);
    if (n <= 0) return 0;
    text[n] = 0;
    const char *key = "oom_kill ";
    for (const char *line = text; *line;) {
        const char *k = key, *c = line;
        while (*k && *c == *k) c++, k++;
        if (*k == 0) return *c >= '1' && *c <= '9';
        while (*line && *line != '\n') line++;
        if (*line == '\n') line++;
    }
    return 0;
}

/* Land the calling process in the container's cgroups ("0": the writer), so that all it starts stays there. The
 * task's side of a fork does this, never the process that outlives the task: that one must not keep the
 * cgroups busy when it removes them. */
static int join_container(void) {
    char procs[PATH_BYTES];
    for (int i = 0; i < container.n_cgroups; i++) {
        if (join_path(procs, container.cgroups[i], "cgroup.procs") == 0 || join_cgroup(procs, "0") < 0) return -1;
    }
    for (int i = 0; i < container.n_joins; i++) {
        if (join_cgroup(container.joins[i], "0") < 0) return -1;
    }
    return 0;
}

/* Whether a cgroup has no process left (a rename, unlike a rmdir, would take them along). */
static int empty_cgroup(const char *dir) {
    char procs[PATH_BYTES], pid[8];
    if (join_path(procs, dir, "cgroup.procs") == 0) return 0;
    long fd = open_file(procs, O_RDONLY, 0);
    long n = fd < 0 ? fd : sys(__NR_read, fd, (long)pid, sizeof pid, 0, 0);
    if (fd >= 0) sys(__NR_close, fd, 0, 0, 0, 0);
    return n == 0;
}

/* Whether the cgroups may go back to the agent's pool (--recycle): nothing left charged above the limit and,
 * unless a pid namespace took every process with it, no process left. */
static int recyclable(void) {
    if (container.recycle == 0) return 0;
    if (!container.pidns) {
        for (int i = 0; i < container.n_cgroups; i++) {
            if (!empty_cgroup(container.cgroups[i])) return 0;
        }
    }
    if (container.usage_file == 0) return 1;
    long used = read_number(container.usage_file);
    return used >= 0 && used <= container.usage_limit;
}

/* The task has ended (--remove): recycle the cgroups under their new name, counters reset (--recycle), or
 * remove them, last made first. Stops at the first that will not go (still busy: the agent kills what is left
 * and removes the rest). */
static void remove_cgroups(void) {
    if (!container.remove || (container.oom_file != 0 && oom_killed(container.oom_file))) return;
    int recycle = recyclable();
    char idle[PATH_BYTES];
    if (recycle) {
        for (int i = 0; i < container.n_resets; i++) {
            write_value(container.resets[i][0], container.resets[i][1], "cannot reset ");
        }
    }
    for (int i = container.n_cgroups - 1; i >= 0; i--) {
        const char *dir = container.cgroups[i];
        if (recycle && sibling(idle, dir, container.recycle) != 0 && rename_dir(dir, idle) == 0) continue;
        if (sys(__NR_unlinkat, AT_FDCWD, (long)dir, AT_REMOVEDIR, 0, 0) < 0) return;
    }
}

/* ---- processes ---- */

/* Wait for `child`, reaping any other child met meanwhile (the namespace's init inherits orphans). */
static int wait_for(long child) {
    int status = 0;
    for (;;) {
        long ended = sys(__NR_wait4, -1, (long)&status, 0, 0, 0);
        if (ended == child) break;
        if (ended < 0 && ended != -EINTR) return SETUP_FAILED;
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

/* The command, and how the task's side starts it (isolate() and spawn_task() fill it in). */
static struct {
    char **argv;
    char **envp;
    int join;
    sigmask mask;
} command;

static int run(char **argv, char **envp);

/* The task's side of spawn_task(), on a stack of its own and in this process's memory until it execs. */
static int start_task(void *unused) {
    (void)unused;
    if (command.join && join_container() < 0) return SETUP_FAILED;
    set_mask(SIG_SETMASK, command.mask); /* the task starts with the mask it was given */
    return run(command.argv, command.envp);
}

static char task_stack[1 << 16] __attribute__((aligned(16)));

/* Start the task as vfork does (CLONE_VM | CLONE_VFORK): no copy of this process's memory is made, then torn
 * down again by the exec (in a VM the teardown's TLB shootdown interrupts the other cpus); this process waits
 * until the task has exec'd. */
static long spawn_task(int join, sigmask mask) {
    command.join = join;
    command.mask = mask;
    return spawn_on_stack(CLONE_VM | CLONE_VFORK | SIGCHLD, task_stack + sizeof task_stack, start_task, 0);
}

/* Without a namespace: start the task, outlive a group SIGTERM, then finish() as the task ended. */
static int run_recording(const char *status_path) {
    sigmask previous = block_passed_on();
    long task = spawn_task(1, previous);
    if (task < 0) return -1;
    /* a handler, not SIG_IGN: the task must not inherit an ignore */
    for (unsigned long i = 0; i < PASSED_ON; i++) on_signal(passed_on[i], ignore_signal, 0);
    set_mask(SIG_SETMASK, previous);
    finish(status_path, wait_for(task));
    return -1;
}

/* The namespace's init (pid 1): mounts its /proc, runs the task as pid 2, passes signals on to it. The
 * kernel drops signals to an init that has no handler, so the task itself must not be pid 1. */
static int run_init(sigmask previous) {
    sys(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* the outer process died: take the namespace down */
    if (join_container() < 0) return -1;
    long failed = sys(__NR_mount, (long)"none", (long)"/", 0, MS_REC | MS_PRIVATE, 0);
    if (failed == 0) failed = sys(__NR_mount, (long)"proc", (long)"/proc", (long)"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0);
    if (failed < 0) {
        complain("mount /proc", "", failed);
        return -1;
    }
    long task = spawn_task(0, previous);
    if (task < 0) return -1;
    forward_signals(task, previous);
    quit(wait_for(task));
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
    finish(status_path, wait_for(init));
    return -1;
}

/* ---- exec, searching PATH as execvp does ---- */

static const char *path_of(char **envp) {
    for (; *envp; envp++) {
        const char *entry = *envp;
        if (entry[0] == 'P' && entry[1] == 'A' && entry[2] == 'T' && entry[3] == 'H' && entry[4] == '=') {
            return entry + 5;
        }
    }
    return "/usr/local/bin:/usr/bin:/bin";
}

static long run_command(char **argv, char **envp) {
    const char *name = argv[0];
    for (const char *c = name; *c; c++) {
        if (*c == '/') return sys(__NR_execve, (long)name, (long)argv, (long)envp, 0, 0);
    }
    char candidate[4096];
    unsigned long name_length = length(name);
    long result = -ENOENT;
    for (const char *dir = path_of(envp); *dir;) {
        unsigned long n = 0;
        while (dir[n] && dir[n] != ':') n++;
        if (n + 1 + name_length < sizeof candidate) {
            unsigned long at = 0;
            for (unsigned long i = 0; i < n; i++) candidate[at++] = dir[i];
            if (n == 0) candidate[at++] = '.';
            candidate[at++] = '/';
            for (unsigned long i = 0; i <= name_length; i++) candidate[at++] = name[i];
            long error = sys(__NR_execve, (long)candidate, (long)argv, (long)envp, 0, 0);
            if (error == -EACCES) result = error; /* keep looking, as execvp does, but report this */
            else if (error != -ENOENT && error != -ENOTDIR) return error;
        }
        dir += n;
        if (*dir == ':') dir++;
    }
    return result;
}

/* The task's side: exec the command (127: not found, 126: not runnable). */
static int run(char **argv, char **envp) {
    long error = run_command(argv, envp);
    complain("cannot run ", argv[0], error);
    return error == -ENOENT ? 127 : 126;
}

static int isolate(int argc, char **argv, char **envp) {
    const char *status_path = 0;
    int pidns = 0, i;
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
        } else if (same(argv[i], "--oom-eventfd") && i + 2 < argc) {
            long fd = 0;
            for (const char *c = argv[++i]; *c >= '0' && *c <= '9'; c++) fd = fd * 10 + (*c - '0');
            container.oom_eventfd = fd;
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
            long limit = 0;
            for (const char *c = argv[++i]; *c >= '0' && *c <= '9'; c++) limit = limit * 10 + (*c - '0');
            container.usage_limit = limit;
        } else if (argv[i][0] != '-' && container.n_joins < MAX_CGROUPS) {
            container.joins[container.n_joins++] = argv[i];
        } else {
            i = argc; /* an option it does not know, or too many: refuse below */
        }
    }
    if (i + 1 >= argc) {
        say(2, "usage: butte-isolate [--exit-status FILE] [--cgroup DIR]... [--reuse NAME] [--write FILE VALUE]... "
               "[--oom-eventfd FD FILE] [CGROUP_PROCS]... [--pidns] [--remove [--recycle NAME] [--reset FILE VALUE]... "
               "[--recycle-below FILE BYTES]] -- COMMAND [ARG]...\n");
        return SETUP_FAILED;
    }
    command.argv = argv + i + 1;
    command.envp = envp;
    if (set_up() < 0) return SETUP_FAILED;
    if (pidns) {
        enter_pid_namespace(status_path); /* returns only when the namespace could not be made */
    } else if (status_path != 0 || container.remove) {
        run_recording(status_path); /* returns only when the task could not be started */
    } else {
        return join_container() < 0 ? SETUP_FAILED : run(command.argv, command.envp);
    }
    return SETUP_FAILED;
}

#ifdef BUTTE_NOLIBC
void start_c(long *stack) {
    int argc = (int)stack[0];
    char **argv = (char **)(stack + 1);
    quit(isolate(argc, argv, argv + argc + 1));
}
#else
int main(int argc, char **argv, char **envp) { return isolate(argc, argv, envp); }
#endif
