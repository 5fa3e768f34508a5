/*
 * hostile.c - the clients of bench/hostile.sh: hostile ones, and the well-behaved probe that
 * checks the others are still served. 127.0.0.1 only; every mode ends within its time bound.
 *
 *   hostile upload    PORT CONNS BYTES SECONDS   CONNS clients each POST /upload a BYTES body,
 *                                                trickled evenly over SECONDS; the answer must
 *                                                be "<len> <crc32>" of the body (byte-exact)
 *   hostile gzip      PORT PATH CONNS REQUESTS   REQUESTS GETs of PATH with Accept-Encoding:
 *                                                gzip over CONNS keep-alive connections
 *   hostile slowloris PORT CONNS SECONDS         CONNS connections send a request head one
 *                                                byte every 2 s, never finishing it; a closed
 *                                                one is opened again
 *   hostile flood     PORT CONNS SECONDS         CONNS connections write pipelined GET /hello
 *                                                as fast as the server takes them and never read
 *   hostile churn     PORT CONNS SECONDS         CONNS at a time: connect, send GET /hello,
 *                                                then read the answer and close, close at once,
 *                                                or reset (SO_LINGER 0), in turn
 *   hostile halfclose PORT PATH CONNS            CONNS clients send GET PATH, shutdown(SHUT_WR)
 *                                                and read to the end: complete answers counted
 *   hostile probe     PORT PATH SECONDS PERIOD_MS
 *                                                one keep-alive client, a GET every PERIOD_MS;
 *                                                latency percentiles, failures (a 2 s timeout
 *                                                or a broken connection, then it reconnects);
 *                                                SIGTERM ends it early, with its report
 *
 * Each prints one line of "key=value" results on stdout. Needs CONNS + a few descriptors.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crc32.h"

#define MAX_CONNS 4096

static int port;
/* SIGTERM or SIGINT: the probe stops and reports (the script ends it with the attack). */
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* A non-blocking socket connecting to 127.0.0.1:port (-1 on failure). */
static int open_conn(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void reset_close(int fd)
{
    struct linger l = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* ---- a minimal HTTP/1.1 response reader ---- */

struct resp {
    char *buf;
    size_t len, cap;
};

static int resp_add(struct resp *r, const char *data, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->buf, cap);
        if (b == NULL)
            return -1;
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    r->buf[r->len] = '\0';
    return 0;
}

/* Length of the first complete response in r (head + body), 0 when incomplete, -1 when
 * malformed. *status gets its status code, *body and *body_len the body when it has a
 * Content-Length (chunked bodies are only delimited). */
static long resp_complete(const struct resp *r, int *status, const char **body, size_t *body_len)
{
    if (r->len < 12)
        return 0;
    const char *end = memmem(r->buf, r->len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    size_t head = (size_t)(end - r->buf) + 4;
    if (strncmp(r->buf, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(r->buf + 9);
    long clen = -1;
    int chunked = 0;
    for (const char *p = r->buf; p < end;) {
        const char *nl = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (nl == NULL)
            break;
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            clen = atol(p + 15);
        else if (strncasecmp(p, "Transfer-Encoding:", 18) == 0 && memmem(p, (size_t)(nl - p), "chunked", 7))
            chunked = 1;
        p = nl + 2;
    }
    if (*status == 100) /* an interim answer: skip it */
        return (long)head;
    if (chunked) {
        /* walk the chunks */
        size_t pos = head;
        for (;;) {
            const char *nl = memmem(r->buf + pos, r->len - pos, "\r\n", 2);
            if (nl == NULL)
                return 0;
            unsigned long size = strtoul(r->buf + pos, NULL, 16);
            pos = (size_t)(nl - r->buf) + 2;
            if (size == 0) {
                const char *t = memmem(r->buf + pos - 2, r->len - pos + 2, "\r\n\r\n", 4);
                if (t == NULL)
                    return 0;
                *body = NULL;
                *body_len = 0;
                return (long)(t - r->buf) + 4;
            }
            if (pos + size + 2 > r->len)
                return 0;
            pos += size + 2;
        }
    }
    if (clen < 0)
        clen = 0;
    if (r->len < head + (size_t)clen)
        return 0;
    *body = r->buf + head;
    *body_len = (size_t)clen;
    return (long)(head + (size_t)clen);
}

static void resp_consume(struct resp *r, size_t n)
{
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
    if (r->buf)
        r->buf[r->len] = '\0';
}

/* Reads what the socket has into r: 1 data, 0 nothing now, -1 end or error. */
static int read_into(int fd, struct resp *r)
{
    char tmp[65536];
    int got = 0;
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n > 0) {
            if (resp_add(r, tmp, (size_t)n) < 0)
                return -1;
            got = 1;
            continue;
        }
        if (n == 0)
            return -1;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return got;
        if (errno == EINTR)
            continue;
        return -1;
    }
}

/* ---- upload ---- */

struct upload {
    int fd;
    int state; /* 0 sending, 1 reading, 2 done, -1 failed */
    size_t sent; /* of head + body */
    size_t offset; /* where this client's body starts in the shared buffer */
    uint32_t crc;
    struct resp r;
};

static int mode_upload(int conns, size_t bytes, double seconds)
{
    if (conns > MAX_CONNS)
        conns = MAX_CONNS;
    unsigned char *data = malloc(bytes * 2);
    struct upload *u = calloc((size_t)conns, sizeof *u);
    if (data == NULL || u == NULL)
        return 1;
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < bytes; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (unsigned char)x;
    }
    memcpy(data + bytes, data, bytes); /* so any rotation is one contiguous slice */
    char head[256];
    int hlen = snprintf(head, sizeof head,
                        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                        "application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                        bytes);
    for (int i = 0; i < conns; i++) {
        u[i].offset = ((size_t)i * 7919u) % bytes;
        u[i].crc = crc32_update(0, data + u[i].offset, bytes);
        u[i].fd = open_conn();
        u[i].state = u[i].fd < 0 ? -1 : 0;
    }
    size_t total = (size_t)hlen + bytes;
    double start = now_s(), deadline = start + seconds + 60;
    int ok = 0, failed = 0, bad = 0;
    double last_answer = start;
    for (;;) {
        double t = now_s();
        int busy = 0;
        /* where every sender should be by now: evenly over `seconds` */
        double frac = seconds > 0 ? (t - start) / seconds : 1;
        size_t due = frac >= 1 ? total : (size_t)((double)total * frac);
        for (int i = 0; i < conns; i++) {
            struct upload *c = &u[i];
            if (c->state == 0) {
                busy = 1;
                while (c->sent < due) {
                    const char *p;
                    size_t n;
                    if (c->sent < (size_t)hlen) {
                        p = head + c->sent;
                        n = (size_t)hlen - c->sent;
                    } else {
                        p = (const char *)data + c->offset + (c->sent - (size_t)hlen);
                        n = due - c->sent;
                    }
                    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
                    if (w > 0) {
                        c->sent += (size_t)w;
                        continue;
                    }
                    if (w < 0 && (errno == EAGAIN || errno == ENOTCONN))
                        break; /* connecting, or the socket is full: next tick */
                    if (w < 0 && errno == EINTR)
                        continue;
                    c->state = -1;
                    break;
                }
                if (c->state == 0 && c->sent == total)
                    c->state = 1;
            }
            if (c->state == 1 || c->state == 0) {
                busy = 1;
                /* also while sending: a server may answer early (413, 500) and close */
                int end = read_into(c->fd, &c->r) < 0;
                int st = 0;
                const char *b = NULL;
                size_t bl = 0;
                long n;
                while ((n = resp_complete(&c->r, &st, &b, &bl)) > 0 && st == 100)
                    resp_consume(&c->r, (size_t)n);
                if (n > 0) {
                    char want[64];
                    int wl = snprintf(want, sizeof want, "%zu %lu", bytes, (unsigned long)c->crc);
                    if (st == 200 && b != NULL && bl >= (size_t)wl && memcmp(b, want, (size_t)wl) == 0) {
                        c->state = 2;
                        ok++;
                    } else {
                        if (bad++ < 3)
                            fprintf(stderr, "upload %d: status %d, answer %.*s (want %s)\n", i, st,
                                    (int)(bl > 60 ? 60 : bl), b ? b : "", want);
                        c->state = -1;
                    }
                    last_answer = t;
                    if (c->state == 2) {
                        close(c->fd);
                        c->fd = -1;
                    }
                } else if (end || n < 0) {
                    c->state = -1;
                }
            }
            if (c->state == -1) {
                failed++;
                if (c->fd >= 0)
                    close(c->fd);
                c->fd = -1;
                c->state = -2;
            }
        }
        if (!busy || t > deadline)
            break;
        pause_ms(20);
    }
    printf("clients=%d ok=%d failed=%d unanswered=%d bytes=%zu trickle_s=%.0f last_answer_s=%.1f\n",
           conns, ok, failed, conns - ok - failed, bytes, seconds, last_answer - start);
    for (int i = 0; i < conns; i++) {
        if (u[i].fd >= 0)
            close(u[i].fd);
        free(u[i].r.buf);
    }
    free(u);
    free(data);
    return ok == conns ? 0 : 1;
}

/* ---- gzip: many compressed responses over keep-alive connections ---- */

static int mode_gzip(const char *path, int conns, int requests)
{
    if (conns > MAX_CONNS)
        conns = MAX_CONNS;
    char req[512];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n", path);
    int *fd = calloc((size_t)conns, sizeof *fd);
    struct resp *r = calloc((size_t)conns, sizeof *r);
    int *inflight = calloc((size_t)conns, sizeof *inflight);
    if (fd == NULL || r == NULL || inflight == NULL)
        return 1;
    int started = 0, ok = 0, failed = 0, plain = 0;
    double deadline = now_s() + 120;
    for (int i = 0; i < conns; i++)
        fd[i] = open_conn();
    while (ok + failed < requests && now_s() < deadline) {
        struct pollfd pfd[MAX_CONNS];
        for (int i = 0; i < conns; i++) {
            if (fd[i] < 0 && started < requests) {
                fd[i] = open_conn();
                inflight[i] = 0;
                r[i].len = 0;
            }
            if (fd[i] >= 0 && !inflight[i] && started < requests) {
                if (send(fd[i], req, (size_t)rl, MSG_NOSIGNAL) == rl) {
                    inflight[i] = 1;
                    started++;
                }
            }
            pfd[i].fd = fd[i];
            pfd[i].events = inflight[i] ? POLLIN : POLLOUT;
        }
        if (poll(pfd, (nfds_t)conns, 1000) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < conns; i++) {
            if (fd[i] < 0 || !inflight[i] || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int end = read_into(fd[i], &r[i]) < 0;
            int st;
            const char *b;
            size_t bl;
            long n = resp_complete(&r[i], &st, &b, &bl);
            if (n > 0) {
                if (st == 200)
                    ok++;
                else
                    failed++;
                if (!strcasestr(r[i].buf, "\r\nContent-Encoding: gzip"))
                    plain++;
                resp_consume(&r[i], (size_t)n);
                inflight[i] = 0;
            } else if (end || n < 0) {
                failed++;
                inflight[i] = 0;
            }
            if (end || n < 0) {
                close(fd[i]);
                fd[i] = -1;
            }
        }
    }
    printf("requests=%d ok=%d failed=%d not_gzip=%d connections=%d\n", requests, ok, failed, plain, conns);
    for (int i = 0; i < conns; i++) {
        if (fd[i] >= 0)
            close(fd[i]);
        free(r[i].buf);
    }
    free(fd);
    free(r);
    free(inflight);
    return ok == requests && plain == 0 ? 0 : 1;
}

/* ---- slowloris ---- */

static int mode_slowloris(int conns, double seconds)
{
    static const char head[] = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    if (conns > MAX_CONNS)
        conns = MAX_CONNS;
    int *fd = calloc((size_t)conns, sizeof *fd);
    size_t *pos = calloc((size_t)conns, sizeof *pos);
    double *next = calloc((size_t)conns, sizeof *next);
    if (fd == NULL || pos == NULL || next == NULL)
        return 1;
    double start = now_s(), end = start + seconds;
    long opened = 0, closed_by_server = 0, bytes = 0;
    for (int i = 0; i < conns; i++) {
        fd[i] = open_conn();
        opened += fd[i] >= 0;
        next[i] = start + 2.0 * i / conns; /* spread over the 2 s period */
    }
    while (now_s() < end) {
        double t = now_s();
        for (int i = 0; i < conns; i++) {
            if (fd[i] < 0) {
                fd[i] = open_conn();
                opened += fd[i] >= 0;
                pos[i] = 0;
                next[i] = t + 2.0;
                continue;
            }
            char tmp[4096];
            ssize_t n = recv(fd[i], tmp, sizeof tmp, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)) {
                closed_by_server++;
                close(fd[i]);
                fd[i] = -1;
                continue;
            }
            if (t >= next[i]) {
                next[i] += 2.0;
                if (pos[i] < sizeof head - 1 && send(fd[i], head + pos[i], 1, MSG_NOSIGNAL) == 1) {
                    pos[i]++;
                    bytes++;
                }
            }
        }
        pause_ms(50);
    }
    int open_at_end = 0;
    for (int i = 0; i < conns; i++)
        if (fd[i] >= 0) {
            open_at_end++;
            close(fd[i]);
        }
    printf("connections=%d opened=%ld closed_by_server=%ld open_at_end=%d head_bytes_sent=%ld\n", conns, opened,
           closed_by_server, open_at_end, bytes);
    free(fd);
    free(pos);
    free(next);
    return 0;
}

/* ---- pipelining flood ---- */

static int mode_flood(int conns, double seconds)
{
    static const char one[] = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char batch[64 * (sizeof one - 1)];
    for (size_t i = 0; i < 64; i++)
        memcpy(batch + i * (sizeof one - 1), one, sizeof one - 1);
    if (conns > MAX_CONNS)
        conns = MAX_CONNS;
    int *fd = calloc((size_t)conns, sizeof *fd);
    if (fd == NULL)
        return 1;
    for (int i = 0; i < conns; i++)
        fd[i] = open_conn();
    double end = now_s() + seconds;
    long long sent = 0;
    int broken = 0;
    while (now_s() < end) {
        int progress = 0;
        for (int i = 0; i < conns; i++) {
            if (fd[i] < 0)
                continue;
            ssize_t w = send(fd[i], batch, sizeof batch, MSG_NOSIGNAL);
            if (w > 0) {
                sent += w;
                progress = 1;
            } else if (w < 0 && errno != EAGAIN && errno != ENOTCONN && errno != EINTR) {
                broken++;
                close(fd[i]);
                fd[i] = -1;
            }
        }
        if (!progress)
            pause_ms(20);
    }
    for (int i = 0; i < conns; i++)
        if (fd[i] >= 0)
            reset_close(fd[i]);
    printf("connections=%d requests_written=%lld closed_by_server=%d\n", conns,
           sent / (long long)(sizeof one - 1), broken);
    free(fd);
    return 0;
}

/* ---- connection churn ---- */

static int mode_churn(int conns, double seconds)
{
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (conns > MAX_CONNS)
        conns = MAX_CONNS;
    int *fd = calloc((size_t)conns, sizeof *fd);
    int *kind = calloc((size_t)conns, sizeof *kind);
    struct resp *r = calloc((size_t)conns, sizeof *r);
    if (fd == NULL || kind == NULL || r == NULL)
        return 1;
    for (int i = 0; i < conns; i++)
        fd[i] = -1;
    double end = now_s() + seconds;
    long made = 0, answered = 0, failed = 0;
    while (now_s() < end) {
        struct pollfd pfd[MAX_CONNS];
        for (int i = 0; i < conns; i++) {
            if (fd[i] < 0) {
                fd[i] = open_conn();
                if (fd[i] >= 0) {
                    made++;
                    kind[i] = (int)(made % 3);
                    r[i].len = 0;
                }
            }
            pfd[i].fd = fd[i];
            pfd[i].events = POLLOUT;
        }
        if (poll(pfd, (nfds_t)conns, 100) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < conns; i++) {
            if (fd[i] < 0 || !(pfd[i].revents & (POLLOUT | POLLERR | POLLHUP)))
                continue;
            if (send(fd[i], req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
                failed++;
                close(fd[i]);
                fd[i] = -1;
                continue;
            }
            if (kind[i] == 0) {
                /* read the answer (bounded by 2 s), then close */
                struct pollfd p = { fd[i], POLLIN, 0 };
                double until = now_s() + 2;
                int st = 0, done = 0;
                const char *b;
                size_t bl;
                while (!done && now_s() < until && poll(&p, 1, 200) >= 0) {
                    int e = read_into(fd[i], &r[i]);
                    done = resp_complete(&r[i], &st, &b, &bl) > 0;
                    if (e < 0)
                        break;
                }
                if (done && st == 200)
                    answered++;
                else
                    failed++;
                close(fd[i]);
            } else if (kind[i] == 1) {
                close(fd[i]);
            } else {
                reset_close(fd[i]);
            }
            fd[i] = -1;
        }
    }
    for (int i = 0; i < conns; i++) {
        if (fd[i] >= 0)
            close(fd[i]);
        free(r[i].buf);
    }
    printf("connections_made=%ld answered=%ld failed=%ld per_s=%.0f\n", made, answered, failed,
           (double)made / seconds);
    free(fd);
    free(kind);
    free(r);
    return 0;
}

/* ---- half-closing clients ---- */

static int mode_halfclose(const char *path, int conns)
{
    if (conns > MAX_CONNS)
        conns = MAX_CONNS;
    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    int *fd = calloc((size_t)conns, sizeof *fd);
    int *state = calloc((size_t)conns, sizeof *state); /* 0 to send, 1 reading, 2 done */
    struct resp *r = calloc((size_t)conns, sizeof *r);
    if (fd == NULL || state == NULL || r == NULL)
        return 1;
    for (int i = 0; i < conns; i++)
        fd[i] = open_conn();
    double deadline = now_s() + 15;
    int complete = 0, incomplete = 0, left = conns;
    while (left > 0 && now_s() < deadline) {
        struct pollfd pfd[MAX_CONNS];
        for (int i = 0; i < conns; i++) {
            pfd[i].fd = state[i] == 2 ? -1 : fd[i];
            pfd[i].events = state[i] == 0 ? POLLOUT : POLLIN;
        }
        if (poll(pfd, (nfds_t)conns, 200) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < conns; i++) {
            if (fd[i] < 0 && state[i] != 2) {
                incomplete++, left--, state[i] = 2;
                continue;
            }
            if (state[i] == 2 || !pfd[i].revents)
                continue;
            if (state[i] == 0) {
                if (send(fd[i], req, (size_t)rl, MSG_NOSIGNAL) == rl) {
                    shutdown(fd[i], SHUT_WR);
                    state[i] = 1;
                } else {
                    incomplete++, left--, state[i] = 2;
                }
                continue;
            }
            if (read_into(fd[i], &r[i]) < 0) {
                int st;
                const char *b;
                size_t bl;
                if (resp_complete(&r[i], &st, &b, &bl) > 0 && st == 200)
                    complete++;
                else
                    incomplete++;
                left--;
                state[i] = 2;
            }
        }
    }
    for (int i = 0; i < conns; i++) {
        if (fd[i] >= 0)
            close(fd[i]);
        free(r[i].buf);
    }
    printf("clients=%d complete=%d incomplete=%d unfinished=%d\n", conns, complete, incomplete, left);
    free(fd);
    free(state);
    free(r);
    return 0;
}

/* ---- the well-behaved client ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int mode_probe(const char *path, double seconds, int period_ms)
{
    char req[512];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    size_t cap = (size_t)(seconds * 1000 / (period_ms > 0 ? period_ms : 1)) + 16;
    double *lat = malloc(cap * sizeof *lat);
    if (lat == NULL)
        return 1;
    size_t n = 0;
    long failures = 0, reconnects = 0;
    int fd = -1;
    struct resp r = { 0 };
    double end = now_s() + seconds;
    struct sigaction sa = { 0 };
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stop_requested && now_s() < end && n < cap) {
        double t0 = now_s();
        if (fd < 0) {
            fd = open_conn();
            reconnects++;
            r.len = 0;
        }
        int ok = 0;
        if (fd >= 0) {
            struct pollfd p = { fd, POLLOUT, 0 };
            if (poll(&p, 1, 2000) == 1 && send(fd, req, (size_t)rl, MSG_NOSIGNAL) == rl) {
                p.events = POLLIN;
                while (now_s() < t0 + 2) {
                    if (poll(&p, 1, 100) < 0)
                        break;
                    int e = read_into(fd, &r);
                    int st;
                    const char *b;
                    size_t bl;
                    long len = resp_complete(&r, &st, &b, &bl);
                    if (len > 0) {
                        ok = st == 200;
                        resp_consume(&r, (size_t)len);
                        break;
                    }
                    if (e < 0 || len < 0)
                        break;
                }
            }
        }
        double t1 = now_s();
        if (ok) {
            lat[n++] = (t1 - t0) * 1000;
        } else {
            failures++;
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
        double wait = (double)period_ms / 1000 - (now_s() - t0);
        if (wait > 0)
            pause_ms((int)(wait * 1000));
    }
    if (fd >= 0)
        close(fd);
    free(r.buf);
    qsort(lat, n, sizeof *lat, cmp_double);
#define PCT(p) (n ? lat[(size_t)((double)(n - 1) * (p))] : 0.0)
    printf("requests=%zu failures=%ld connections=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", n, failures,
           reconnects, PCT(0.5), PCT(0.99), PCT(1.0));
    free(lat);
    return 0;
}

static void usage(const char *me)
{
    fprintf(stderr,
            "usage: %s upload PORT CONNS BYTES SECONDS | gzip PORT PATH CONNS REQUESTS |\n"
            "       slowloris|flood|churn PORT CONNS SECONDS | halfclose PORT PATH CONNS |\n"
            "       probe PORT PATH SECONDS PERIOD_MS\n",
            me);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        usage(argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    port = atoi(argv[2]);
    crc32_init();
    if (strcmp(mode, "upload") == 0 && argc == 6)
        return mode_upload(atoi(argv[3]), (size_t)atol(argv[4]), atof(argv[5]));
    if (strcmp(mode, "gzip") == 0 && argc == 6)
        return mode_gzip(argv[3], atoi(argv[4]), atoi(argv[5]));
    if (strcmp(mode, "slowloris") == 0 && argc == 5)
        return mode_slowloris(atoi(argv[3]), atof(argv[4]));
    if (strcmp(mode, "flood") == 0 && argc == 5)
        return mode_flood(atoi(argv[3]), atof(argv[4]));
    if (strcmp(mode, "churn") == 0 && argc == 5)
        return mode_churn(atoi(argv[3]), atof(argv[4]));
    if (strcmp(mode, "halfclose") == 0 && argc == 5)
        return mode_halfclose(argv[3], atoi(argv[4]));
    if (strcmp(mode, "probe") == 0 && argc == 6)
        return mode_probe(argv[3], atof(argv[4]), atoi(argv[5]));
    usage(argv[0]);
    return 2;
}
