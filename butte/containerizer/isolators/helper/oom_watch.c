/* butte-isolate's watch of the container's OOMs (--oom FILE, cgroup v1's memory.oom_control; included by
 * butte_isolate.c, one translation unit, after container_cgroups.c).
 *
 * The helper registers an eventfd of its own for the memory cgroup's OOM notifications (cgroup.event_control)
 * and reads it while it waits for its task: when the kernel has OOM-killed in the container, the helper ends
 * the container (the namespace, or the task), leaves its cgroups for the agent, which reads the limitation
 * there (TASK_FAILED, REASON_CONTAINER_LIMITATION_MEMORY), as Mesos ends a container that hit its limit.
 * The agent holds no descriptor per container for it, and a restarted agent loses nothing: the helper watches
 * on its own. */

#define EVENT_FD_FLAGS (O_CLOEXEC | O_NONBLOCK) /* EFD_CLOEXEC, EFD_NONBLOCK */
#define READABLE 1 /* POLLIN */
/* An OOM notification comes as the cgroup hits OOM, a moment before the kill is counted: look this often, this
 * many times (100 ms in all), before taking it for an OOM the kernel resolved without a kill. */
#define OOM_CONFIRM_PAUSE_NS 5000000L
#define OOM_CONFIRM_TRIES 20

struct poll_fd {
    int fd;
    short events;
    short revents;
};

struct time_spec {
    long seconds;
    long nanoseconds;
};

/* Register for FILE's notifications: an eventfd, and FILE kept open for the count of OOM kills (both closed at
 * the task's exec). */
static int watch_oom(const char *oom_file) {
    char control_path[PATH_BYTES], digits[21], line[48];
    if (sibling(control_path, oom_file, "cgroup.event_control") == 0) return -1;
    long event = sys(__NR_eventfd2, 0, EVENT_FD_FLAGS, 0, 0, 0);
    long control = open_file(oom_file, O_RDONLY, 0);
    if (event < 0 || control < 0) {
        complain("cannot watch ", oom_file, event < 0 ? event : control);
        return -1;
    }
    unsigned long at = 0;
    for (const char *d = decimal(event, digits); *d; d++) line[at++] = *d;
    line[at++] = ' ';
    for (const char *d = decimal(control, digits); *d; d++) line[at++] = *d;
    line[at] = 0;
    container.oom_event = event;
    container.oom_control = control;
    return write_value(control_path, line, "cannot write ");
}

/* Whether the memory cgroup counts an OOM kill ("oom_kill N", N > 0): the agent then reads the limitation. */
static int oom_killed(void) {
    char text[1024];
    if (container.oom_control < 0) return 0;
    long n = sys(__NR_pread64, container.oom_control, (long)text, sizeof text - 1, 0, 0);
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

/* From now on a child's end interrupts the wait for an OOM (the task is started: it keeps its own mask). */
static void watch_children(void) {
    if (container.oom_event < 0) return;
    on_signal(SIGCHLD, ignore_signal, 0); /* a handler that only wakes ppoll up */
    set_mask(SIG_BLOCK, bit(SIGCHLD));
}

/* A child is still running: sleep until one ends or the kernel signals an OOM; once an OOM kill is counted,
 * SIGKILL `target` (-1: every other process of the namespace) and watch no more. */
static void await_child_or_oom(long target) {
    struct poll_fd event = {(int)container.oom_event, READABLE, 0};
    sigmask unblocked = set_mask(SIG_BLOCK, 0) & ~bit(SIGCHLD);
    if (sys(__NR_ppoll, (long)&event, 1, 0, (long)&unblocked, sizeof unblocked) <= 0) return; /* a child ended */
    unsigned long count;
    sys(__NR_read, container.oom_event, (long)&count, sizeof count, 0, 0);
    for (int attempt = 0; attempt < OOM_CONFIRM_TRIES; attempt++) {
        if (oom_killed()) {
            sys(__NR_kill, target, SIGKILL, 0, 0, 0);
            sys(__NR_close, container.oom_event, 0, 0, 0, 0);
            container.oom_event = -1;
            return;
        }
        struct time_spec pause = {0, OOM_CONFIRM_PAUSE_NS};
        sys(__NR_nanosleep, (long)&pause, 0, 0, 0, 0);
    }
}
