/*
 * bench_module.c - the httpsrv module the side-by-side benchmark drives.
 *
 *   --module bench_module.so=DIR     DIR holds text.txt and big.bin (bench/corpus.c)
 *
 *   GET /hello       13 bytes "Hello, world!", text/plain, one piece
 *   GET /chunks      16 x 1 KiB of text/plain (text[0..16 KiB)), each flushed, then final
 *   GET /gzip10k     text[0..10240) as text/html in one piece (gzip when accepted)
 *   GET /gzipstream  text[0..20480) as text/html, flushed every 1 KiB
 *   GET /big         big.bin (1 MiB), application/octet-stream
 *   POST /upload     a buffered request body; answers "<length> <CRC-32>\n" of it (bench/hostile.sh)
 *   GET /hello/pool, /gzip10k/pool, /gzipstream/pool
 *                    as without /pool, from a pool thread (HTTPSRV_ROUTE_POOL)
 *   GET /gzipbig/pool  256 KiB of text/html from a pool thread: text[] 13 times (the last
 *                    time cut), flushed every 64 KiB (bench/hostile.sh: large compressed
 *                    flushes on many threads)
 *   GET /tick[?ms=P&n=N&async=1]
 *                    a stream kept open by the module: a module thread appends and
 *                    flushes "t=<CLOCK_MONOTONIC ns>\n" every P ms (default 100), N times
 *                    (default 50), then a final flush. The streams' phases are spread
 *                    over the period, so 1,000 streams at 100 ms give 10 flushes per ms.
 *                    Default: the blocking httpsrv_response_flush from the module thread;
 *                    async=1: httpsrv_response_flush_async. The client (flush_latency.c)
 *                    takes now - stamp for every chunk.
 *
 * Inline handlers run on the loop thread: a flush there returns 0 or EAGAIN (queued, not lost).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crc32.h"
#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

#define TEXT_LEN 20480
#define BIG_LEN (1024 * 1024)
#define PIECE 1024

static char text[TEXT_LEN];
static char *big;

static int load(const char *dir, const char *name, char *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "bench_module: %s: cannot open\n", path);
        return ENOENT;
    }
    size_t got = fread(buf, 1, len, f);
    fclose(f);
    if (got != len) {
        fprintf(stderr, "bench_module: %s: expected %zu bytes, got %zu\n", path, len, got);
        return EINVAL;
    }
    return 0;
}

/* EAGAIN on the loop thread: queued, the loop sends it. A session that ended
 * (client gone) is not a failure of the handler either. */
static int finish(int err)
{
    if (err == 0 || err == EAGAIN || err == EPIPE || err == ECONNRESET || err == ECANCELED ||
        err == EALREADY || err == ESTALE || err == ETIMEDOUT)
        return HTTPSRV_DONE;
    fprintf(stderr, "bench_module: %s\n", httpsrv_strerror(err));
    return -1;
}

static int one_piece(httpsrv_session *sess, const char *type, const void *body, size_t len)
{
    int err = httpsrv_response_header_set(sess, "Content-Type", type);
    if (err == 0)
        err = httpsrv_response_append(sess, body, len);
    return finish(err);
}

static int pieces(httpsrv_session *sess, const char *type, int count)
{
    int err = httpsrv_response_header_set(sess, "Content-Type", type);
    for (int i = 0; (err == 0 || err == EAGAIN) && i < count; i++) {
        err = httpsrv_response_append(sess, text + (size_t)i * PIECE, PIECE);
        if (err == 0)
            err = httpsrv_response_flush(sess, 0);
    }
    return finish(err);
}

static int h_hello(httpsrv_session *sess, void *ud)
{
    (void)ud;
    return one_piece(sess, "text/plain", "Hello, world!", 13);
}

static int h_chunks(httpsrv_session *sess, void *ud)
{
    (void)ud;
    return pieces(sess, "text/plain", 16);
}

static int h_gzip10k(httpsrv_session *sess, void *ud)
{
    (void)ud;
    return one_piece(sess, "text/html", text, 10240);
}

static int h_gzipstream(httpsrv_session *sess, void *ud)
{
    (void)ud;
    return pieces(sess, "text/html", TEXT_LEN / PIECE);
}

