/* butte-isolate's part of a container's cgroups (included by butte_isolate.c, one translation unit): make or
 * take over the cgroups, write the limits, register the OOM eventfd, join them from the task's side, and
 * recycle or remove them once the task has ended. See the usage at the top of butte_isolate.c. */

/* ---- the container's cgroups, when the helper makes them (--cgroup, --reuse, --write, --oom, --remove) ---- */

static int watch_oom(const char *oom_file); /* oom_watch.c */
static int oom_killed(void);

/* `dir` + "/" + `name` into `out` (PATH_BYTES); 0 when it does not fit. */
static const char *join_path(char *out, const char *dir, const char *name) {
    unsigned long a = length(dir), b = length(name);
    if (a + 1 + b + 1 > PATH_BYTES) return 0;
    for (unsigned long i = 0; i < a; i++) out[i] = dir[i];
    out[a] = '/';
    for (unsigned long i = 0; i <= b; i++) out[a + 1 + i] = name[i];
    return out;
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

/* The last name of a path. */
static const char *last_name(const char *path) {
    const char *name = path;
    for (const char *at = path; *at; at++) {
        if (*at == '/') name = at + 1;
    }
    return name;
}

/* For a path inside one of the container's open cgroups: that cgroup's descriptor and the rest of the path
 * (else `*dir` and `*name` are left as they are). open_file() goes through this. */
static void within_cgroup(long *dir, const char **name) {
    for (int i = 0; i < container.n_open; i++) {
        const char *cgroup = container.cgroups[i], *rest = *name;
        while (*cgroup && *cgroup == *rest) cgroup++, rest++;
        if (*cgroup == 0 && *rest == '/') {
            *dir = container.dir_fds[i];
            *name = rest + 1;
            return;
        }
    }
}

/* Rename cgroup `i` between names in its parent directory. */
static long rename_cgroup(int i, const char *from, const char *to) {
    long parent = container.parent_fds[i];
    return sys(__NR_renameat2, parent, (long)from, parent, (long)to, 0);
}

/* Make cgroup `i` (or take over the recycled one --reuse names) in its parent, and open both. */
static int make_cgroup(int i) {
    char parent_path[PATH_BYTES];
    const char *dir = container.cgroups[i], *name = last_name(dir);
    long parent = sibling(parent_path, dir, "") == 0 ? -ENAMETOOLONG
                                                     : open_file(parent_path, O_PATH | O_DIRECTORY, 0);
    long made = parent;
    if (parent >= 0) {
        container.parent_fds[i] = parent;
        int reused = container.reuse != 0 && rename_cgroup(i, container.reuse, name) == 0;
        made = reused ? 0 : sys(__NR_mkdirat, parent, (long)name, 0755, 0, 0);
    }
    if (made == -EEXIST) made = 0;
    if (made == 0) made = sys(__NR_openat, parent, (long)name, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, 0);
    if (made < 0) {
        complain("cannot make ", dir, made);
        return -1;
    }
    container.dir_fds[i] = made;
    container.n_open = i + 1;
    return 0;
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

/* Make (or take over a recycled) cgroup, write the limits, watch for OOMs: all before the joins. */
static int set_up(void) {
    struct setup *setup = &container;
    for (int i = 0; i < setup->n_cgroups; i++) {
        if (make_cgroup(i) < 0) return -1;
    }
    for (int i = 0; i < setup->n_writes; i++) {
        if (write_value(setup->writes[i][0], setup->writes[i][1], "cannot write ") < 0) return -1;
    }
    return setup->oom_file != 0 ? watch_oom(setup->oom_file) : 0;
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

/* Remove cgroups `from` to the last, recycled already under `name`: none is left idle when one could not be. */
static void unrecycle(int from, const char *name) {
    for (int i = from; i < container.n_open; i++) {
        sys(__NR_unlinkat, container.parent_fds[i], (long)name, AT_REMOVEDIR, 0, 0);
    }
}

/* The task has ended (--remove): recycle the cgroups under their new name, counters reset (--recycle), or
 * remove them, last made first; when one will not be renamed, all are removed (the agent pools a container's
 * cgroups whole or not at all). Stops at the first that will not go (still busy: the agent kills what is left
 * and removes the rest). */
static void remove_cgroups(void) {
    if (!container.remove || oom_killed()) return;
    int recycle = recyclable();
    if (recycle) {
        for (int i = 0; i < container.n_resets; i++) {
            write_value(container.resets[i][0], container.resets[i][1], "cannot reset ");
        }
    }
    for (int i = container.n_open - 1; i >= 0; i--) {
        const char *name = last_name(container.cgroups[i]);
        if (recycle && rename_cgroup(i, name, container.recycle) == 0) continue;
        if (recycle) unrecycle(i + 1, container.recycle);
        recycle = 0;
        if (sys(__NR_unlinkat, container.parent_fds[i], (long)name, AT_REMOVEDIR, 0, 0) < 0) return;
    }
}
