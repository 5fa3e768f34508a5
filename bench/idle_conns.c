/*
 * idle_conns.c - opens N keep-alive connections, sends one request on each, reads the
 * response, then keeps them all open and idle, so the script can read the server's
 * resident memory per idle connection.
 *
 *   idle_conns PORT N HOLD_S [PATH]   (PATH default /hello; host 127.0.0.1 only)
 *
 * Prints "ready N" once all N responses arrived (or "failed ..." and exits 1), holds the
 * connections HOLD_S seconds, then prints "open M": how many the server still kept open,
 * and exits. The whole run is bounded: 30 s to get ready, then HOLD_S.
 * Needs N + a few file descriptors (ulimit -n).
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    int state; /* 0 connecting, 1 reading the response, 2 done, -1 failed */
    size_t got;
    char tail[16]; /* the last bytes received */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A /hello response is complete when it ends with the body (Content-Length) or with the
 * last chunk (chunked). */
static int complete(const struct conn *c)
{
    size_t n = strnlen(c->tail, sizeof c->tail);
    return (n >= 5 && memcmp(c->tail + n - 5, "0\r\n\r\n", 5) == 0) ||
           (n >= 6 && memcmp(c->tail + n - 6, "world!", 6) == 0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT N HOLD_S [PATH]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int n = atoi(argv[2]);
    int hold = atoi(argv[3]);
    const char *path = argc > 4 ? argv[4] : "/hello";
    char req[512];
    int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);

    struct conn *conns = calloc((size_t)n, sizeof *conns);
    int ep = epoll_create1(0);
    if (conns == NULL || ep < 0) {
        perror("setup");
        return 1;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int opened = 0, done = 0, failed = 0, inflight = 0;
    double deadline = now_s() + 30;
    struct epoll_event evs[512];
    while (done + failed < n) {
        /* keep at most 256 connects/requests in flight, so the accept queue never overflows */
        while (opened < n && inflight < 256) {
            struct conn *c = &conns[opened++];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0) {
                perror("socket (raise ulimit -n)");
                return 1;
            }
            if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
                c->state = -1;
                failed++;
                continue;
            }
            struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.ptr = c };
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            inflight++;
        }
        if (now_s() > deadline) {
            printf("failed: timeout with %d of %d responses\n", done, n);
            return 1;
        }
        int k = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->state == 0 && (evs[i].events & EPOLLOUT)) {
                if (send(c->fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {
                    c->state = -1;
                } else {
                    c->state = 1;
                    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            } else if (c->state == 1 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                char buf[4096];
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN)
                        continue;
                    c->state = -1;
                } else {
                    size_t keep = (size_t)r < sizeof c->tail - 1 ? (size_t)r : sizeof c->tail - 1;
                    size_t old = strnlen(c->tail, sizeof c->tail);
                    if (old + keep > sizeof c->tail - 1) {
                        size_t drop = old + keep - (sizeof c->tail - 1);
                        memmove(c->tail, c->tail + drop, old - drop);
                        old -= drop;
                    }
                    memcpy(c->tail + old, buf + r - (ssize_t)keep, keep);
                    c->tail[old + keep] = '\0';
                    c->got += (size_t)r;
                    if (complete(c)) {
                        c->state = 2;
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                        done++;
                        inflight--;
                    }
                }
            } else if (evs[i].events & (EPOLLHUP | EPOLLERR)) {
                c->state = -1;
            }
            if (c->state == -1) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->state = -2;
                failed++;
                inflight--;
            }
        }
    }
    if (failed > 0) {
        printf("failed: %d of %d connections\n", failed, n);
        return 1;
    }
    printf("ready %d\n", done);
    fflush(stdout);

    double until = now_s() + hold;
    while (now_s() < until) {
        struct timespec ts = { 0, 100000000 };
        nanosleep(&ts, NULL);
    }
    int open = 0;
    for (int i = 0; i < n; i++) {
        char b;
        ssize_t r = recv(conns[i].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN)
            open++;
    }
    printf("open %d\n", open);
    return 0;
}
