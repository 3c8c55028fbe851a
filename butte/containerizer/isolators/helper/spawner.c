/* butte-isolate --spawner FD: the agent's spawning process (included by butte_isolate.c, one translation unit).
 *
 * The agent starts it once and asks it over FD (a SOCK_SEQPACKET socket) to start each process that
 * butte-isolate would run: it clones a child, which is that butte-isolate run straight away (isolate() on the
 * request's arguments), without the agent's fork and exec of the helper per task; with CLONE_NEWPID the child
 * is the new pid namespace's init. The child shares the spawner's memory, its state and stack in a slot of its
 * own (run_state.c, spawner_slots.c): no address space is copied and torn down per run. It watches each child
 * with a pidfd (no walk of every child per exit) and, when one ends, kills what is left in its process group,
 * tells the agent how it ended, and keeps the zombie, which holds the pid (and so the group id), until the agent
 * has taken note: the agent never signals a group whose id may have gone to someone else. See
 * containerizer/spawner.py for the agent's side.
 *
 * Requests, NUL-separated fields:
 *   "L" TOKEN FLAGS CWD ARGC ARG... ENVC ENV...  with the child's stdout and stderr (SCM_RIGHTS); FLAGS 1: in a
 *                                                new pid namespace. Answered "S TOKEN PID" or "E TOKEN ERRNO".
 *   "R" PID                                      the agent has seen PID's end: reap it.
 * and, unasked, "X PID CODE" when a child has ended (CODE: its exit code, or -N for signal N).
 * When the agent's end closes (the agent stopped or died), it reaps its children as they end, then exits:
 * the tasks run on, and their helpers record their exit status for the next agent.
 */

#define SPAWN_EVENTS 64
#define SPAWN_SOCKET_KEY (~0UL)
#define SPAWN_SOL_SOCKET 1
#define SPAWN_SCM_RIGHTS 1
#define SPAWN_MSG_TRUNC 0x20
#define SPAWN_MSG_CTRUNC 0x8
#define SPAWN_MSG_NOSIGNAL 0x4000
#define SPAWN_MSG_CMSG_CLOEXEC 0x40000000
#define SPAWN_P_PID 1
#define SPAWN_WEXITED 4
#define SPAWN_WNOWAIT 0x01000000
#define SPAWN_CLD_EXITED 1
#define SPAWN_IN_PID_NAMESPACE 1
#define SPAWN_RLIMIT_NOFILE 7

#include <linux/eventpoll.h>

struct io_vector {
    void *base;
    unsigned long length;
};

struct message_header { /* struct msghdr, as the kernel reads it */
    void *name;
    int name_length;
    struct io_vector *vector;
    unsigned long vector_length;
    void *control;
    unsigned long control_length;
    int flags;
};

struct descriptors_passed { /* struct cmsghdr with room for the two descriptors of a request */
    unsigned long length;
    int level;
    int type;
    int fds[2];
};

static char request[RUN_REQUEST_BYTES];

static struct {
    long socket;
    long epoll;
    long null; /* /dev/null: the children's stdin */
    long running; /* children not yet ended */
    unsigned long files_limit[2]; /* RLIMIT_NOFILE as the spawner was given it (soft, hard): its children's */
    int agent_gone;
} spawner;

static void close_fd(long fd) { sys(__NR_close, fd, 0, 0, 0, 0); }

#include "spawner_slots.c" /* take_slot(), give_slot(), shield_from_oom(): the runs' memory */

/* "<kind> <a> <b>" to the agent; a failure means the agent is gone. */
static void tell(char kind, long a, long b) {
    char line[64], digits[21];
    unsigned long at = 0;
    line[at++] = kind;
    for (int i = 0; i < 2; i++) {
        long value = i == 0 ? a : b;
        line[at++] = ' ';
        if (value < 0) line[at++] = '-';
        for (const char *d = decimal(value < 0 ? -value : value, digits); *d; d++) line[at++] = *d;
    }
    struct io_vector vector = {line, at};
    struct message_header message = {0, 0, &vector, 1, 0, 0, 0};
    if (!spawner.agent_gone && sys(__NR_sendmsg, spawner.socket, (long)&message, SPAWN_MSG_NOSIGNAL, 0, 0) < 0) {
        spawner.agent_gone = 1;
    }
}

