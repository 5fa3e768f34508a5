/*
 * floor.c - the floor of the benchmark: a bare epoll loop that answers without parsing, so
 * its CPU time per request is what the kernel (TCP over loopback, epoll, the syscalls)
 * costs and nothing more. No server can do less work per request.
 *
 *   floor DIR [THREADS] [-1]   DIR from bench/corpus.c; THREADS (default 1) loops, each
 *                              with its own SO_REUSEPORT listener on the same port;
 *                              -1: one send per response even for pipelined requests
 *
 * Listens on 127.0.0.1, a free port, prints "floor listening on http://127.0.0.1:PORT/" and
 * runs until SIGTERM or SIGINT.
 *
 * It does not parse: a request ends at "\r\n\r\n" (counting them answers pipelined
 * requests), and the byte after "GET /" picks the canned answer:
 *   'h'  /hello   13 bytes, Content-Length
 *   'c'  /chunks  16 x 1 KiB chunked, one send per chunk (as a server flushing each piece
 *                 does), then the last chunk in its own send: 17 sends
 *   'b'  /big     1 MiB, Content-Length
 *   't'  /tick?ms=P&n=N  the latency floor: a chunked stream that gets "t=<CLOCK_MONOTONIC
 *                 ns>\n" every P ms, N times, sent by the loop thread itself right after it
 *                 read the clock (bench_module.c's /tick without the module thread and the
 *                 hand-over to the loop: what flush_latency.c measures is then the kernel
 *                 and the scheduler alone); phases spread over the period as there
 *   else 404
 * Responses to requests that arrived in one read go out in one writev (one send per flush,
 * where the flush is the end of the read batch), unless -1. Connections are registered once,
 * edge-triggered for input and output (as mio registers httpsrv's): level-triggered, every
 * epoll_wait would poll each socket it reported the time before once more, a kernel cost a
 * floor must not have.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define TEXT_LEN 20480
#define BIG_LEN (1024 * 1024)
#define PIECE 1024
#define CHUNKS 16
#define MAX_IOV 64

struct seg {
    const char *p;
    size_t len;
    int flush_after; /* send what is gathered so far before the next segment */
};

struct conn {
    int fd;
    int pos;     /* bytes seen of the current request, up to 6 */
    int match;   /* how much of "\r\n\r\n" ended the bytes seen so far */
    char kind;   /* the byte after "GET /" */
    struct seg *q;
    size_t head, len, cap;
    /* /tick */
    char line[64]; /* the request line after "GET /t", for ms= and n= */
    int linelen;
    int ticking;
    uint64_t due, period;
    long remaining;
};

/* Per loop thread: the /tick streams and the timer that drives them (armed while any). */
static __thread struct conn **tickers;
static __thread int ntickers, tickcap, tfd = -1;
static __thread unsigned long tick_serial;
static char tick_marker; /* epoll data of the timer */
static char tick_head[256];
static size_t tick_head_len;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void arm_timer(int on)
{
    struct itimerspec it = { { 0, on ? 250000 : 0 }, { 0, on ? 250000 : 0 } };
    timerfd_settime(tfd, 0, &it, NULL);
}

static void untick(struct conn *c)
{
    for (int i = 0; i < ntickers; i++)
        if (tickers[i] == c) {
            tickers[i] = tickers[--ntickers];
            break;
        }
    c->ticking = 0;
    if (ntickers == 0)
        arm_timer(0);
}

static char hello_resp[256], big_head[256], chunks_head[256], not_found[256];
static char *big_resp;
static size_t hello_len, big_resp_len, chunks_head_len, not_found_len;
static char chunk_frames[CHUNKS][PIECE + 16];
static size_t chunk_frame_len;
static const char last_chunk[] = "0\r\n\r\n";
static int one_send_per_response;
static int port;

static const char common[] = "Server: floor\r\nDate: Sun, 01 Jan 2026 00:00:00 GMT\r\n";

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void push(struct conn *c, const char *p, size_t len, int flush_after)
{
    if (c->head + c->len == c->cap) {
        if (c->head > 0) {
            memmove(c->q, c->q + c->head, c->len * sizeof *c->q);
            c->head = 0;
        } else {
            c->cap = c->cap ? c->cap * 2 : 32;
            c->q = realloc(c->q, c->cap * sizeof *c->q);
            if (c->q == NULL)
                die("realloc");
        }
    }
    c->q[c->head + c->len] = (struct seg){ p, len, flush_after };
    c->len++;
}

