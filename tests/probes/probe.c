/* probe: performs one named operation, reports its result and errno, and shows it kept running.
 *
 *   probe sys NR [ARG...]      raw syscall; ARG is  N (integer, 0x.. ok), s:TEXT (pointer to TEXT),
 *                              fd:PATH (an O_RDONLY fd of PATH), rfd:PATH (O_RDWR fd), null, cwd (AT_FDCWD)
 *                              Hostile pointers (each in fresh pages; GUARD = a PROT_NONE page):
 *                                unmapped     the start of GUARD
 *                                edge:TEXT    TEXT whose NUL is the last byte before GUARD
 *                                cut:TEXT     TEXT without NUL, its last byte right before GUARD
 *                                span:TEXT    TEXT straddling two mapped pages
 *   probe threads N NR ARG...  N threads each make the syscall once
 *   probe fork|vfork|clone3|spawn NR ARG...   the syscall in a child made that way
 *   probe orphan DELAY NR ARG...  a grandchild, orphaned, makes the syscall after DELAY ms
 *   probe adopted HOLD NR ARG...  a grandchild waits until its parent has exited (it is re-parented),
 *                              makes the syscall, prints ORPHAN pid=P ..., lives HOLD ms more, and
 *                              prints ORPHAN-END pid=P as its very last act
 *   probe i386 NR ARG...       the syscall through int 0x80 (32-bit ABI)
 *   probe flood N NR ARG...    the syscall N times, reporting how many returned the same errno
 *   probe itimer TICKS NR ARG...  a 1 ms interval timer (SA_RESTART handler) runs while the syscall is
 *                              made again and again until TICKS signals arrived; prints the call count
 *   probe vanish N NR ARG...   N threads make the syscall in a loop; once each made it at least once,
 *                              the process exits under them (callers vanish mid-notification)
 *   probe fds                  prints FDS followed by the open descriptor numbers
 *   probe touch MB             allocates MB MiB and touches every page
 *   probe segv                 dereferences NULL (dies by SIGSEGV)
 *   probe raise SIG            raise(SIG)
 *   probe daemon stay|leave    setsid + double fork: the grandchild prints DAEMON pid=P and pauses
 *                              forever; the first process then pauses too (stay) or exits 0 (leave)
 *
 * Output: "RESULT ret=R errno=NAME" then "ALIVE" (so a test sees the program continued).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sched.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>

extern char **environ;

static long args[6];
static long nr;

static const char *errname(int e) {
    static char buf[32];
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case EBADF: return "EBADF";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENOTCONN: return "ENOTCONN";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EROFS: return "EROFS";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOTSOCK: return "ENOTSOCK";
    case ENODATA: return "ENODATA";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ESRCH: return "ESRCH";
    case EAGAIN: return "EAGAIN";
    case EBUSY: return "EBUSY";
    case ENOTTY: return "ENOTTY";
    case EIO: return "EIO";
    case EXDEV: return "EXDEV";
    case ENXIO: return "ENXIO";
    }
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

static long sockaddr_arg(const char *spec, socklen_t *len) {
    /* sa4:IP:PORT, sa6:IP:PORT (IP without brackets; last ':' splits), sun:PATH, sunabs:NAME */
    static struct sockaddr_storage store[4];
    static int next;
    struct sockaddr_storage *ss = &store[next++ % 4];
    memset(ss, 0, sizeof *ss);
    if (strncmp(spec, "sa4:", 4) == 0 || strncmp(spec, "sa6:", 4) == 0) {
        char host[128];
        snprintf(host, sizeof host, "%s", spec + 4);
        char *colon = strrchr(host, ':');
        *colon = 0;
        int port = atoi(colon + 1);
        if (spec[2] == '4') {
            struct sockaddr_in *in = (struct sockaddr_in *)ss;
            in->sin_family = AF_INET;
            in->sin_port = htons(port);
            inet_pton(AF_INET, host, &in->sin_addr);
            *len = sizeof *in;
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
            inet_pton(AF_INET6, host, &in6->sin6_addr);
            *len = sizeof *in6;
        }
    } else {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        if (strncmp(spec, "sunabs:", 7) == 0) {
            strncpy(un->sun_path + 1, spec + 7, sizeof un->sun_path - 2);
            *len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(spec + 7);
        } else {
            strncpy(un->sun_path, spec + 4, sizeof un->sun_path - 1);
            *len = offsetof(struct sockaddr_un, sun_path) + strlen(spec + 4) + 1;
        }
    }
    return (long)ss;
}

#define PAGE 4096

