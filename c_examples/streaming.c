/*
 * streaming.c - sending a response piece by piece.
 *
 *   GET /stream[?n=N&size=S]  inline handler: N chunks (default 16, 1..1024)
 *                             of S bytes of text (default 1024, 1..65536,
 *                             N*S at most 2 MiB), each appended and flushed.
 *   GET /stream/slow          pool handler: 5 lines, 200 ms apart, each sent
 *                             with a blocking flush.
 *
 * Try:  curl -N http://127.0.0.1:8080/stream/slow
 *
 * The two handlers show the two flush behaviours:
 *  - on the event-loop thread (inline routes) a flush never blocks. It
 *    returns 0 when everything reached the kernel, or EAGAIN when part of it
 *    is still queued; queued data is not lost, the loop keeps sending it.
 *  - on any other thread (HTTPSRV_ROUTE_POOL routes, threads of your own) a
 *    flush blocks until the data reached the kernel, and returns an error
 *    (EPIPE, ECONNRESET, ETIMEDOUT, ...) if it never will.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

/* Upper bound of N*S: keep the queued output well below the server's
 * max_pending_bytes (4 MiB by default), since an inline handler cannot wait
 * for the socket to drain. */
#define STREAM_MAX_TOTAL (2L * 1024 * 1024)

/*
 * Returns the integer value of `key` in a query string such as "n=4&size=10",
 * clamped to [lo, hi]; `def` when the key is absent or not a number.
 */
static long query_long(const char *query, const char *key, long def, long lo, long hi)
{
    size_t klen = strlen(key);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        if (end == NULL)
            end = p + strlen(p);
        if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            char *stop;
            long v = strtol(p + klen + 1, &stop, 10);
            if (stop == p + klen + 1 || stop != end)
                return def; /* empty or not a number */
            return v < lo ? lo : v > hi ? hi : v;
        }
        p = *end == '&' ? end + 1 : end;
    }
    return def;
}

/* Is `err` the session telling us it is over (client gone, timeout, abort)? */
static int session_ended(int err)
{
    return err == EPIPE || err == ECONNRESET || err == ETIMEDOUT || err == ECANCELED ||
           err == EALREADY || err == ESTALE;
}

/* Fills buf[0..size) with one line of text: "chunk 3/16 abcdef...\n". */
static void fill_chunk(char *buf, long size, long index, long count)
{
    char head[48];
    int hlen = snprintf(head, sizeof head, "chunk %ld/%ld ", index, count);
    for (long i = 0; i < size; i++)
        buf[i] = i < hlen ? head[i] : (char)('a' + (i - hlen) % 26);
    buf[size - 1] = '\n';
}

/* GET /stream: inline, on the loop thread, so every flush is non-blocking. */
static int stream(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    const char *query = httpsrv_request_query(sess);
    long n = query_long(query, "n", 16, 1, 1024);
    long size = query_long(query, "size", 1024, 1, 65536);
    if (n * size > STREAM_MAX_TOTAL)
        n = STREAM_MAX_TOTAL / size;

    char *buf = malloc((size_t)size);
    if (buf == NULL)
        return -1; /* the client gets a 500 */

    int err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");
    for (long i = 1; err == 0 && i <= n; i++) {
        fill_chunk(buf, size, i, n);
        err = httpsrv_response_append(sess, buf, (size_t)size);
        if (err == 0)
            err = httpsrv_response_flush(sess, 0);
        if (err == EAGAIN)
            err = 0; /* fine: the rest is queued and the loop sends it later */
    }
    free(buf);

    if (err == 0)
        err = httpsrv_response_flush(sess, 1); /* the last chunk */
    if (err == 0 || err == EAGAIN)
        return HTTPSRV_DONE;
    if (session_ended(err))
        return HTTPSRV_DONE; /* the client left: nothing more to do */

    /* ENOBUFS (more queued than max_pending_bytes) or another failure:
     * returning an error closes the connection, so the client sees a
     * truncated response rather than a complete wrong one. */
    fprintf(stderr, "streaming: /stream failed: %s\n", httpsrv_strerror(err));
    return -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* GET /stream/slow: a pool handler, so it may sleep and its flushes block. */
static int stream_slow(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    int err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");

    for (int i = 1; err == 0 && i <= 5; i++) {
        if (i > 1)
            sleep_ms(200);
        char line[64];
        int len = snprintf(line, sizeof line, "line %d of 5\n", i);
        err = httpsrv_response_append(sess, line, (size_t)len);
        if (err == 0)
            err = httpsrv_response_flush(sess, 0); /* returns once it is sent */
    }
    if (err == 0)
        err = httpsrv_response_flush(sess, 1);

    if (err == 0 || session_ended(err))
        return HTTPSRV_DONE; /* done, or the client went away: stop early */
    fprintf(stderr, "streaming: /stream/slow failed: %s\n", httpsrv_strerror(err));
    return -1;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    int err = httpsrv_server_route(srv, "GET", "/stream", 0, stream, NULL);
    if (err != 0) {
        fprintf(stderr, "streaming: GET /stream: %s\n", httpsrv_strerror(err));
        return err;
    }
    err = httpsrv_server_route(srv, "GET", "/stream/slow", HTTPSRV_ROUTE_POOL, stream_slow, NULL);
    if (err != 0)
        fprintf(stderr, "streaming: GET /stream/slow: %s\n", httpsrv_strerror(err));
    return err;
}
