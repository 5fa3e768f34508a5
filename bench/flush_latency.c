/*
 * flush_latency.c - the client of the flush-latency workload.
 *
 *   flush_latency PORT STREAMS SECONDS [PERIOD_MS] [async]
 *
 * Opens STREAMS connections to 127.0.0.1:PORT, each asking
 * GET /tick?ms=PERIOD_MS&n=K (bench_module.c; K = SECONDS * 1000 / PERIOD_MS, default
 * period 100 ms) and, on one epoll loop, reads every chunk. Each chunk carries
 * "t=<CLOCK_MONOTONIC ns>\n" taken by the module right before it appended and flushed;
 * the client records now - stamp when the bytes arrive (now: right after recv returns).
 * The first 500 ms of stamps (connection setup) are not counted.
 *
 * Prints: "streams S samples N p50_us A p90_us B p99_us C p999_us D max_us E".
 * Bounded: SECONDS + 5 s at most.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    int sent;
    int state; /* 0 looking for 't', 1 saw 't', 2 reading digits */
    uint64_t value;
    int closed;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT STREAMS SECONDS [PERIOD_MS] [async]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int streams = atoi(argv[2]);
    int seconds = atoi(argv[3]);
    int period = argc > 4 ? atoi(argv[4]) : 100;
    int async = argc > 5 && strcmp(argv[5], "async") == 0;
    if (streams < 1 || seconds < 1 || period < 1)
        return 2;
    int ticks = seconds * 1000 / period;
    char req[256];
    int reqlen = snprintf(req, sizeof req,
                          "GET /tick?ms=%d&n=%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", period,
                          ticks, async ? "&async=1" : "");

    size_t cap = (size_t)streams * (size_t)ticks + 16;
    uint64_t *lat = malloc(cap * sizeof *lat);
    struct conn *conns = calloc((size_t)streams, sizeof *conns);
    int ep = epoll_create1(0);
    if (lat == NULL || conns == NULL || ep < 0) {
        perror("setup");
        return 1;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    uint64_t start = now_ns();
    uint64_t count_from = start + 500000000u;
    uint64_t deadline = start + (uint64_t)(seconds + 5) * 1000000000u;
    for (int i = 0; i < streams; i++) {
        struct conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c->fd < 0) {
            perror("socket (raise ulimit -n)");
            return 1;
        }
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    size_t n = 0, skipped = 0;
    int open = streams;
    struct epoll_event evs[512];
    static char buf[65536];
    while (open > 0 && now_ns() < deadline) {
        int k = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c->sent && (evs[i].events & EPOLLOUT)) {
                if (send(c->fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {
                    fprintf(stderr, "send failed\n");
                    return 1;
                }
                c->sent = 1;
                struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                continue;
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            uint64_t t = now_ns();
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->closed = 1;
                open--;
                continue;
            }
            for (ssize_t j = 0; j < r; j++) {
                char b = buf[j];
                if (c->state == 2 && b >= '0' && b <= '9') {
                    c->value = c->value * 10 + (uint64_t)(b - '0');
                } else if (c->state == 2 && b == '\n') {
                    if (c->value < count_from)
                        skipped++;
                    else if (n < cap)
                        lat[n++] = t > c->value ? t - c->value : 0;
                    c->state = 0;
                } else if (c->state == 1 && b == '=') {
                    c->state = 2;
                    c->value = 0;
                } else {
                    c->state = b == 't' ? 1 : 0;
                }
            }
        }
    }
    if (n == 0) {
        printf("streams %d samples 0\n", streams);
        return 1;
    }
    qsort(lat, n, sizeof *lat, cmp_u64);
#define PCT(p) ((double)lat[(size_t)((double)(n - 1) * (p))] / 1000.0)
    printf("streams %d samples %zu expected %zu p50_us %.1f p90_us %.1f p99_us %.1f "
           "p999_us %.1f max_us %.1f\n",
           streams, n, (size_t)streams * (size_t)ticks - skipped, PCT(0.50), PCT(0.90),
           PCT(0.99), PCT(0.999), (double)lat[n - 1] / 1000.0);
    return 0;
}