static int h_gzipbig(httpsrv_session *sess, void *ud)
{
    (void)ud;
    int err = httpsrv_response_header_set(sess, "Content-Type", "text/html");
    size_t sent = 0, flushed = 0;
    while ((err == 0 || err == EAGAIN) && sent < 256 * 1024) {
        size_t n = 256 * 1024 - sent < TEXT_LEN ? 256 * 1024 - sent : TEXT_LEN;
        err = httpsrv_response_append(sess, text, n);
        sent += n;
        if (err == 0 && sent - flushed >= 64 * 1024) {
            err = httpsrv_response_flush(sess, 0);
            flushed = sent;
        }
    }
    return finish(err);
}

/* The 1 MiB body is lent, not copied (httpsrv_response_append_ref; it lives as long as the
 * module, so no release callback), as libmicrohttpd serves it from a persistent buffer. */
static int h_big(httpsrv_session *sess, void *ud)
{
    (void)ud;
    int err = httpsrv_response_header_set(sess, "Content-Type", "application/octet-stream");
    if (err == 0)
        err = httpsrv_response_append_ref(sess, big, BIG_LEN, NULL, NULL);
    return finish(err);
}

/* POST /upload: the body is read whole before the handler runs (a buffered route). The
 * answer's CRC-32 lets the client check the body arrived byte for byte without echoing it. */
static int h_upload(httpsrv_session *sess, void *ud)
{
    (void)ud;
    size_t len = 0;
    const unsigned char *body = httpsrv_request_body(sess, &len);
    char answer[64];
    int n = snprintf(answer, sizeof answer, "%zu %lu\n", len,
                     (unsigned long)(body != NULL ? crc32_update(0, body, len) : 0));
    return one_piece(sess, "text/plain", answer, (size_t)n);
}

/* ---- /tick: streams driven by a thread of the module ---- */

#define MAX_STREAMS 16384

struct stream {
    httpsrv_session *sess; /* NULL: free slot */
    uint64_t due_ns;
    uint64_t period_ns;
    int remaining;
    int async;
};

static struct stream streams[MAX_STREAMS];
static int active;  /* streams in the table; the thread sleeps on `wake` while 0 */
static int hiwater; /* slots at or past it were never used */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_t ticker;
static int ticker_started;
static int stopping; /* under lock */
static unsigned long stream_serial;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long query_long(const char *q, const char *key, long def, long lo, long hi)
{
    size_t klen = strlen(key);
    for (const char *p = q; p != NULL && *p != '\0';) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            long v = strtol(p + klen + 1, NULL, 10);
            return v < lo ? lo : v > hi ? hi : v;
        }
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return def;
}

/* Runs on the loop thread when the session ends (complete, client gone, stop). */
static void tick_closed(httpsrv_session *sess, int reason, void *ud)
{
    (void)reason;
    struct stream *s = ud;
    pthread_mutex_lock(&lock);
    if (s->sess == sess) {
        s->sess = NULL;
        active--;
    }
    pthread_mutex_unlock(&lock);
}

static int h_tick(httpsrv_session *sess, void *ud)
{
    (void)ud;
    const char *q = httpsrv_request_query(sess);
    long ms = query_long(q, "ms", 100, 1, 10000);
    long n = query_long(q, "n", 50, 1, 1000000);
    long async = query_long(q, "async", 0, 0, 1);

    int err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");
    if (err == 0)
        err = httpsrv_response_compression(sess, HTTPSRV_COMPRESS_OFF);
    if (err == 0)
        err = httpsrv_response_flush(sess, 0); /* the head goes out now */
    if (err != 0 && err != EAGAIN)
        return finish(err);

    pthread_mutex_lock(&lock);
    struct stream *s = NULL;
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].sess == NULL) {
            s = &streams[i];
            if (i >= hiwater)
                hiwater = i + 1;
            break;
        }
    if (s != NULL) {
        uint64_t period = (uint64_t)ms * 1000000u;
        /* spread the phases evenly: stream k starts (k * 617 mod 1000) / 1000 periods late */
        uint64_t phase = period * ((stream_serial++ * 617u) % 1000u) / 1000u;
        s->sess = sess;
        s->period_ns = period;
        s->due_ns = now_ns() + phase + 1000000u;
        s->remaining = (int)n;
        s->async = (int)async;
        active++;
        pthread_cond_signal(&wake);
    }
    pthread_mutex_unlock(&lock);
    if (s == NULL) {
        httpsrv_response_flush(sess, 1);
        return HTTPSRV_DONE;
    }
    if (httpsrv_session_on_close(sess, tick_closed, s) != 0)
        return HTTPSRV_DONE; /* already over */
    return HTTPSRV_PENDING;
}