/* The end of the strings from `strings[0]` up to a null (laid out one after the other in the request). */
static unsigned long strings_end(char **strings) {
    char *last = strings[0];
    while (strings[1]) strings++, last = *strings;
    return (unsigned long)(last + length(last) + 1);
}

/* A forked child's command line and environment are the spawner's (`ps` would show every container's helper
 * as the spawner): point them at the run's. PR_SET_MM_MAP takes the whole layout, as /proc/self/stat gives it
 * (fields 26-28 and 45-51), and needs no privilege; left as they are where it fails. The layout belongs to the
 * memory, so children that share the spawner's (RUNS_SHARE_MEMORY) show the spawner's: the price of not copying
 * an address space per run. */
static void show_command_line(char **argv, int argc) {
    char stat[1024];
    long n = sys(__NR_openat, AT_FDCWD, (long)"/proc/self/stat", O_RDONLY | O_CLOEXEC, 0, 0), fd = n;
    if (fd < 0) return;
    n = sys(__NR_read, fd, (long)stat, sizeof stat - 1, 0, 0);
    close_fd(fd);
    if (n <= 0) return;
    stat[n] = 0;
    char *at = stat + n;
    while (at > stat && *at != ')') at--; /* the name may hold spaces: count from its end */
    unsigned long field[52] = {0};
    for (int i = 2; i < 51 && *at; i++) {
        while (*at && *at != ' ') at++;
        while (*at == ' ') at++;
        field[i + 1] = (unsigned long)number(at);
    }
    struct { /* struct prctl_mm_map */
        unsigned long start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
        unsigned long arg_start, arg_end, env_start, env_end, auxv;
        unsigned int auxv_size, exe_fd;
    } map = {field[26], field[27], field[45], field[46], field[47], (unsigned long)sys(__NR_brk, 0, 0, 0, 0, 0),
             field[28], (unsigned long)argv[0], strings_end(argv), field[50], field[51], 0, 0, ~0U};
    char **envp = argv + argc + 1;
    if (envp[0] != 0) map.env_start = (unsigned long)envp[0], map.env_end = strings_end(envp);
    sys(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, (long)&map, sizeof map, 0);
}

/* The child: stdin, stdout, stderr, nothing else of the spawner's, a session of its own, then butte-isolate. */
static int start_child(void *slot) {
    struct run *run = slot;
    sys(__NR_setsid, 0, 0, 0, 0, 0);
    sys(__NR_dup3, spawner.null, 0, 0, 0, 0);
    sys(__NR_dup3, run->out, 1, 0, 0, 0);
    sys(__NR_dup3, run->err, 2, 0, 0, 0);
    if (spawner.files_limit[1] != 0) sys(__NR_prlimit64, 0, SPAWN_RLIMIT_NOFILE, (long)spawner.files_limit, 0, 0);
    if (sys(__NR_close_range, 3, ~0U, 0, 0, 0) < 0) {
        for (long fd = 3; fd < 4096; fd++) close_fd(fd);
    }
    if (!RUNS_SHARE_MEMORY) show_command_line(run->pointers, (int)run->argc);
    long failed = sys(__NR_chdir, (long)run->cwd, 0, 0, 0, 0);
    if (failed < 0) {
        complain("cannot enter ", run->cwd, failed);
        quit(SETUP_FAILED);
    }
    quit(isolate((int)run->argc, run->pointers, run->pointers + run->argc + 1));
    return SETUP_FAILED;
}

/* The child, in the spawner's memory on its slot's stack, or in a copy of that memory. */
static long clone_child(struct run *run, long flags, int *pidfd) {
#if RUNS_SHARE_MEMORY
    return spawn_on_stack(flags | CLONE_VM, (char *)run + RUN_SLOT_BYTES, start_child, run, pidfd, 0);
#else
    long pid = sys(__NR_clone, flags, 0, (long)pidfd, 0, 0);
    if (pid == 0) start_child(run);
    return pid;
#endif
}

