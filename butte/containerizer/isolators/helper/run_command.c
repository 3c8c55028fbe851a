/* butte-isolate's exec of the task's command, searching PATH as execvp does (included by butte_isolate.c, one
 * translation unit). */

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