struct due {
    httpsrv_session *sess;
    int last;
    int async;
};

static void *tick_thread(void *arg)
{
    (void)arg;
    static struct due due[MAX_STREAMS];
    for (;;) {
        /* No CPU time while no stream is open: the throughput workloads measure the
         * server process, and this thread must not add to it. */
        pthread_mutex_lock(&lock);
        while (!stopping && active == 0)
            pthread_cond_wait(&wake, &lock);
        int stop = stopping;
        pthread_mutex_unlock(&lock);
        if (stop)
            break;
        struct timespec ts = { 0, 250000 }; /* 0.25 ms granularity */
        nanosleep(&ts, NULL);
        uint64_t now = now_ns();
        int ndue = 0;
        pthread_mutex_lock(&lock);
        for (int i = 0; i < hiwater; i++) {
            struct stream *s = &streams[i];
            if (s->sess == NULL || s->due_ns > now)
                continue;
            due[ndue].sess = s->sess;
            due[ndue].async = s->async;
            due[ndue].last = --s->remaining <= 0;
            ndue++;
            s->due_ns += s->period_ns;
            if (s->remaining <= 0) {
                s->sess = NULL;
                active--;
            }
        }
        pthread_mutex_unlock(&lock);

        for (int i = 0; i < ndue; i++) {
            /* A stale handle (the client left meanwhile) just returns ESTALE. */
            char line[40];
            int len = snprintf(line, sizeof line, "t=%llu\n", (unsigned long long)now_ns());
            int err = httpsrv_response_append(due[i].sess, line, (size_t)len);
            if (err != 0)
                continue;
            if (due[i].async)
                httpsrv_response_flush_async(due[i].sess, due[i].last, NULL, NULL);
            else
                httpsrv_response_flush(due[i].sess, due[i].last);
        }
    }
    return NULL;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    if (args == NULL || *args == '\0') {
        fprintf(stderr, "bench_module: pass the corpus directory: --module bench_module.so=DIR\n");
        return EINVAL;
    }
    big = malloc(BIG_LEN);
    if (big == NULL)
        return ENOMEM;
    int err = load(args, "text.txt", text, TEXT_LEN);
    if (err == 0)
        err = load(args, "big.bin", big, BIG_LEN);
    if (err != 0)
        return err;

    static const struct {
        const char *path;
        httpsrv_handler_fn fn;
    } routes[] = {
        { "/hello", h_hello },     { "/chunks", h_chunks }, { "/gzip10k", h_gzip10k },
        { "/gzipstream", h_gzipstream }, { "/big", h_big },  { "/tick", h_tick },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        err = httpsrv_server_route(srv, "GET", routes[i].path, 0, routes[i].fn, NULL);
        if (err != 0) {
            fprintf(stderr, "bench_module: GET %s: %s\n", routes[i].path, httpsrv_strerror(err));
            return err;
        }
    }
    static const struct {
        const char *path;
        httpsrv_handler_fn fn;
    } pooled[] = {
        { "/hello/pool", h_hello },
        { "/gzip10k/pool", h_gzip10k },
        { "/gzipstream/pool", h_gzipstream },
        { "/gzipbig/pool", h_gzipbig },
    };
    for (size_t i = 0; i < sizeof pooled / sizeof pooled[0]; i++) {
        err = httpsrv_server_route(srv, "GET", pooled[i].path, HTTPSRV_ROUTE_POOL, pooled[i].fn, NULL);
        if (err != 0) {
            fprintf(stderr, "bench_module: GET %s: %s\n", pooled[i].path, httpsrv_strerror(err));
            return err;
        }
    }
    crc32_init();
    err = httpsrv_server_route(srv, "POST", "/upload", 0, h_upload, NULL);
    if (err != 0) {
        fprintf(stderr, "bench_module: POST /upload: %s\n", httpsrv_strerror(err));
        return err;
    }
    if (pthread_create(&ticker, NULL, tick_thread, NULL) != 0)
        return EAGAIN;
    ticker_started = 1;
    return 0;
}

void httpsrv_module_fini(httpsrv_server *srv)
{
    (void)srv;
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    if (ticker_started)
        pthread_join(ticker, NULL);
    free(big);
}