static void answer(struct conn *c)
{
    int f = one_send_per_response;
    switch (c->kind) {
    case 'h':
        push(c, hello_resp, hello_len, f);
        break;
    case 'b':
        push(c, big_resp, big_resp_len, f);
        break;
    case 'c':
        push(c, chunks_head, chunks_head_len, 0);
        for (int i = 0; i < CHUNKS; i++)
            push(c, chunk_frames[i], chunk_frame_len, 1);
        push(c, last_chunk, sizeof last_chunk - 1, 1);
        break;
    case 't': {
        c->line[c->linelen] = '\0';
        const char *ms = strstr(c->line, "ms="), *n = strstr(c->line, "&n=");
        long period_ms = ms ? atol(ms + 3) : 100;
        c->remaining = n ? atol(n + 3) : 50;
        if (period_ms < 1)
            period_ms = 1;
        c->period = (uint64_t)period_ms * 1000000u;
        c->due = now_ns() + c->period * ((tick_serial++ * 617u) % 1000u) / 1000u + 1000000u;
        push(c, tick_head, tick_head_len, 1);
        if (!c->ticking) {
            if (ntickers == tickcap) {
                tickcap = tickcap ? tickcap * 2 : 1024;
                tickers = realloc(tickers, (size_t)tickcap * sizeof *tickers);
                if (tickers == NULL)
                    die("realloc");
            }
            tickers[ntickers++] = c;
            c->ticking = 1;
            if (ntickers == 1)
                arm_timer(1);
        }
        break;
    }
    default:
        push(c, not_found, not_found_len, f);
        break;
    }
}

/* The timer: every due stream gets its stamp, read right before its send. */
static void on_tick(void)
{
    uint64_t expirations;
    if (read(tfd, &expirations, sizeof expirations) < 0)
        return;
    uint64_t now = now_ns();
    for (int i = ntickers - 1; i >= 0; i--) {
        struct conn *c = tickers[i];
        if (c->due > now)
            continue;
        c->due += c->period;
        char buf[64], body[40];
        int blen = snprintf(body, sizeof body, "t=%llu\n", (unsigned long long)now_ns());
        int len = snprintf(buf, sizeof buf, "%x\r\n%s\r\n%s", blen, body,
                           c->remaining <= 1 ? "0\r\n\r\n" : "");
        if (c->len == 0) /* nothing queued before it: send now (else drop this stamp) */
            send(c->fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (--c->remaining <= 0)
            untick(c);
    }
}

/* Returns -1 when the connection failed. What the socket does not take now goes when its
 * EPOLLOUT edge comes. */
static int drain(struct conn *c)
{
    while (c->len > 0) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        size_t total = 0;
        for (size_t i = c->head; i < c->head + c->len && n < MAX_IOV; i++) {
            iov[n].iov_base = (void *)c->q[i].p;
            iov[n].iov_len = c->q[i].len;
            total += c->q[i].len;
            n++;
            if (c->q[i].flush_after)
                break;
        }
        ssize_t w = n == 1 ? send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                           : writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            return -1;
        }
        size_t left = (size_t)w;
        while (left > 0) {
            struct seg *s = &c->q[c->head];
            if (left >= s->len) {
                left -= s->len;
                c->head++;
                c->len--;
            } else {
                s->p += left;
                s->len -= left;
                left = 0;
            }
        }
        if ((size_t)w < total)
            break; /* partial: the socket is full, wait for EPOLLOUT */
    }
    if (c->len == 0)
        c->head = 0;
    return 0;
}

static void close_conn(struct conn *c)
{
    if (c->ticking)
        untick(c);
    close(c->fd);
    free(c->q);
    free(c);
}

/* Answers every request that ends in these bytes (no parsing: see the top). */
static void scan(struct conn *c, const char *buf, ssize_t r)
{
    for (ssize_t i = 0; i < r; i++) {
        char b = buf[i];
        if (c->pos < 6) {
            if (c->pos == 5) {
                c->kind = b;
                c->linelen = 0;
            }
            c->pos++;
        } else if (c->kind == 't' && c->linelen < (int)sizeof c->line - 1) {
            c->line[c->linelen++] = b;
        }
        if (b == (c->match & 1 ? '\n' : '\r'))
            c->match++;
        else
            c->match = b == '\r' ? 1 : 0;
        if (c->match == 4) {
            answer(c);
            c->match = 0;
            c->pos = 0;
        }
    }
}

