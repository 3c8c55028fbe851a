/* The memory of the spawner's runs (included by spawner.c, one translation unit): the slots each run's state and
 * stack live in (run_state.c), and what sharing the spawner's memory asks of it besides.
 *
 * Slots are mapped SLOTS_PER_MAP at a time (an mmap of memory the children share waits on their page faults) and
 * never unmapped: an ended run's slot goes back for the next run, its pages kept for the next SLOTS_WARM runs and
 * handed back to the kernel past that (MADV_DONTNEED), so that a burst's slots hold no memory once it is over.
 *
 * The OOM killer kills every process sharing the memory of the one it picks. All the runs share the spawner's,
 * which counts the slots of every running task, so it could be picked where no helper alone would be, and take
 * every container's init, and so every container, with it. The spawner puts itself (and so its children) out of
 * the OOM killer's reach where it may (oom_score_adj -1000), and the task's side of each run puts the agent's
 * score back before its exec: tasks are judged as the agent's other children are.
 */

#define SLOTS_PER_MAP 64
#define SLOTS_WARM 64
#define SLOTS_PROT_READ_WRITE 3
#define SLOTS_MAP_PRIVATE_ANONYMOUS 0x22
#define SLOTS_MADV_DONTNEED 4
#define OOM_SCORE_FILE "/proc/self/oom_score_adj"

/* The agent's OOM score adjustment, when the spawner has set its own apart from it. */
static struct {
    int restore;
    char value[24];
} agent_oom_score;

#if RUNS_SHARE_MEMORY

static struct {
    struct run *warm; /* idle slots with their pages */
    struct run *cold; /* idle slots whose pages went back to the kernel, or were never touched */
    long n_warm;
} slots;

static void push_slot(struct run **list, struct run *run) {
    run->next_idle = *list;
    *list = run;
}

/* SLOTS_PER_MAP new slots, aligned to their size, onto the cold list. */
static void map_slots(void) {
    unsigned long bytes = (SLOTS_PER_MAP + 1) * RUN_SLOT_BYTES;
    long mapped = sys6(__NR_mmap, 0, (long)bytes, SLOTS_PROT_READ_WRITE, SLOTS_MAP_PRIVATE_ANONYMOUS, -1, 0);
    if (mapped < 0) return;
    unsigned long start = (unsigned long)mapped, first = (start + RUN_SLOT_BYTES - 1) & ~(RUN_SLOT_BYTES - 1);
    unsigned long end = first + SLOTS_PER_MAP * RUN_SLOT_BYTES;
    if (first > start) sys(__NR_munmap, (long)start, (long)(first - start), 0, 0, 0);
    if (start + bytes > end) sys(__NR_munmap, (long)end, (long)(start + bytes - end), 0, 0, 0);
    for (unsigned long slot = first; slot < end; slot += RUN_SLOT_BYTES) push_slot(&slots.cold, (struct run *)slot);
}

/* A slot for a run, warm first; 0 when no memory is left. */
static struct run *take_slot(void) {
    if (slots.warm == 0 && slots.cold == 0) map_slots();
    struct run **list = slots.warm != 0 ? &slots.warm : &slots.cold;
    struct run *run = *list;
    if (run == 0) return 0;
    *list = run->next_idle;
    if (list == &slots.warm) slots.n_warm--;
    return run;
}

/* The slot of a run that has ended (or never started). One whose task's side may still run there (the run was
 * killed before that side's exec) is never used again. */
static void give_slot(struct run *run) {
    if (run->task_side != 0) return;
    if (slots.n_warm < SLOTS_WARM) {
        push_slot(&slots.warm, run);
        slots.n_warm++;
        return;
    }
    sys(__NR_madvise, (long)run, (long)RUN_SLOT_BYTES, SLOTS_MADV_DONTNEED, 0, 0);
    push_slot(&slots.cold, run);
}

/* Out of the OOM killer's reach, the agent's score kept for the tasks (see the top). Before the first child. */
static void shield_from_oom(void) {
    long fd = sys(__NR_openat, AT_FDCWD, (long)OOM_SCORE_FILE, O_RDONLY | O_CLOEXEC, 0, 0);
    long n = fd < 0 ? fd : sys(__NR_read, fd, (long)agent_oom_score.value, sizeof agent_oom_score.value - 1, 0, 0);
    if (fd >= 0) close_fd(fd);
    if (n <= 0) return;
    agent_oom_score.value[n] = 0;
    fd = sys(__NR_openat, AT_FDCWD, (long)OOM_SCORE_FILE, O_WRONLY | O_CLOEXEC, 0, 0);
    if (fd < 0) return;
    /* lowering it takes CAP_SYS_RESOURCE: without, the spawner stays as the agent is and tasks need nothing back */
    agent_oom_score.restore = sys(__NR_write, fd, (long)"-1000", 5, 0, 0) == 5;
    close_fd(fd);
}

#else /* each child gets a copy of the spawner's memory: the request is laid out in `solo`, copied with the rest */

static struct run *take_slot(void) { return &solo; }
static void give_slot(struct run *run) { (void)run; }
static void shield_from_oom(void) {}

#endif

/* The task's side, before its exec: the agent's OOM score back (run_state.c), where the spawner changed its own. */
static void restore_oom_score(void) {
    if (!agent_oom_score.restore) return;
    long fd = open_file(OOM_SCORE_FILE, O_WRONLY, 0);
    if (fd < 0) return;
    say((int)fd, agent_oom_score.value);
    close_fd(fd);
}
