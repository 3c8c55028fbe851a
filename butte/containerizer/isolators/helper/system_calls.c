/* butte-isolate's system call glue (included by butte_isolate.c, one translation unit): sys() makes a raw
 * system call and returns -errno on failure (sys6(), with the sixth argument mmap takes, only without the C
 * library: the spawner's slots), spawn_on_stack() clones onto a stack of the caller's. Without
 * the C library (BUTTE_NOLIBC) both are assembly for x86-64 and arm64, with the program's own _start;
 * otherwise they wrap the C library's syscall() and clone(). */

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
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n\txor %ebp, %ebp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n"
        "\tcall start_c\n\thlt\n"
        ".global restore_rt\nrestore_rt:\n\tmov $15, %eax\n\tsyscall\n");
void restore_rt(void);
#define RESTORER ((unsigned long)restore_rt)
/* clone(flags, stack_top, parent_tid, child_tid); the child calls fn(arg) on that stack and exits with what it
 * returns. fn and arg ride in r8 (clone's tls, unused without CLONE_SETTLS) and r9, which the child keeps. */
__asm__(".text\n.global spawn_on_stack\nspawn_on_stack:\n\tmov %rdx, %r11\n\tmov %r8, %rdx\n\tmov %r9, %r10\n"
        "\tmov %r11, %r8\n\tmov %rcx, %r9\n\tmov $56, %eax\n\tsyscall\n\ttest %rax, %rax\n\tjnz 1f\n"
        "\txor %ebp, %ebp\n\tmov %r9, %rdi\n\tcall *%r8\n\tmov %eax, %edi\n\tmov $231, %eax\n\tsyscall\n"
        "\thlt\n1:\tret\n");
#elif defined(__aarch64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n\tmov x0, sp\n\tbl start_c\n");
#define RESTORER 0UL /* the kernel returns through the vDSO's trampoline */
/* clone(flags, stack, parent_tid, tls, child_tid) on arm64; fn and arg ride in x9 and x10. */
__asm__(".text\n.global spawn_on_stack\nspawn_on_stack:\n\tmov x9, x2\n\tmov x10, x3\n\tmov x2, x4\n"
        "\tmov x3, xzr\n\tmov x4, x5\n\tmov x8, #220\n\tsvc #0\n\tcbnz x0, 1f\n\tmov x0, x10\n\tblr x9\n"
        "\tmov x8, #94\n\tsvc #0\n1:\tret\n");
#else
#error "BUTTE_NOLIBC: no system call glue for this architecture (build without it)"
#endif

static long sys(long n, long a, long b, long c, long d, long e) { return sys6(n, a, b, c, d, e, 0); }

long spawn_on_stack(long flags, void *stack_top, int (*fn)(void *), void *arg, int *parent_tid,
                    volatile int *child_tid);

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
static long spawn_on_stack(long flags, void *stack_top, int (*fn)(void *), void *arg, int *parent_tid,
                           volatile int *child_tid) {
    long pid = clone(fn, stack_top, (int)flags, arg, parent_tid, (void *)0, child_tid);
    return pid == -1 ? -errno : pid;
}

#endif
