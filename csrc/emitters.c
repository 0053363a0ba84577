/*
 * Emitters for fdredirect.testing: C code that writes the way real native libraries do.
 * Plain C, no Python API: the Rust binding decides whether the GIL is held around a call.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The bytes c_emit writes: ASCII, 64 per line, so captured output can be checked as text. */
static const char PATTERN[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.\n";
#define PATTERN_LEN 64


/* printf through libc's buffered FILE *stdout; without flush the bytes stay in libc's buffer. */
int fdr_printf(const char *text, size_t len, int flush) {
    int n = printf("%.*s", (int)len, text);
    if (flush && fflush(stdout) != 0) {
        return -1;
    }
    return n;
}

int fdr_fprintf_stderr(const char *text, size_t len) {
    return fprintf(stderr, "%.*s", (int)len, text);
}

/* write(2) all of buf, retrying short writes and EINTR. Returns bytes written or -errno. */
long fdr_write(int fd, const char *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        done += (size_t)n;
    }
    return (long)done;
}

/* write(2) nbytes of PATTERN in chunks of `chunk` bytes (at most 64 KiB). Returns bytes written
 * or -errno. The buffer is on the stack so concurrent callers never share it. */
long fdr_emit(int fd, size_t nbytes, size_t chunk) {
    enum { MAX_CHUNK = 1 << 16 };
    char block[MAX_CHUNK + PATTERN_LEN];
    if (chunk == 0 || chunk > MAX_CHUNK) {
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof block; i++) {
        block[i] = PATTERN[i % PATTERN_LEN];
    }
    size_t done = 0;
    while (done < nbytes) {
        size_t want = nbytes - done < chunk ? nbytes - done : chunk;
        /* start each write where the pattern left off, so the stream is one unbroken pattern */
        long n = fdr_write(fd, block + done % PATTERN_LEN, want);
        if (n < 0) {
            return n;
        }
        done += (size_t)n;
    }
    return (long)done;
}
