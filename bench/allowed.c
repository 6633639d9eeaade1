/* allowed: loops of syscalls a sandbox must let through, to measure what the filter adds to them.
 *
 *   allowed stat N PATH     stat(PATH)                   the filter's action cache skips BPF
 *   allowed read N PATH     pread(fd, buf, 4096, 0)      a read from the page cache
 *   allowed open N PATH     openat(O_RDONLY) + close     openat's flags are checked in BPF
 *   allowed getppid N       getppid()                    the cheapest syscall: worst relative cost
 *   allowed exec N PROG ARG...  run PROG N times (fork, exec, wait), its stdout to /dev/null: a
 *                           real program (e.g. find /usr -type f), timed from inside the sandbox
 *
 * Prints "ALLOWED MODE N failures=F ns=T cpu_ns=C": T is the loop's own wall-clock time per call
 * and C its CPU time per call (the process's own, or for exec the children's user+sys), so a
 * sandbox's start-up and teardown, far noisier than the loop, stay out of it. CPU time also
 * leaves out the time a busy neighbour holds the CPU, which on a shared 2-vCPU machine moves
 * wall-clock times by 2-4x between rounds; a filter's or an LSM's cost is kernel CPU time in
 * the calling process, so CPU time still shows it.
 * Every call must succeed, or the loop measured something else (a denial, a missing file):
 * exits 1 if any call failed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double children_cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

/* fork + exec + wait; stdout to /dev/null so the terminal or a pipe cannot slow the program. */
static int run_program(char **argv) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 1) < 0) _exit(126); /* else its output would fill a pipe */
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: allowed stat|read|open|getppid N [PATH] | exec N PROG [ARG...]\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    const char *path = argc > 3 ? argv[3] : "/etc/passwd";
    long failures = 0;
    static char buf[4096];
    struct stat st;
    int fd = -1;
    if (strcmp(mode, "read") == 0 && (fd = open(path, O_RDONLY)) < 0) {
        perror(path);
        return 1;
    }
    int exec_mode = strcmp(mode, "exec") == 0;
    double start = clock_ns(CLOCK_MONOTONIC);
    double cpu_start = exec_mode ? children_cpu_ns() : clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (strcmp(mode, "stat") == 0) {
        for (long i = 0; i < n; i++) failures += stat(path, &st) != 0;
    } else if (strcmp(mode, "read") == 0) {
        for (long i = 0; i < n; i++) failures += pread(fd, buf, sizeof buf, 0) < 0;
    } else if (strcmp(mode, "open") == 0) {
        for (long i = 0; i < n; i++) {
            int f = openat(AT_FDCWD, path, O_RDONLY);
            if (f < 0) failures++;
            else close(f);
        }
    } else if (exec_mode && argc > 3) {
        for (long i = 0; i < n; i++) failures += run_program(argv + 3) != 0;
    } else if (strcmp(mode, "getppid") == 0) {
        for (long i = 0; i < n; i++) failures += getppid() <= 0;
    } else {
        fprintf(stderr, "allowed: unknown mode %s\n", mode);
        return 2;
    }
    double elapsed = clock_ns(CLOCK_MONOTONIC) - start;
    double cpu = (exec_mode ? children_cpu_ns() : clock_ns(CLOCK_PROCESS_CPUTIME_ID)) - cpu_start;
    if (fd >= 0) close(fd);
    printf("ALLOWED %s %ld failures=%ld ns=%.2f cpu_ns=%.2f\n", mode, n, failures,
           n ? elapsed / n : 0.0, n ? cpu / n : 0.0);
    return failures != 0;
}