/* Two read-write pages followed by a PROT_NONE guard page; returns the guard page. Each call maps
 * fresh pages, so one argument's bytes never run into another's. */
static char *guarded_pages(void) {
    char *p = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(91); }
    if (mprotect(p + 2 * PAGE, PAGE, PROT_NONE)) { perror("mprotect"); exit(91); }
    return p + 2 * PAGE;
}

/* unmapped, edge:TEXT, cut:TEXT, span:TEXT (see the top of this file); 0 if `a` is none of them. */
static long hostile_arg(const char *a) {
    if (strcmp(a, "unmapped") == 0) return (long)guarded_pages();
    const char *colon = strchr(a, ':');
    if (!colon) return 0;
    const char *text = colon + 1;
    size_t n = strlen(text);
    char *guard;
    if (strncmp(a, "edge:", 5) == 0) {
        guard = guarded_pages();
        memcpy(guard - (n + 1), text, n + 1); /* the NUL is the last readable byte */
        return (long)(guard - (n + 1));
    }
    if (strncmp(a, "cut:", 4) == 0) {
        guard = guarded_pages();
        memcpy(guard - n, text, n); /* no NUL: a reader walks into the guard page */
        return (long)(guard - n);
    }
    if (strncmp(a, "span:", 5) == 0) {
        guard = guarded_pages();
        char *dst = guard - PAGE - n / 2; /* half in the first page, half in the second */
        memcpy(dst, text, n + 1);
        return (long)dst;
    }
    return 0;
}

static long parse_arg(const char *a) {
    socklen_t len;
    if (strcmp(a, "null") == 0) return 0;
    long hostile = hostile_arg(a);
    if (hostile) return hostile;
    if (strcmp(a, "ppid") == 0) return getppid();
    if (strcmp(a, "-ppid") == 0) return -getppid();
    if (strncmp(a, "sock:", 5) == 0) {
        int fd = socket(atoi(a + 5), atoi(strchr(a + 5, ':') + 1), 0);
        if (fd < 0) { perror(a); exit(90); }
        return fd;
    }
    if (strncmp(a, "sa4:", 4) == 0 || strncmp(a, "sa6:", 4) == 0 || strncmp(a, "sun:", 4) == 0 ||
        strncmp(a, "sunabs:", 7) == 0)
        return sockaddr_arg(a, &len);
    if (strncmp(a, "how:", 4) == 0) {
        /* how:FLAGS:MODE -> struct open_how (openat2) */
        static unsigned long long how[3];
        how[0] = strtoull(a + 4, NULL, 0);
        how[1] = strtoull(strchr(a + 4, ':') + 1, NULL, 0);
        how[2] = 0;
        return (long)how;
    }
    if (strncmp(a, "xargs:", 6) == 0) {
        /* xargs:VALUE -> struct xattr_args (setxattrat) */
        static struct { unsigned long long value; unsigned size, flags; } xa;
        xa.value = (unsigned long long)(a + 6);
        xa.size = strlen(a + 6);
        xa.flags = 0;
        return (long)&xa;
    }
    if (strncmp(a, "msg:", 4) == 0) {
        /* msg:DATA or msg:DATA@SOCKADDR-SPEC : a struct msghdr with one iovec */
        static struct msghdr mh;
        static struct iovec iov;
        static char data[256];
        snprintf(data, sizeof data, "%s", a + 4);
        char *at = strchr(data, '@');
        memset(&mh, 0, sizeof mh);
        if (at) {
            *at = 0;
            mh.msg_name = (void *)sockaddr_arg(at + 1, &len);
            mh.msg_namelen = len;
        }
        iov.iov_base = data;
        iov.iov_len = strlen(data);
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        return (long)&mh;
    }
    if (strcmp(a, "cwd") == 0) return AT_FDCWD;
    if (strncmp(a, "s:", 2) == 0) return (long)(a + 2);
    if (strncmp(a, "fd:", 3) == 0) {
        int fd = open(a + 3, O_RDONLY);
        if (fd < 0) { perror(a); exit(90); }
        return fd;
    }
    if (strncmp(a, "rfd:", 4) == 0) {
        int fd = open(a + 4, O_RDWR);
        if (fd < 0) { perror(a); exit(90); }
        return fd;
    }
    if (strncmp(a, "dfd:", 4) == 0) {
        int fd = open(a + 4, O_RDONLY | O_DIRECTORY);
        if (fd < 0) { perror(a); exit(90); }
        return fd;
    }
    return strtol(a, NULL, 0);
}