/* Edge-triggered: reads until a read comes back short (the socket had no more then; anything
 * arriving later brings a new edge). */
static void on_read(struct conn *c)
{
    static __thread char buf[65536];
    ssize_t r;
    do {
        r = recv(c->fd, buf, sizeof buf, 0);
        if (r <= 0) {
            if (r < 0 && errno == EAGAIN)
                break;
            close_conn(c);
            return;
        }
        scan(c, buf, r);
    } while ((size_t)r == sizeof buf);
    if (drain(c) != 0)
        close_conn(c);
}

static int make_listener(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("bind");
    if (listen(fd, 4096) != 0)
        die("listen");
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    port = ntohs(sa.sin_port);
    return fd;
}

static void *loop(void *arg)
{
    int lfd = (int)(long)arg;
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
        die("epoll_ctl");
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = { .events = EPOLLIN, .data.ptr = &tick_marker };
    if (tfd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) != 0)
        die("timerfd");
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if ((void *)c == (void *)&tick_marker) {
                on_tick();
                continue;
            }
            if (c == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0)
                        break;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    if (c == NULL)
                        die("calloc");
                    c->fd = fd;
                    struct epoll_event cev = { .events = EPOLLIN | EPOLLOUT | EPOLLET,
                                               .data.ptr = c };
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) {
                        close_conn(c);
                        continue;
                    }
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                if (drain(c) != 0) {
                    close_conn(c);
                    continue;
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_read(c);
        }
    }
    return NULL;
}

static void load(const char *dir, const char *name, char *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL || fread(buf, 1, len, f) != len)
        die(path);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [THREADS] [-1]\n", argv[0]);
        return 2;
    }
    int threads = 1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-1") == 0)
            one_send_per_response = 1;
        else
            threads = atoi(argv[i]) > 0 ? atoi(argv[i]) : 1;
    }
    static char text[TEXT_LEN];
    load(argv[1], "text.txt", text, TEXT_LEN);

    hello_len = (size_t)snprintf(hello_resp, sizeof hello_resp,
                                 "HTTP/1.1 200 OK\r\n%sContent-Type: text/plain\r\n"
                                 "Content-Length: 13\r\n\r\nHello, world!",
                                 common);
    chunks_head_len = (size_t)snprintf(chunks_head, sizeof chunks_head,
                                       "HTTP/1.1 200 OK\r\n%sContent-Type: text/plain\r\n"
                                       "Transfer-Encoding: chunked\r\n\r\n",
                                       common);
    for (int i = 0; i < CHUNKS; i++) {
        memcpy(chunk_frames[i], "400\r\n", 5);
        memcpy(chunk_frames[i] + 5, text + i * PIECE, PIECE);
        memcpy(chunk_frames[i] + 5 + PIECE, "\r\n", 2);
    }
    chunk_frame_len = PIECE + 7;
    tick_head_len = (size_t)snprintf(tick_head, sizeof tick_head,
                                     "HTTP/1.1 200 OK\r\n%sContent-Type: text/plain\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n",
                                     common);
    not_found_len = (size_t)snprintf(not_found, sizeof not_found,
                                     "HTTP/1.1 404 Not Found\r\n%sContent-Length: 0\r\n\r\n", common);
    size_t bh = (size_t)snprintf(big_head, sizeof big_head,
                                 "HTTP/1.1 200 OK\r\n%sContent-Type: application/octet-stream\r\n"
                                 "Content-Length: %d\r\n\r\n",
                                 common, BIG_LEN);
    big_resp = malloc(bh + BIG_LEN);
    if (big_resp == NULL)
        die("malloc");
    memcpy(big_resp, big_head, bh);
    load(argv[1], "big.bin", big_resp + bh, BIG_LEN);
    big_resp_len = bh + BIG_LEN;

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    for (int t = 0; t < threads; t++) {
        int lfd = make_listener();
        pthread_t th;
        if (pthread_create(&th, NULL, loop, (void *)(long)lfd) != 0)
            die("pthread_create");
        pthread_detach(th);
    }
    printf("floor listening on http://127.0.0.1:%d/\n", port);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    return 0;
}
