/*
 * compress_module.c - an httpsrv module with the routes tests/compression.rs
 * needs to exercise response compression over real sockets.
 *
 * Every body is deterministic, so the test can rebuild the exact plain text
 * and compare it with what it decodes.
 *
 * Routes (query parameters in brackets, defaults after '='):
 *
 *   /c/body        inline handler, any method. A text body of `len` bytes
 *                  made of the lines "%06u the quick brown fox jumps over the
 *                  lazy dog\n" (numbered from 0), cut to `len`.
 *                  [len=2000] body length
 *                  [type=text/plain] Content-Type, percent-decoded; "none"
 *                                    sets no Content-Type
 *                  [mode]            auto|on|off: httpsrv_response_compression
 *                  [status=200]      status code
 *                  [cl=0]            1: set Content-Length to `len`
 *                  [ce]              a Content-Encoding value to set
 *                  [vary]            a Vary value to set
 *                  [flushes=0]       0: one final flush with the whole body;
 *                                    K: the body in K nearly equal pieces
 *                                    (piece i = [i*len/K, (i+1)*len/K)), each
 *                                    followed by flush(0), then flush(1)
 *                  [empty=0]         1: an extra flush(0) with nothing new
 *                                    after every flush(0)
 *                  [lastdata=0]      1: the last piece goes out with the
 *                                    final flush instead of a flush(0)
 *                  [final=1]         0: return HTTPSRV_DONE without the
 *                                    explicit final flush
 *   /c/pool/lines  pool handler, GET. `n` lines "line %d/%d <pad>\n" where
 *                  <pad> is `pad` letters, letter j of line i being
 *                  'a' + (i + j) % 26. Each line is appended and flushed
 *                  (flush(0)), then the handler sleeps `sleep` ms, then the
 *                  next line; at the end flush(1).
 *                  [n=5] [pad=40] [sleep=150] [type=text/plain] [mode]
 *                  [empty=0]    1: an extra flush(0) with nothing new after
 *                               every line's flush
 *                  [lastdata=0] 1: the last line goes out with flush(1)
 *                  [late=0]     1: after the first flush, call
 *                               httpsrv_response_compression(OFF); unless it
 *                               returns EALREADY the line "late rc=<rc>\n" is
 *                               appended to the next line (the test sees it)
 *   /c/stats       "opened <n>\nclosed <n>\nrss_kb <n>\n": sessions started
 *                  by the two routes above, sessions whose on_close ran, and
 *                  the process's VmRSS. Never compressed.
 *
 * Any API call failing before the head was sent turns the response into a
 * 500 whose body says which call failed.
 */
#include "httpsrv.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

int httpsrv_module_init(httpsrv_server *srv, const char *args);

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long n_opened, n_closed;

static void on_close(httpsrv_session *s, int reason, void *ud)
{
    (void)s;
    (void)reason;
    (void)ud;
    pthread_mutex_lock(&mu);
    n_closed++;
    pthread_mutex_unlock(&mu);
}

static int track(httpsrv_session *s)
{
    int rc = httpsrv_session_on_close(s, on_close, NULL);
    if (rc == 0) {
        pthread_mutex_lock(&mu);
        n_opened++;
        pthread_mutex_unlock(&mu);
    }
    return rc;
}

static void sleep_ms(long ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* value of `key` in the query string, percent-decoded ('+' is a space) into
 * buf; NULL when absent */
static const char *qstr(httpsrv_session *s, const char *key, char *buf, size_t cap)
{
    const char *q = httpsrv_request_query(s);
    if (!q || cap == 0) return NULL;
    size_t kl = strlen(key);
    const char *p = q;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen >= kl && strncmp(p, key, kl) == 0 && (plen == kl || p[kl] == '=')) {
            const char *v = plen == kl ? p + kl : p + kl + 1;
            const char *end = p + plen;
            size_t o = 0;
            while (v < end && o + 1 < cap) {
                if (*v == '%' && end - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    buf[o++] = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                    v += 3;
                } else if (*v == '+') {
                    buf[o++] = ' ';
                    v++;
                } else {
                    buf[o++] = *v++;
                }
            }
            buf[o] = '\0';
            return buf;
        }
        if (!amp) break;
        p = amp + 1;
    }
    return NULL;
}

