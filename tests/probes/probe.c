/* probe: performs one named operation, reports its result and errno, and shows it kept running.
 *
 *   probe sys NR [ARG...]      raw syscall; ARG is  N (integer, 0x.. ok), s:TEXT (pointer to TEXT),
 *                              fd:PATH (an O_RDONLY fd of PATH), rfd:PATH (O_RDWR fd), null, cwd (AT_FDCWD)
 *   probe threads N NR ARG...  N threads each make the syscall once
 *   probe fork|vfork|clone3|spawn NR ARG...   the syscall in a child made that way
 *   probe orphan DELAY NR ARG...  a grandchild, orphaned, makes the syscall after DELAY ms
 *   probe i386 NR ARG...       the syscall through int 0x80 (32-bit ABI)
 *   probe flood N NR ARG...    the syscall N times, reporting how many returned the same errno
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

static long parse_arg(const char *a) {
    socklen_t len;
    if (strcmp(a, "null") == 0) return 0;
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

#include <sys/mman.h>
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

int main(int argc, char **argv) {
    if (argc < 3) {
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
    } else {
        fprintf(stderr, "probe: unknown mode %s\n", mode);
        return 2;
    }
    report(r, err);
    puts("ALIVE");
    return 0;
}
