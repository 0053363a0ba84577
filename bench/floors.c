/*
 * C floors and writers for bench/run.py, compiled at benchmark time (never shipped).
 * The floors time the syscalls alone, with no Python in the loop.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds per switch of fd 1 to /dev/null and back: dup + dup2 + dup2 + close. */
double floor_dup(long n) {
    int sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
    double start = now();
    for (long i = 0; i < n; i++) {
        int saved = fcntl(1, F_DUPFD_CLOEXEC, 10);
        dup2(sink, 1);
        dup2(saved, 1);
        close(saved);
    }
    double took = now() - start;
    close(sink);
    return took / (double)n;
}

/* The same with a fresh memory file per switch, as a capture needs. */
double floor_memfd(long n) {
    double start = now();
    for (long i = 0; i < n; i++) {
        int sink = memfd_create("floor", MFD_CLOEXEC);
        int saved = fcntl(1, F_DUPFD_CLOEXEC, 10);
        dup2(sink, 1);
        dup2(saved, 1);
        close(saved);
        close(sink);
    }
    return (now() - start) / (double)n;
}

/* Bytes per second to write `nbytes` in 64 KiB chunks into a file, read them back into a fresh
 * buffer and close it: in a memory file (memfd, what a capture uses) or in an unlinked file in
 * `dir` (O_TMPFILE, what a dup onto a temp file uses). Returns -1 if the file cannot be made. */
double floor_bulk(long nbytes, int memory_file, const char *dir) {
    int fd = memory_file ? memfd_create("floor", MFD_CLOEXEC) : open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof chunk);
    char *back = malloc((size_t)nbytes);
    if (back == NULL) return -1;
    double start = now();
    for (long done = 0; done < nbytes; done += sizeof chunk) {
        if (write(fd, chunk, sizeof chunk) < 0) break;
    }
    for (long done = 0; done < nbytes;) {
        ssize_t n = pread(fd, back + done, (size_t)(nbytes - done), done);
        if (n <= 0) break;
        done += n;
    }
    close(fd);
    double took = now() - start;
    free(back);
    return (double)nbytes / took;
}

/* Bytes per second through a pipe read by a C thread into a buffer it discards. */
struct drain { int fd; };
static void *drain_thread(void *arg) {
    static char buf[1 << 16];
    struct drain *d = arg;
    while (read(d->fd, buf, sizeof buf) > 0) {}
    return NULL;
}
double floor_pipe_reader(long nbytes) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    struct drain d = {fds[0]};
    pthread_t t;
    pthread_create(&t, NULL, drain_thread, &d);
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof chunk);
    double start = now();
    for (long done = 0; done < nbytes; done += sizeof chunk) {
        if (write(fds[1], chunk, sizeof chunk) < 0) break;
    }
    close(fds[1]);
    pthread_join(t, NULL);
    double took = now() - start;
    close(fds[0]);
    return (double)nbytes / took;
}

/* n lines of printf("line %d\n") through libc's stdout, flushed at the end. */
void printf_lines(long n) {
    for (long i = 0; i < n; i++) {
        printf("line %ld\n", i);
    }
    fflush(stdout);
}

/* One line stamped with CLOCK_MONOTONIC nanoseconds, printf + fflush. */
void stamped_line(void) {
    printf("t=%lld\n", now_ns());
    fflush(stdout);
}

/* A C thread writing `n` stamped lines `interval_us` apart (GIL never involved). */
struct stamper { long n; long interval_us; };
static void *stamp_thread(void *arg) {
    struct stamper *s = arg;
    for (long i = 0; i < s->n; i++) {
        usleep((useconds_t)s->interval_us);
        stamped_line();
    }
    free(s);
    return NULL;
}
void start_stamper(long n, long interval_us) {
    struct stamper *s = malloc(sizeof *s);
    s->n = n;
    s->interval_us = interval_us;
    pthread_t t;
    pthread_create(&t, NULL, stamp_thread, s);
    pthread_detach(t);
}

/* Busy for `us` microseconds (called with the GIL held, like a short C function). */
void spin(long us) {
    double end = now() + (double)us * 1e-6;
    while (now() < end) {}
}

/* Median latency (seconds) from write() of a line to a C thread blocked in read() getting it:
 * the floor for forwarding, one thread wake-up and nothing else. */