static long qint(httpsrv_session *s, const char *key, long def, long lo, long hi)
{
    char buf[32];
    if (!qstr(s, key, buf, sizeof buf) || !buf[0]) return def;
    long v = strtol(buf, NULL, 10);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return v;
}

/* A failed call before the head went out: a 500 naming it. */
static int fail500(httpsrv_session *s, const char *what, int rc)
{
    char msg[256];
    int n = snprintf(msg, sizeof msg, "%s failed: %d\n", what, rc);
    httpsrv_response_clear(s);
    httpsrv_response_status_set(s, 500, NULL);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    httpsrv_response_compression(s, HTTPSRV_COMPRESS_OFF);
    httpsrv_response_append(s, msg, (size_t)n);
    httpsrv_response_flush(s, 1);
    return HTTPSRV_DONE;
}

/* Applies type, mode, status and extra fields from the query. 0 or the
 * handler result of a 500. */
static int setup(httpsrv_session *s, int *failed)
{
    char buf[512];
    int rc;
    *failed = 0;
    const char *type = qstr(s, "type", buf, sizeof buf);
    if (!type) type = "text/plain";
    if (strcmp(type, "none") != 0) {
        rc = httpsrv_response_header_set(s, "Content-Type", type);
        if (rc) { *failed = 1; return fail500(s, "header_set Content-Type", rc); }
    }
    const char *mode = qstr(s, "mode", buf, sizeof buf);
    if (mode) {
        int m = strcmp(mode, "on") == 0    ? HTTPSRV_COMPRESS_ON
                : strcmp(mode, "off") == 0 ? HTTPSRV_COMPRESS_OFF
                : strcmp(mode, "auto") == 0 ? HTTPSRV_COMPRESS_AUTO
                                            : 77;
        rc = httpsrv_response_compression(s, m);
        if (rc) { *failed = 1; return fail500(s, "response_compression", rc); }
    }
    long status = qint(s, "status", 200, 200, 999);
    if (status != 200) {
        rc = httpsrv_response_status_set(s, (int)status, NULL);
        if (rc) { *failed = 1; return fail500(s, "status_set", rc); }
    }
    const char *ce = qstr(s, "ce", buf, sizeof buf);
    if (ce) {
        rc = httpsrv_response_header_set(s, "Content-Encoding", ce);
        if (rc) { *failed = 1; return fail500(s, "header_set Content-Encoding", rc); }
    }
    const char *vary = qstr(s, "vary", buf, sizeof buf);
    if (vary) {
        rc = httpsrv_response_header_set(s, "Vary", vary);
        if (rc) { *failed = 1; return fail500(s, "header_set Vary", rc); }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* /c/body                                                             */

static char *make_text(size_t len)
{
    char *t = malloc(len + 64);
    if (!t) return NULL;
    size_t o = 0;
    for (unsigned i = 0; o < len; i++) {
        int n = snprintf(t + o, 64, "%06u the quick brown fox jumps over the lazy dog\n", i);
        o += (size_t)n;
    }
    return t;
}

static int h_body(httpsrv_session *s, void *ud)
{
    (void)ud;
    int failed, rc;
    track(s);
    int r = setup(s, &failed);
    if (failed) return r;
    size_t len = (size_t)qint(s, "len", 2000, 0, 16L << 20);
    long flushes = qint(s, "flushes", 0, 0, 100000);
    int empty = (int)qint(s, "empty", 0, 0, 1);
    int lastdata = (int)qint(s, "lastdata", 0, 0, 1);
    int fin = (int)qint(s, "final", 1, 0, 1);
    char *text = make_text(len);
    if (!text) return fail500(s, "malloc", ENOMEM);
    if (qint(s, "cl", 0, 0, 1)) {
        char v[32];
        snprintf(v, sizeof v, "%zu", len);
        rc = httpsrv_response_header_set(s, "Content-Length", v);
        if (rc) { free(text); return fail500(s, "header_set Content-Length", rc); }
    }
    if (flushes == 0) {
        rc = httpsrv_response_append(s, text, len);
        free(text);
        if (rc) return fail500(s, "append", rc);
        if (fin) httpsrv_response_flush(s, 1);
        return HTTPSRV_DONE;
    }
    for (long i = 0; i < flushes; i++) {
        size_t a = (size_t)((unsigned long long)i * len / (unsigned long long)flushes);
        size_t b = (size_t)((unsigned long long)(i + 1) * len / (unsigned long long)flushes);
        rc = httpsrv_response_append(s, text + a, b - a);
        if (rc) {
            free(text);
            if (!httpsrv_response_headers_sent(s)) return fail500(s, "append", rc);
            return -1;
        }
        if (lastdata && i == flushes - 1) break;
        rc = httpsrv_response_flush(s, 0);
        if (rc != 0 && rc != EAGAIN) { free(text); return -1; }
        if (empty) {
            rc = httpsrv_response_flush(s, 0);
            if (rc != 0 && rc != EAGAIN) { free(text); return -1; }
        }
    }
    free(text);
    if (fin) httpsrv_response_flush(s, 1);
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* /c/pool/lines                                                       */

static int h_lines(httpsrv_session *s, void *ud)
{
    (void)ud;
    int failed, rc;
    track(s);
    int r = setup(s, &failed);
    if (failed) return r;
    long n = qint(s, "n", 5, 0, 100000);
    long pad = qint(s, "pad", 40, 0, 1 << 20);
    long slp = qint(s, "sleep", 150, 0, 10000);
    int empty = (int)qint(s, "empty", 0, 0, 1);
    int lastdata = (int)qint(s, "lastdata", 0, 0, 1);
    int late = (int)qint(s, "late", 0, 0, 1);
    char *line = malloc((size_t)pad + 128);
    if (!line) return fail500(s, "malloc", ENOMEM);
    char extra[64] = "";
    for (long i = 0; i < n; i++) {
        int o = snprintf(line, 64, "%s", extra);
        extra[0] = '\0';
        o += snprintf(line + o, 64, "line %ld/%ld ", i, n);
        for (long j = 0; j < pad; j++) line[o++] = (char)('a' + (i + j) % 26);
        line[o++] = '\n';
        rc = httpsrv_response_append(s, line, (size_t)o);
        if (rc) {
            free(line);
            if (!httpsrv_response_headers_sent(s)) return fail500(s, "append", rc);
            return -1;
        }
        if (lastdata && i == n - 1) break;
        rc = httpsrv_response_flush(s, 0);
        if (rc) { free(line); return -1; } /* client gone: truncated */
        if (empty) {
            rc = httpsrv_response_flush(s, 0);
            if (rc) { free(line); return -1; }
        }
        if (late && i == 0) {
            rc = httpsrv_response_compression(s, HTTPSRV_COMPRESS_OFF);
            if (rc != EALREADY) snprintf(extra, sizeof extra, "late rc=%d\n", rc);
        }
        if (i + 1 < n) sleep_ms(slp);
    }
    free(line);
    httpsrv_response_flush(s, 1);
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* /c/stats                                                            */

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char l[256];
    long v = -1;
    while (fgets(l, sizeof l, f)) {
        if (strncmp(l, "VmRSS:", 6) == 0) {
            v = strtol(l + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static int h_stats(httpsrv_session *s, void *ud)
{
    (void)ud;
    char b[256];
    pthread_mutex_lock(&mu);
    unsigned long long o = n_opened, c = n_closed;
    pthread_mutex_unlock(&mu);
    int n = snprintf(b, sizeof b, "opened %llu\nclosed %llu\nrss_kb %ld\n", o, c, rss_kb());
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    httpsrv_response_compression(s, HTTPSRV_COMPRESS_OFF);
    httpsrv_response_append(s, b, (size_t)n);
    return HTTPSRV_DONE;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    int rc;
    if ((rc = httpsrv_server_route(srv, NULL, "/c/body", 0, h_body, NULL))) return rc;
    if ((rc = httpsrv_server_route(srv, "GET", "/c/pool/lines", HTTPSRV_ROUTE_POOL, h_lines, NULL)))
        return rc;
    if ((rc = httpsrv_server_route(srv, "GET", "/c/stats", 0, h_stats, NULL))) return rc;
    return 0;
}
