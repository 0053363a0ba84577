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
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("t=%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
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
    for (long i = 0; i < w->n; i++) {
        if (read(w->fd, buf, sizeof buf) <= 0) break;
        w->arrived[i] = now();
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
