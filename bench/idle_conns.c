/*
 * idle_conns.c - opens N keep-alive connections, sends one request on each, reads the
 * response, then keeps them all open and idle, so the script can read the server's
 * resident memory per idle connection. Over cleartext (bench/run.sh) or TLS (bench/tls.sh).
 *
 *   idle_conns PORT N HOLD_S [PATH [tls [SUITE [GROUP]]]]
 *       PATH default /hello; host 127.0.0.1 only.
 *       tls: a TLS 1.3 handshake first (OpenSSL, non-blocking) offering only the suite SUITE
 *       (default TLS_AES_128_GCM_SHA256) and the group GROUP (default X25519); no session is
 *       resumed (no tickets, no cache); the certificate is not verified (the handshake and
 *       its signature are what cost the server; trust does not).
 *
 * Prints "ready N" (TLS: "ready N CIPHER") once all N responses arrived (or "failed ..." and
 * exits 1), holds the connections HOLD_S seconds, then prints "open M": how many the server
 * still kept open, and exits. The whole run is bounded: 60 s to get ready, then HOLD_S.
 * Needs N + a few file descriptors (ulimit -n).
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CONNECTING, HANDSHAKE, SENDING, READING, DONE, FAILED };

struct conn {
    int fd;
    int state;
    SSL *ssl; /* NULL over cleartext */
    size_t sent;
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

static void keep_tail(struct conn *c, const char *buf, size_t r)
{
    size_t keep = r < sizeof c->tail - 1 ? r : sizeof c->tail - 1;
    size_t old = strnlen(c->tail, sizeof c->tail);
    if (old + keep > sizeof c->tail - 1) {
        size_t drop = old + keep - (sizeof c->tail - 1);
        memmove(c->tail, c->tail + drop, old - drop);
        old -= drop;
    }
    memcpy(c->tail + old, buf + r - keep, keep);
    c->tail[old + keep] = '\0';
}

/* The result of an I/O call: > 0 bytes moved, 0 wait for `*events`, -1 failed. */
static int io_result(struct conn *c, int r, uint32_t *events)
{
    if (r > 0)
        return r;
    if (c->ssl != NULL) {
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            *events = err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
            return 0;
        }
        return -1;
    }
    if (r < 0 && errno == EAGAIN) {
        *events = c->state == SENDING ? EPOLLOUT : EPOLLIN;
        return 0;
    }
    return -1; /* an error, or the end of the connection */
}

/* Moves a connection on as far as it goes without blocking; returns the events to wait for
 * (0 when it is done or failed). */
static uint32_t step(struct conn *c, const char *req, size_t reqlen)
{
    uint32_t events = 0;
    for (;;) {
        int r;
        switch (c->state) {
        case CONNECTING: {
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
                c->state = FAILED;
                return 0;
            }
            c->state = c->ssl != NULL ? HANDSHAKE : SENDING;
            continue;
        }
        case HANDSHAKE:
            r = io_result(c, SSL_connect(c->ssl), &events);
            if (r > 0)
                c->state = SENDING;
            break;
        case SENDING:
            r = c->ssl != NULL ? SSL_write(c->ssl, req + c->sent, (int)(reqlen - c->sent))
                               : (int)send(c->fd, req + c->sent, reqlen - c->sent, MSG_NOSIGNAL);
            r = io_result(c, r, &events);
            if (r > 0) {
                c->sent += (size_t)r;
                if (c->sent == reqlen)
                    c->state = READING;
            }
            break;
        case READING: {
            char buf[4096];
            r = c->ssl != NULL ? SSL_read(c->ssl, buf, sizeof buf)
                               : (int)recv(c->fd, buf, sizeof buf, 0);
            r = io_result(c, r, &events);
            if (r > 0) {
                keep_tail(c, buf, (size_t)r);
                if (complete(c))
                    c->state = DONE;
            }
            break;
        }
        default:
            return 0;
        }
        if (r < 0)
            c->state = FAILED;
        if (r <= 0)
            return c->state == FAILED ? 0 : events;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT N HOLD_S [PATH [tls [SUITE [GROUP]]]]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int n = atoi(argv[2]);
    int hold = atoi(argv[3]);
    const char *path = argc > 4 ? argv[4] : "/hello";
    int tls = argc > 5 && strcmp(argv[5], "tls") == 0;
    const char *suite = argc > 6 ? argv[6] : "TLS_AES_128_GCM_SHA256";
    const char *group = argc > 7 ? argv[7] : "X25519";
    char req[512];
    int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (n <= 0 || reqlen <= 0 || (size_t)reqlen >= sizeof req) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }

    SSL_CTX *ctx = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
            SSL_CTX_set_ciphersuites(ctx, suite) != 1 ||
            SSL_CTX_set1_groups_list(ctx, group) != 1) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        /* the client's own memory: buffers go back once a connection is idle */
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    }

    struct conn *conns = calloc((size_t)n, sizeof *conns);
    int ep = epoll_create1(0);
    if (conns == NULL || ep < 0) {
        perror("setup");
        return 1;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    int opened = 0, done = 0, failed = 0, inflight = 0;
    double deadline = now_s() + 60;
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
            if (tls) {
                c->ssl = SSL_new(ctx);
                if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
                    ERR_print_errors_fp(stderr);
                    return 1;
                }
                SSL_set_tlsext_host_name(c->ssl, "bench.test");
            }
            if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
                c->state = FAILED;
                failed++;
                continue;
            }
            struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
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
            if (c->state == DONE || c->state == FAILED)
                continue;
            uint32_t events = step(c, req, (size_t)reqlen);
            if (events != 0) {
                struct epoll_event ev = { .events = events, .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            inflight--;
            if (c->state == DONE) {
                done++;
            } else {
                close(c->fd);
                failed++;
            }
        }
    }
    if (failed > 0) {
        printf("failed: %d of %d connections\n", failed, n);
        ERR_print_errors_fp(stdout);
        return 1;
    }
    if (tls)
        printf("ready %d %s\n", done, SSL_get_cipher_name(conns[0].ssl));
    else
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
