/* What one run of butte-isolate keeps, and where (included by butte_isolate.c, one translation unit).
 *
 * Run on its own (exec'd), the program is one run and keeps it in `solo`. Under the spawner (spawner.c) every
 * run is a child that shares the spawner's memory (CLONE_VM): a fork's copy of the address space, and its
 * teardown at the exit, cost ~0.35 ms of machine CPU per process on this VM, 0.1-0.3 ms per isolated task in
 * a burst (docs/decisions.md, session 10). Runs in one memory cannot keep their state in globals, so
 * each has a slot, an aligned block of the spawner's memory with the run's state at its base and its stack at
 * its top (the task's side of spawn_task() has a stack inside the state), and this_run() finds the slot from
 * the stack pointer, as a kernel finds its current task from its stack. `container`, `command` and
 * `forward_to` below read as globals but are this_run()'s fields, as errno is the C library's per thread.
 */

#ifdef BUTTE_NOLIBC
#define RUNS_SHARE_MEMORY 1
#else /* the C library's errno is in the spawner thread's memory: each child gets a copy, its state in `solo` */
#define RUNS_SHARE_MEMORY 0
#endif
#define RUN_SLOT_BYTES (1UL << 20) /* a power of two: the slot is found by masking the stack pointer */
#define RUN_REQUEST_BYTES (1 << 18)
#define RUN_MAX_POINTERS 16384

/* The container's cgroups, when the helper makes them (container_cgroups.c). */

#define MAX_CGROUPS 8
#define MAX_WRITES 16
#define PATH_BYTES 4096

struct setup {
    const char *cgroups[MAX_CGROUPS]; /* made here, in this order */
    int n_cgroups;
    const char *writes[MAX_WRITES][2]; /* file, value */
    int n_writes;
    const char *oom_file; /* memory.oom_control: watched for OOM kills (oom_watch.c) */
    long oom_event;       /* the eventfd the kernel signals on an OOM; -1: none (or no more) */
    long oom_control;     /* oom_file, open: -1 when not watched */
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
    /* Each cgroup's parent directory and the cgroup, open (O_PATH) from set_up() on, the first n_open of them:
     * every other open, rename and removal then looks one name up where a path would walk /sys/fs/cgroup/...
     * again, kernfs checking each component (some twenty walks per task, ~10% of this helper's time in a burst). */
    long parent_fds[MAX_CGROUPS], dir_fds[MAX_CGROUPS];
    int n_open;
};

/* The command, and how the task's side starts it (isolate() and spawn_task() fill it in). */
struct task_start {
    char **argv;
    char **envp;
    int join;
    int own_group; /* the task leads a process group of its own */
    sigmask mask;
};

struct run {
    struct setup container; /* the container this run sets up (isolate() fills it in from the arguments) */
    struct task_start command;
    /* Where the signals a kill sends (SIGTERM first, for the grace period) are passed on to (negative: a group). */
    volatile long forward_to;
    /* Set while the task's side of spawn_task() runs in this memory: the kernel clears it when that side execs or
     * exits (CLONE_CHILD_CLEARTID). A slot is not reused before then, even when a SIGKILL ended the run first. */
    volatile int task_side;
    /* The spawner's: the request, laid out as the run's argv and envp, the descriptors, the pidfd watched. */
    struct run *next_idle;
    long pid, pidfd, out, err, argc;
    const char *cwd;
    char *pointers[RUN_MAX_POINTERS]; /* the request's argv, a null, its envp, a null */
    char request[RUN_REQUEST_BYTES];
    char task_stack[1 << 16] __attribute__((aligned(16)));
};

static struct run solo; /* the run, when the program runs on its own */
static int runs_in_slots; /* set by the spawner before its first child: this_run() goes by the stack */
static void restore_oom_score(void); /* the task's side puts back the agent's (spawner_slots.c) */

static struct run *this_run(void) {
    if (!runs_in_slots) return &solo;
    char on_the_stack;
    unsigned long at = (unsigned long)&on_the_stack;
    /* The compiler must not take the slot for that local (which it would be free to forget about once this
     * returns): an empty asm hides where the address came from. */
    __asm__("" : "+r"(at));
    return (struct run *)(at & ~(RUN_SLOT_BYTES - 1));
}

#define container (this_run()->container)
#define command (this_run()->command)
#define forward_to (this_run()->forward_to)

/* A run's own state, fresh (a slot's last run left its own there). */
static void start_run(void) {
    container = (struct setup){.oom_event = -1, .oom_control = -1};
    command = (struct task_start){0};
    forward_to = 0;
}