/* Start the child of a request (the new pid namespace's init when asked, where the kernel allows); its pid. */
static long fork_child(struct run *run, long flags) {
    int pidfd = -1;
    long in_namespace = flags & SPAWN_IN_PID_NAMESPACE ? CLONE_NEWPID : 0;
    long pid = clone_child(run, SIGCHLD | CLONE_PIDFD | in_namespace, &pidfd);
    if ((pid == -EPERM || pid == -EINVAL) && in_namespace) {
        /* no namespace from here: butte-isolate makes it itself, or says why it cannot */
        pid = clone_child(run, SIGCHLD | CLONE_PIDFD, &pidfd);
    }
    if (pid < 0) return pid;
    run->pid = pid;
    run->pidfd = pidfd;
    struct epoll_event watch = {.events = EPOLLIN, .data = (unsigned long)run};
    sys(__NR_epoll_ctl, spawner.epoll, EPOLL_CTL_ADD, pidfd, (long)&watch, 0);
    spawner.running++;
    return pid;
}

/* The next NUL-terminated field of the request from `*at` (0 past its end). */
static char *field(char **at, const char *end) {
    char *start = *at, *c = start;
    while (c < end && *c) c++;
    if (c >= end) return 0;
    *at = c + 1;
    return start;
}

/* Lay the request's strings out as argv and envp in the run's `pointers`; argc, or -1 when they do not parse. */
static int parse_command(struct run *run, char **at, const char *end) {
    char **pointers = run->pointers;
    long used = 0, argc = -1;
    for (int part = 0; part < 2; part++) {
        char *count = field(at, end);
        long n = count ? number(count) : -1;
        if (n < 0 || used + n + 1 > RUN_MAX_POINTERS || (part == 0 && n == 0)) return -1;
        for (long i = 0; i < n; i++) {
            if ((pointers[used++] = field(at, end)) == 0) return -1;
        }
        pointers[used++] = 0;
        if (part == 0) argc = n;
    }
    return (int)argc;
}

/* Start a request's run: its strings go into its slot (the next request overwrites this buffer). */
static void launch(char *at, const char *end, const int *fds, int n_fds) {
    char *token = field(&at, end);
    struct run *run = token ? take_slot() : 0;
    long pid = token && !run ? -ENOMEM : -EINVAL;
    if (run != 0) {
        unsigned long n = (unsigned long)(end - at);
        for (unsigned long i = 0; i < n; i++) run->request[i] = at[i];
        char *next = run->request, *last = run->request + n, *flags = field(&next, last);
        run->cwd = field(&next, last);
        run->argc = flags && run->cwd && n_fds == 2 ? parse_command(run, &next, last) : -1;
        if (run->argc > 0) {
            run->out = fds[0];
            run->err = fds[1];
            pid = fork_child(run, number(flags));
        }
        if (pid < 0) give_slot(run);
    }
    for (int i = 0; i < n_fds; i++) close_fd(fds[i]);
    if (pid > 0) tell('S', number(token), pid);
    else tell('E', token ? number(token) : -1, -pid);
}

/* Read one request; 0 when the agent's end has closed. */
static int receive(void) {
    struct descriptors_passed passed = {0};
    struct io_vector vector = {request, sizeof request - 1};
    struct message_header message = {0, 0, &vector, 1, &passed, sizeof passed, 0};
    long n = sys(__NR_recvmsg, spawner.socket, (long)&message, SPAWN_MSG_CMSG_CLOEXEC, 0, 0);
    if (n == 0) return 0;
    if (n < 0) return n == -EINTR || n == -EAGAIN;
    request[n] = 0;
    int n_fds = 0;
    int rights = passed.level == SPAWN_SOL_SOCKET && passed.type == SPAWN_SCM_RIGHTS;
    if (message.control_length >= sizeof passed && rights) n_fds = (int)((passed.length - 16) / sizeof(int));
    if (message.flags & (SPAWN_MSG_TRUNC | SPAWN_MSG_CTRUNC)) {
        for (int i = 0; i < n_fds; i++) close_fd(passed.fds[i]);
        tell('E', -1, EMSGSIZE);
    } else if (request[0] == 'L' && request[1] == 0) {
        launch(request + 2, request + n, passed.fds, n_fds);
    } else {
        for (int i = 0; i < n_fds; i++) close_fd(passed.fds[i]);
        if (request[0] == 'R' && request[1] == 0) sys(__NR_wait4, number(request + 2), 0, WNOHANG, 0, 0);
    }
    return 1;
}

