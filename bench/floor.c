/* floor: the smallest correct seccomp USER_NOTIF supervisor, the benchmark's floor for denied calls.
 *
 *   floor [-e EVENTS] -- PROG [ARG...]   creat -> NOTIFY, each answered EPERM by this process
 *   floor -k -- PROG [ARG...]            creat -> SECCOMP_RET_ERRNO(EPERM) in the kernel, no supervisor
 *
 * With -e, each notification also gets what Bubble does for a "full event": the path argument is
 * read from the target with process_vm_readv (page by page, up to PATH_MAX), ID_VALID is checked
 * before the path is trusted, the answer is sent, and one NDJSON line (seq, ts, type, pid, syscall,
 * path, mode) is appended to EVENTS. Lines are buffered and flushed whenever the listener has
 * nothing pending, so a quiet target still sees each event at once.
 *
 * The design mirrors Bubble's so the numbers compare: fork; the child loads the filter and reports
 * its listener number on a pipe; the parent takes the listener with pidfd_getfd (sendmsg could be
 * mediated), sets SYNC_WAKE_UP, says go, and serves until the listener reports POLLHUP.
 * Build: gcc -O2 -o floor floor.c -lseccomp
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Debian 12's headers predate these (kernel 6.6); the values are the x86_64 ABI. */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS 0x40082104UL
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1UL
#endif
#define NR_PIDFD_OPEN 434
#define NR_PIDFD_GETFD 438
#define PAGE 4096UL

static void die(const char *what) {
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(125);
}

static void child(int kernel_deny, int ready_w, int go_r, char **argv) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) die("seccomp_init");
    uint32_t action = kernel_deny ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_NOTIFY;
    int rc = seccomp_rule_add(ctx, action, SCMP_SYS(creat), 0);
    if (rc == 0) rc = seccomp_load(ctx); /* NOTIFY rules make libseccomp ask for a listener */
    if (rc < 0) {
        errno = -rc;
        die("seccomp filter");
    }
    int listener = kernel_deny ? -1 : seccomp_notify_fd(ctx);
    char line[32];
    int n = snprintf(line, sizeof line, "%d\n", listener);
    if (write(ready_w, line, n) != n) die("ready pipe");
    char go;
    if (read(go_r, &go, 1) != 1) _exit(125); /* the parent gave up */
    if (listener >= 0) close(listener);      /* the target must not answer its own calls */
    seccomp_release(ctx);
    close(ready_w);
    close(go_r);
    execvp(argv[0], argv);
    fprintf(stderr, "floor: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Read a NUL-terminated string from the target, never crossing into a page we have not asked
 * for in the same call: a partial read at an unmapped page must not lose what came before. */
static int read_path(pid_t pid, uint64_t addr, char *out, size_t cap) {
    size_t got = 0;
    while (got < cap - 1) {
        size_t want = PAGE - ((addr + got) % PAGE);
        if (want > cap - 1 - got) want = cap - 1 - got;
        struct iovec local = {out + got, want};
        struct iovec remote = {(void *)(uintptr_t)(addr + got), want};
        ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (r <= 0) return -1;
        void *nul = memchr(out + got, 0, (size_t)r);
        if (nul) return 0;
        got += (size_t)r;
    }
    out[cap - 1] = 0;
    return 0;
}

/* JSON string body: quotes, backslashes and control bytes escaped; other bytes copied. */
static void put_json_string(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else putc(c, f);
    }
}

/* RFC 3339 UTC with milliseconds; the formatted second is cached as Bubble's Clock does. */
static const char *timestamp(void) {
    static char buf[40], prefix[24];
    static time_t last = -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(prefix, sizeof prefix, "%Y-%m-%dT%H:%M:%S", &tm);
        last = ts.tv_sec;
    }
    snprintf(buf, sizeof buf, "%s.%03ldZ", prefix, ts.tv_nsec / 1000000);
    return buf;
}

static long serve(int listener, FILE *events) {
    static struct seccomp_notif req_buf;
    static struct seccomp_notif_resp resp_buf;
    struct seccomp_notif *req = &req_buf;
    struct seccomp_notif_resp *resp = &resp_buf;
    static char path[PATH_MAX];
    long handled = 0;
    struct pollfd p = {listener, POLLIN, 0};
    for (;;) {
        int ready = poll(&p, 1, 0);
        if (ready == 0) { /* nothing pending: the moment to flush, then wait */
            if (events) fflush(events);
            ready = poll(&p, 1, -1);
        }
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (!(p.revents & POLLIN)) {
            if (p.revents & (POLLHUP | POLLERR)) break; /* no task uses the filter any more */
            continue;
        }
        /* Raw ioctls, as Bubble uses: libseccomp's wrappers turn every errno into ECANCELED. */
        memset(req, 0, sizeof *req); /* the kernel rejects a non-zeroed buffer */
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) < 0) {
            if (errno == ENOENT || errno == EINTR) continue; /* the caller went away */
            die("notify receive");
        }
        handled++;
        int readable = 0;
        if (events) readable = read_path(req->pid, req->data.args[0], path, sizeof path) == 0;
        resp->id = req->id;
        resp->val = 0;
        resp->error = -EPERM;
        resp->flags = 0;
        if (events && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) < 0) continue;
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) < 0 && errno != ENOENT)
            die("notify respond");
        if (!events) continue;
        fprintf(events,
                "{\"seq\":%ld,\"ts\":\"%s\",\"type\":\"policy.alert\",\"pid\":%u,\"category\":\"fs\","
                "\"syscall\":\"creat\",\"syscall_no\":%d,\"reason\":\"errno\",\"denied\":\"EPERM\","
                "\"path\":\"",
                handled, timestamp(), req->pid, req->data.nr);
        put_json_string(events, readable ? path : "<unreadable>");
        fprintf(events, "\",\"mode\":%llu}\n", (unsigned long long)req->data.args[1]);
    }
    if (events) fflush(events);
    return handled;
}

int main(int argc, char **argv) {
    int kernel_deny = 0;
    const char *events_path = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+ke:")) != -1) {
        if (opt == 'k') kernel_deny = 1;
        else if (opt == 'e') events_path = optarg;
        else {
            fprintf(stderr, "usage: floor [-k | -e EVENTS] -- PROG [ARG...]\n");
            return 125;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: floor [-k | -e EVENTS] -- PROG [ARG...]\n");
        return 125;
    }
    FILE *events = NULL;
    if (events_path) {
        events = fopen(events_path, "w");
        if (!events) die(events_path);
        setvbuf(events, NULL, _IOFBF, 1 << 16);
    }
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        child(kernel_deny, ready[1], go[0], argv + optind);
    }
    close(ready[1]);
    close(go[0]);
    char line[32] = {0};
    if (read(ready[0], line, sizeof line - 1) <= 0) die("child setup");
    int child_fd = atoi(line), listener = -1;
    if (!kernel_deny) {
        int pidfd = (int)syscall(NR_PIDFD_OPEN, pid, 0);
        if (pidfd < 0) die("pidfd_open");
        listener = (int)syscall(NR_PIDFD_GETFD, pidfd, child_fd, 0);
        if (listener < 0) die("pidfd_getfd");
        close(pidfd);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP))
            fprintf(stderr, "floor: SYNC_WAKE_UP unavailable: %s\n", strerror(errno));
    }
    if (write(go[1], "G", 1) != 1) die("go pipe");
    long handled = kernel_deny ? 0 : serve(listener, events);
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (getenv("FLOOR_VERBOSE")) fprintf(stderr, "floor: %ld notifications\n", handled);
    if (events) fclose(events);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