static void parse_call(int argc, char **argv) {
    nr = strtol(argv[0], NULL, 0);
    for (int i = 1; i < argc && i <= 6; i++) args[i - 1] = parse_arg(argv[i]);
}

static long do_call(void) {
    return syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
}

static void report(long ret, int err) {
    printf("RESULT ret=%ld errno=%s\n", ret, ret < 0 ? errname(err) : "0");
    fflush(stdout);
}

static void *thread_main(void *unused) {
    (void)unused;
    long r = do_call();
    return (void *)(r < 0 ? (long)errno : 0L);
}

static char *mmap_low(const char *text) {
    /* int 0x80 only sees 32-bit pointers: place the string below 4 GiB. */
    static char *p;
    static size_t used;
    if (!p) {
        p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); exit(91); }
    }
    char *dst = p + used;
    strcpy(dst, text);
    used += strlen(text) + 1;
    return dst;
}

static long i386_call(void) {
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(args[0]), "c"(args[1]), "d"(args[2]), "S"(args[3]), "D"(args[4])
                     : "memory");
    return ret;
}

/* --- itimer: a signal storm while calls are being supervised ------------------------------ */
static volatile sig_atomic_t ticks;

static void on_tick(int sig) {
    (void)sig;
    ticks++;
}

/* --- vanish: threads that keep calling until the process exits under them ----------------- */
static atomic_int callers_started;

static void *vanish_thread(void *unused) {
    (void)unused;
    do_call();
    atomic_fetch_add(&callers_started, 1);
    for (;;) do_call();
    return NULL;
}