/* A child has ended: clear its group while its zombie holds the group's id, tell the agent, and keep the zombie
 * until the agent has read it (or reap it now, the agent being gone). */
static void ended(struct run *run) {
    long pid = run->pid, pidfd = run->pidfd;
    int info[32] = {0}; /* siginfo_t: si_code at [2], si_pid at [4], si_status at [6] */
    long known = sys(__NR_waitid, SPAWN_P_PID, pid, (long)info, SPAWN_WEXITED | SPAWN_WNOWAIT, 0);
    sys(__NR_epoll_ctl, spawner.epoll, EPOLL_CTL_DEL, pidfd, 0, 0);
    close_fd(pidfd);
    spawner.running--;
    give_slot(run); /* its memory is the spawner's again: the child is gone */
    if (known < 0) return; /* reaped already (the agent went away meanwhile) */
    sys(__NR_kill, -pid, SIGKILL, 0, 0, 0);
    tell('X', pid, info[2] == SPAWN_CLD_EXITED ? info[6] : -info[6]);
    if (spawner.agent_gone) sys(__NR_wait4, pid, 0, 0, 0, 0);
}

static int serve(long socket) {
    spawner.socket = socket;
    runs_in_slots = RUNS_SHARE_MEMORY; /* before the first child: every run's state is in its slot */
    shield_from_oom();
    /* Its children start with every signal at its default and none blocked, as a Popen's do: its starter's
     * ignored signals (Python ignores SIGPIPE; glibc's posix_spawn ignores its own two) would pass on to tasks. */
    struct kernel_sigaction by_default = {0}; /* all zero: SIG_DFL, whatever the field order; raw, as glibc
                                                  * refuses to touch its own */
    for (int sig = 1; sig <= MAX_SIGNAL; sig++) {
        if (sig != SIGKILL && sig != 19 /* SIGSTOP */) {
            sys(__NR_rt_sigaction, sig, (long)&by_default, 0, sizeof(sigmask), 0);
        }
    }
    set_mask(SIG_SETMASK, 0);
    /* A pidfd per running child: take all the descriptors the hard limit allows (children get the soft one back). */
    if (sys(__NR_prlimit64, 0, SPAWN_RLIMIT_NOFILE, 0, (long)spawner.files_limit, 0) == 0) {
        unsigned long raised[2] = {spawner.files_limit[1], spawner.files_limit[1]};
        sys(__NR_prlimit64, 0, SPAWN_RLIMIT_NOFILE, (long)raised, 0, 0);
    }
    do spawner.null = sys(__NR_openat, AT_FDCWD, (long)"/dev/null", O_RDWR | O_CLOEXEC, 0, 0);
    while (spawner.null >= 0 && spawner.null < 3); /* 0-2 taken: a request's descriptors are never those */
    spawner.epoll = sys(__NR_epoll_create1, O_CLOEXEC, 0, 0, 0, 0);
    struct epoll_event watch = {.events = EPOLLIN, .data = SPAWN_SOCKET_KEY};
    long failed = spawner.null < 0 ? spawner.null : spawner.epoll < 0 ? spawner.epoll : 0;
    if (failed == 0) failed = sys(__NR_epoll_ctl, spawner.epoll, EPOLL_CTL_ADD, socket, (long)&watch, 0);
    if (failed < 0) {
        complain("spawner", ": cannot start", failed);
        return SETUP_FAILED;
    }
    sys(__NR_chdir, (long)"/", 0, 0, 0, 0);
    struct epoll_event events[SPAWN_EVENTS];
    while (!spawner.agent_gone || spawner.running > 0) {
        long n = sys(__NR_epoll_pwait, spawner.epoll, (long)events, SPAWN_EVENTS, -1, 0);
        for (long i = 0; i < n; i++) {
            if (events[i].data != SPAWN_SOCKET_KEY) {
                ended((struct run *)events[i].data);
            } else if (spawner.agent_gone || !receive()) {
                spawner.agent_gone = 1; /* gone: EOF, or an answer it could not take */
                sys(__NR_epoll_ctl, spawner.epoll, EPOLL_CTL_DEL, socket, 0, 0);
                while (sys(__NR_wait4, -1, 0, WNOHANG, 0, 0) > 0) continue; /* the ends it was told of */
            }
        }
    }
    return 0;
}