struct wake { int fd; double *arrived; long n; };
static void *wake_thread(void *arg) {
    struct wake *w = arg;
    char buf[64];
    /* Under load two lines can arrive in one read: each of them arrived then (counting reads
     * instead would wait forever for lines already taken). */
    for (long i = 0; i < w->n;) {
        ssize_t got = read(w->fd, buf, sizeof buf);
        if (got <= 0) break;
        double at = now();
        for (ssize_t line = 0; line + 5 <= got && i < w->n; line += 5) w->arrived[i++] = at;
    }
    return NULL;
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
double floor_wake_latency(long n) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    double *sent = calloc((size_t)n, sizeof *sent), *arrived = calloc((size_t)n, sizeof *arrived);
    struct wake w = {fds[0], arrived, n};
    pthread_t t;
    pthread_create(&t, NULL, wake_thread, &w);
    for (long i = 0; i < n; i++) {
        usleep(10000);
        sent[i] = now();
        if (write(fds[1], "line\n", 5) != 5) break;
    }
    pthread_join(t, NULL);
    for (long i = 0; i < n; i++) sent[i] = arrived[i] - sent[i];
    qsort(sent, (size_t)n, sizeof *sent, cmp_double);
    double median = sent[n / 2];
    free(sent);
    free(arrived);
    close(fds[0]);
    close(fds[1]);
    return median;
}

/* Case 4c, report only: what CPython's pending calls achieve while the main thread runs short C
 * functions that hold the GIL. fd 1 goes to a pipe; a C thread reads the stamped lines and hands
 * each to the main thread with Py_AddPendingCall (callable without the GIL from any thread); the
 * pending call records when the main thread ran it, which is when a Python target could be called.
 * Resolved against the running interpreter when the library is loaded. */
extern int Py_AddPendingCall(int (*func)(void *), void *arg);

enum { PENDING_MAX = 4096 };
static long long pending_stamp[PENDING_MAX];
static double pending_latency[PENDING_MAX];
static volatile long pending_ran, pending_queued;
static int pending_saved = -1, pending_pipe[2] = {-1, -1};
static pthread_t pending_thread;

static int run_pending(void *arg) {
    long i = (long)arg;
    pending_latency[i] = (double)(now_ns() - pending_stamp[i]) * 1e-9;
    pending_ran = i + 1;
    return 0;
}

static void *pending_reader(void *arg) {
    (void)arg;
    char buf[4096], line[64];
    size_t have = 0;
    long count = 0;
    ssize_t n;
    while ((n = read(pending_pipe[0], buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (have < sizeof line - 1) line[have++] = buf[i];
                continue;
            }
            line[have] = 0;
            have = 0;
            if (strncmp(line, "t=", 2) != 0 || count >= PENDING_MAX) continue;
            pending_stamp[count] = atoll(line + 2);
            /* The queue holds 32 calls; CPython 3.11 does not wake the main thread for calls
             * added by another thread, so they may wait: give up on a line after 1 s. */
            for (int tries = 0; tries < 10000; tries++) {
                if (Py_AddPendingCall(run_pending, (void *)count) == 0) {
                    pending_queued++;
                    break;
                }
                usleep(100);
            }
            count++;
        }
    }
    return NULL;
}

/* Point fd 1 at a pipe read by the forwarding thread. */
int pending_start(void) {
    fflush(stdout);
    if (pipe2(pending_pipe, O_CLOEXEC) != 0) return -1;
    pending_saved = fcntl(1, F_DUPFD_CLOEXEC, 10);
    dup2(pending_pipe[1], 1);
    close(pending_pipe[1]);
    pending_ran = pending_queued = 0;
    for (long i = 0; i < PENDING_MAX; i++) pending_latency[i] = -1;
    return pthread_create(&pending_thread, NULL, pending_reader, NULL);
}

/* Restore fd 1 and wait for the thread (its calls may still be queued). */
void pending_stop(void) {
    fflush(stdout);
    dup2(pending_saved, 1);
    close(pending_saved);
    pthread_join(pending_thread, NULL);
    close(pending_pipe[0]);
}

/* Copy out the latency (seconds) of every line, -1 for a call that has not run. */
long pending_results(double *out, long max) {
    long n = max < PENDING_MAX ? max : PENDING_MAX;
    memcpy(out, pending_latency, (size_t)n * sizeof *out);
    return pending_queued;
}