/* --- fds: our own descriptors, without the one used to list them -------------------------- */
static void print_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) { perror("opendir"); exit(92); }
    int mine = dirfd(d);
    int fds[256], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name);
        if (fd != mine) fds[n++] = fd;
    }
    closedir(d);
    /* readdir order is not numeric: sort for a stable line. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) { int t = fds[j]; fds[j] = fds[j - 1]; fds[j - 1] = t; }
    printf("FDS");
    for (int i = 0; i < n; i++) printf(" %d", fds[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    /* Every mode takes at least one argument, except these two. */
    int bare = argc == 2 && (strcmp(argv[1], "fds") == 0 || strcmp(argv[1], "segv") == 0);
    if (argc < 3 && !bare) {
        fprintf(stderr, "usage: probe MODE ...\n");
        return 2;
    }
    const char *mode = argv[1];
    long r = 0;
    int err = 0;
    if (strcmp(mode, "sys") == 0) {
        parse_call(argc - 2, argv + 2);
        r = do_call();
        err = errno;
    } else if (strcmp(mode, "i386") == 0) {
        parse_call(argc - 2, argv + 2);
        /* int 0x80 takes 32-bit pointers: copy string arguments below 4 GiB. */
        for (int i = 0; i < 6; i++) {
            if (i + 3 < argc && strncmp(argv[i + 3], "s:", 2) == 0) {
                char *low = mmap_low(argv[i + 3] + 2);  /* NOLINT */
                args[i] = (long)low;
            }
        }
        r = i386_call();
        if (r < 0 && r > -4096) { err = (int)-r; r = -1; }
    } else if (strcmp(mode, "threads") == 0) {
        int n = atoi(argv[2]);
        parse_call(argc - 3, argv + 3);
        pthread_t *t = calloc(n, sizeof *t);
        int same = 0, first = -1;
        for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, thread_main, NULL);
        for (int i = 0; i < n; i++) {
            void *res;
            pthread_join(t[i], &res);
            if (first < 0) first = (int)(long)res;
            if ((int)(long)res == first) same++;
        }
        printf("THREADS %d same=%d errno=%s\n", n, same, errname(first));
        r = first ? -1 : 0;
        err = first;
    } else if (strcmp(mode, "flood") == 0) {
        long n = atol(argv[2]);
        parse_call(argc - 3, argv + 3);
        long same = 0;
        int first = -1;
        for (long i = 0; i < n; i++) {
            long x = do_call();
            int e = x < 0 ? errno : 0;
            if (first < 0) first = e;
            if (e == first) same++;
        }
        printf("FLOOD %ld same=%ld errno=%s\n", n, same, errname(first));
        r = first ? -1 : 0;
        err = first;
    } else if (strcmp(mode, "fork") == 0 || strcmp(mode, "vfork") == 0 ||
               strcmp(mode, "clone3") == 0 || strcmp(mode, "spawn") == 0) {
        parse_call(argc - 2, argv + 2);
        pid_t pid;
        if (strcmp(mode, "spawn") == 0) {
            /* posix_spawn of ourselves in "sys" mode. */
            char *cargv[12] = {argv[0], "sys"};
            for (int i = 2; i < argc && i < 10; i++) cargv[i] = argv[i];
            cargv[argc < 10 ? argc : 10] = NULL;
            int e = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, cargv, environ);
            if (e) { report(-1, e); return 3; }
        } else {
            if (strcmp(mode, "fork") == 0) pid = fork();
            else if (strcmp(mode, "vfork") == 0) pid = vfork();
            else {
                struct clone_args ca;
                memset(&ca, 0, sizeof ca);
                ca.exit_signal = SIGCHLD;
                pid = syscall(SYS_clone3, &ca, sizeof ca);
            }
            if (pid == 0) {
                long x = do_call();
                report(x, errno);
                _exit(0);
            }
        }
        int st;
        waitpid(pid, &st, 0);
        printf("CHILD %d status=%d\n", pid, st);
        r = 0;
    } else if (strcmp(mode, "orphan") == 0) {
        int delay = atoi(argv[2]);
        parse_call(argc - 3, argv + 3);
        pid_t pid = fork();
        if (pid == 0) {
            if (fork() == 0) {
                usleep(delay * 1000);
                long x = do_call();
                report(x, errno);
                puts("ORPHAN-ALIVE");
                fflush(stdout);
                _exit(0);
            }
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        printf("PARENT-DONE\n");
    } else if (strcmp(mode, "adopted") == 0) {
        int hold = atoi(argv[2]);
        parse_call(argc - 3, argv + 3);
        pid_t pid = fork();
        if (pid == 0) {
            pid_t parent = getpid();
            if (fork() == 0) {
                /* Gate on the parent being gone, not on time: once re-parented, we are an orphan. */
                while (getppid() == parent) usleep(1000);
                long x = do_call();
                int e = errno;
                printf("ORPHAN pid=%d ", getpid());
                report(x, e);
                usleep(hold * 1000);
                printf("ORPHAN-END pid=%d\n", getpid());
                fflush(stdout);
                _exit(0);
            }
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        printf("PARENT-DONE\n");
    } else if (strcmp(mode, "itimer") == 0) {
        int want = atoi(argv[2]);
        parse_call(argc - 3, argv + 3);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_tick;
        sa.sa_flags = SA_RESTART; /* the restart is what used to duplicate notifications */
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it = {{0, 1000}, {0, 1000}};
        setitimer(ITIMER_REAL, &it, NULL);
        long calls = 0, same = 0;
        int first = -1;
        while (ticks < want) {
            long x = do_call();
            int e = x < 0 ? errno : 0;
            calls++;
            if (first < 0) first = e;
            if (e == first) same++;
        }
        struct itimerval off;
        memset(&off, 0, sizeof off);
        setitimer(ITIMER_REAL, &off, NULL);
        printf("ITIMER calls=%ld same=%ld errno=%s ticks=%d\n", calls, same, errname(first), (int)ticks);
        r = first ? -1 : 0;
        err = first;
    } else if (strcmp(mode, "vanish") == 0) {
        int n = atoi(argv[2]);
        parse_call(argc - 3, argv + 3);
        pthread_t t;
        for (int i = 0; i < n; i++) pthread_create(&t, NULL, vanish_thread, NULL);
        while (atomic_load(&callers_started) < n) usleep(1000);
        printf("VANISH %d\n", n);
        fflush(stdout);
        _exit(0); /* exit_group: every thread dies, some in the middle of a notification */
    } else if (strcmp(mode, "fds") == 0) {
        print_fds();
    } else if (strcmp(mode, "touch") == 0) {
        size_t bytes = (size_t)atol(argv[2]) << 20;
        volatile char *p = malloc(bytes);
        if (!p) { perror("malloc"); return 93; }
        for (size_t i = 0; i < bytes; i += PAGE) p[i] = 1;
        printf("TOUCHED %zu\n", bytes);
    } else if (strcmp(mode, "segv") == 0) {
        fflush(stdout);
        *(volatile int *)0 = 1;
    } else if (strcmp(mode, "raise") == 0) {
        fflush(stdout);
        raise(atoi(argv[2]));
    } else if (strcmp(mode, "daemon") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            setsid();
            if (fork() == 0) {
                printf("DAEMON pid=%d\n", getpid());
                fflush(stdout);
                for (;;) pause();
            }
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        if (strcmp(argv[2], "stay") == 0)
            for (;;) pause();
    } else {
        fprintf(stderr, "probe: unknown mode %s\n", mode);
        return 2;
    }
    report(r, err);
    puts("ALIVE");
    return 0;
}
