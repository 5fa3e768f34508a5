/*
 * test_module.c - an httpsrv module with routes made for the integration
 * tests (tests/core_http.rs, tests/c_api_errors.rs, tests/flush_threads.rs).
 *
 * Build variants (compiled by tests/common/mod.rs):
 *   default                 a normal module
 *   -DTEST_NO_ABI           no httpsrv_module_abi symbol      (load: ENOEXEC)
 *   -DTEST_ABI_VERSION=999  a wrong ABI version               (load: ENOEXEC)
 * Module args: "fail=N" makes httpsrv_module_init return N.
 *
 * Every route (except /t/log) registers an on_close callback that appends
 * "close <tag> <REASON> <bytes_sent>" to a mutex-protected event log; routes
 * also log what they observed (flush results, ...). GET /t/log returns the
 * log, /t/log?clear=1 returns and clears it. Error codes are logged by name
 * (EPIPE, ...), 0 as "0".
 *
 * Check reports have one line per check, "name=got/want", with " FAIL"
 * appended when got != want, and a final "END <checks> <fails>" line.
 */
#include "httpsrv.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef TEST_ABI_VERSION
#define TEST_ABI_VERSION HTTPSRV_ABI_VERSION
#endif

#ifndef TEST_NO_ABI
const unsigned httpsrv_module_abi = TEST_ABI_VERSION;
#endif

int httpsrv_module_init(httpsrv_server *srv, const char *args);
void httpsrv_module_fini(httpsrv_server *srv);

static httpsrv_server *g_srv;

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static const char *ename(int e)
{
    static __thread char other[32];
    switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case ESTALE: return "ESTALE";
    case ECANCELED: return "ECANCELED";
    case EALREADY: return "EALREADY";
    case EAGAIN: return "EAGAIN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ENOBUFS: return "ENOBUFS";
    case EMSGSIZE: return "EMSGSIZE";
    case EBUSY: return "EBUSY";
    case EDEADLK: return "EDEADLK";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case ENOEXEC: return "ENOEXEC";
    case ENOMEM: return "ENOMEM";
    case EIO: return "EIO";
    case -1: return "-1";
    default:
        snprintf(other, sizeof other, "E%d", e);
        return other;
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* value of `key` in the query string, copied into buf; NULL when absent */
static const char *qstr(httpsrv_session *s, const char *key, char *buf, size_t cap)
{
    const char *q = httpsrv_request_query(s);
    if (!q) return NULL;
    size_t kl = strlen(key);
    const char *p = q;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen >= kl && strncmp(p, key, kl) == 0 && (plen == kl || p[kl] == '=')) {
            const char *v = plen == kl ? p + kl : p + kl + 1;
            size_t vl = plen == kl ? 0 : plen - kl - 1;
            if (vl >= cap) vl = cap - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
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

/* ------------------------------------------------------------------ */
/* event log                                                           */

#define LOG_CAP (1u << 20)
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[LOG_CAP];
static size_t log_len;

static void tlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tlog(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    pthread_mutex_lock(&log_mu);
    if (log_len + (size_t)n <= LOG_CAP) {
        memcpy(log_buf + log_len, line, (size_t)n);
        log_len += (size_t)n;
    }
    pthread_mutex_unlock(&log_mu);
}

/* ------------------------------------------------------------------ */
/* check reports                                                       */

struct rep {
    char buf[16384];
    size_t len;
    int n, fails;
};

static void rep_line(struct rep *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rep_line(struct rep *r, const char *fmt, ...)
{
    if (r->len + 2 >= sizeof r->buf) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->buf + r->len, sizeof r->buf - r->len - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    r->len += (size_t)n;
    if (r->len > sizeof r->buf - 2) r->len = sizeof r->buf - 2;
    r->buf[r->len++] = '\n';
    r->buf[r->len] = '\0';
}

static void chk(struct rep *r, const char *name, int got, int want)
{
    char g[32], w[32];
    snprintf(g, sizeof g, "%s", ename(got));
    snprintf(w, sizeof w, "%s", ename(want));
    r->n++;
    if (got != want) r->fails++;
    rep_line(r, "%s=%s/%s%s", name, g, w, got == want ? "" : " FAIL");
}

static void chk_int(struct rep *r, const char *name, long got, long want)
{
    r->n++;
    if (got != want) r->fails++;
    rep_line(r, "%s=%ld/%ld%s", name, got, want, got == want ? "" : " FAIL");
}

static void chk_true(struct rep *r, const char *name, int cond)
{
    r->n++;
    if (!cond) r->fails++;
    rep_line(r, "%s=%s/true%s", name, cond ? "true" : "false", cond ? "" : " FAIL");
}

static void chk_null(struct rep *r, const char *name, const void *p)
{
    r->n++;
    if (p) r->fails++;
    rep_line(r, "%s=%s/NULL%s", name, p ? "non-NULL" : "NULL", p ? " FAIL" : "");
}

static void chk_u64(struct rep *r, const char *name, uint64_t got, uint64_t want)
{
    r->n++;
    if (got != want) r->fails++;
    rep_line(r, "%s=%llu/%llu%s", name, (unsigned long long)got, (unsigned long long)want,
             got == want ? "" : " FAIL");
}

static void rep_end(struct rep *r)
{
    rep_line(r, "END %d %d", r->n, r->fails);
}

/* every line of a report into the event log, prefixed */
static void rep_to_log(struct rep *r, const char *prefix)
{
    char *save = NULL;
    for (char *l = strtok_r(r->buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        tlog("%s %s", prefix, l);
}

/* ------------------------------------------------------------------ */
/* threads started by the module: fini waits for them (bounded)        */

static pthread_mutex_t thr_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t thr_cv = PTHREAD_COND_INITIALIZER;
static int thr_live;

static int spawn(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&thr_mu);
    thr_live++;
    pthread_mutex_unlock(&thr_mu);
    int rc = pthread_create(&t, &at, fn, arg);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        pthread_mutex_lock(&thr_mu);
        thr_live--;
        pthread_mutex_unlock(&thr_mu);
    }
    return rc;
}

static void thread_done(void)
{
    pthread_mutex_lock(&thr_mu);
    thr_live--;
    pthread_cond_broadcast(&thr_cv);
    pthread_mutex_unlock(&thr_mu);
}

/* ------------------------------------------------------------------ */
/* close callbacks                                                     */

static void close_tag(httpsrv_session *s, int reason, void *ud)
{
    uint64_t b = httpsrv_response_bytes_sent(s);
    tlog("close %s %s %lld", (const char *)ud, ename(reason), b == UINT64_MAX ? -1LL : (long long)b);
}

static void watch(httpsrv_session *s, const char *tag)
{
    int rc = httpsrv_session_on_close(s, close_tag, (void *)tag);
    if (rc != 0) tlog("on_close %s %s", tag, ename(rc));
}

/* a close record a thread can wait on */
struct track {
    const char *tag;
    httpsrv_session *sess;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int closed;
    int reason;
    long ms;
    long bytes;
    int use_async;
    pthread_t loop;
    pthread_t handler; /* the thread that ran the handler (a loop thread for inline routes) */
    int refs; /* the close callback holds one, the handler or its thread the other */
};

static void track_put(struct track *t)
{
    pthread_mutex_lock(&t->mu);
    int left = --t->refs;
    pthread_mutex_unlock(&t->mu);
    if (left == 0) {
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
    }
}

static struct track *track_new(httpsrv_session *s, const char *tag)
{
    struct track *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->tag = tag;
    t->sess = s;
    t->refs = 2;
    t->handler = pthread_self();
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    return t;
}

static void close_track(httpsrv_session *s, int reason, void *ud)
{
    struct track *t = ud;
    uint64_t b = httpsrv_response_bytes_sent(s);
    tlog("close %s %s %lld", t->tag, ename(reason), b == UINT64_MAX ? -1LL : (long long)b);
    tlog("closethread %s same_as_handler=%d", t->tag, pthread_equal(pthread_self(), t->handler) != 0);
    pthread_mutex_lock(&t->mu);
    t->closed = 1;
    t->reason = reason;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    track_put(t);
}

/* wait up to ms for the close callback; 1 when it ran */
static int track_wait(struct track *t, long ms)
{
    long long end = now_ms() + ms;
    pthread_mutex_lock(&t->mu);
    while (!t->closed && now_ms() < end) {
        pthread_mutex_unlock(&t->mu);
        sleep_ms(5);
        pthread_mutex_lock(&t->mu);
    }
    int c = t->closed;
    pthread_mutex_unlock(&t->mu);
    return c;
}

static void fill_pattern(unsigned char *p, size_t n, size_t start)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((start + i) % 251);
}

static int append_str(httpsrv_session *s, const char *str)
{
    return httpsrv_response_append(s, str, strlen(str));
}

/* ------------------------------------------------------------------ */
/* simple routes                                                       */

static int h_hello(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "hello");
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    if (qint(s, "close", 0, 0, 1)) httpsrv_response_header_set(s, "Connection", "close");
    append_str(s, "Hello, world\n"); /* 13 bytes */
    return HTTPSRV_DONE;
}

/* /t/tls: the scheme and every httpsrv_request_tls value, one "key=value"
 * line each ("(null)" for NULL) */
static int h_tls(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "tls");
    static const char *const whats[] = {"version", "cipher", "sni", "alpn", "bogus", ""};
    char buf[1024];
    const char *scheme = httpsrv_request_scheme(s);
    int n = snprintf(buf, sizeof buf, "scheme=%s\n", scheme ? scheme : "(null)");
    for (size_t i = 0; i < sizeof whats / sizeof whats[0] && n > 0 && (size_t)n < sizeof buf; i++) {
        const char *v = httpsrv_request_tls(s, whats[i]);
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%s=%s\n", whats[i], v ? v : "(null)");
    }
    const char *vnull = httpsrv_request_tls(s, NULL);
    const char *snull = httpsrv_request_tls(NULL, "version");
    if (n > 0 && (size_t)n < sizeof buf)
        snprintf(buf + n, sizeof buf - (size_t)n, "null-what=%s\nnull-session=%s\n",
                 vnull ? vnull : "(null)", snull ? snull : "(null)");
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    append_str(s, buf);
    return HTTPSRV_DONE;
}

/* /t/thread: which thread runs the handler (a loop thread for inline routes) */
static int h_thread(httpsrv_session *s, void *ud)
{
    (void)ud;
    char buf[32];
    snprintf(buf, sizeof buf, "%lu\n", (unsigned long)pthread_self());
    append_str(s, buf);
    return HTTPSRV_DONE;
}

/* /t/stream?n=N&size=S[&empty=1][&done=1][&log=1] */
static int h_stream(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "stream");
    long n = qint(s, "n", 3, 0, 100000);
    long size = qint(s, "size", 5, 1, 1 << 20);
    int empty = (int)qint(s, "empty", 0, 0, 1);
    int done = (int)qint(s, "done", 0, 0, 1);
    int lg = (int)qint(s, "log", 0, 0, 1);
    char *buf = malloc((size_t)size);
    if (!buf) return 7;
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    for (long i = 0; i < n; i++) {
        memset(buf, 'a' + (int)(i % 26), (size_t)size);
        int ra = httpsrv_response_append(s, buf, (size_t)size);
        int rf = httpsrv_response_flush(s, 0);
        if (lg || ra) tlog("stream %ld append=%s flush=%s", i, ename(ra), ename(rf));
        if (empty) {
            int re = httpsrv_response_flush(s, 0);
            if (lg) tlog("stream %ld empty-flush=%s", i, ename(re));
        }
    }
    free(buf);
    if (!done) {
        int rf = httpsrv_response_flush(s, 1);
        if (lg) tlog("stream final=%s", ename(rf));
    }
    return HTTPSRV_DONE;
}

/* /t/length?n=N[&short=1][&flush=1] */
static int h_length(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "length");
    long n = qint(s, "n", 10, 0, 1 << 20);
    int shrt = (int)qint(s, "short", 0, 0, 1);
    int fl = (int)qint(s, "flush", 0, 0, 1);
    char cl[32];
    snprintf(cl, sizeof cl, "%ld", n);
    int rh = httpsrv_response_header_set(s, "Content-Length", cl);
    if (rh) tlog("length header_set=%s", ename(rh));
    long body = shrt ? n / 2 : n;
    char *buf = malloc((size_t)body + 1);
    if (!buf) return 7;
    memset(buf, 'L', (size_t)body);
    long half = body / 2;
    int ra = httpsrv_response_append(s, buf, (size_t)half);
    if (fl) {
        int rf = httpsrv_response_flush(s, 0);
        if (rf) tlog("length flush0=%s", ename(rf));
    }
    int rb = httpsrv_response_append(s, buf + half, (size_t)(body - half));
    if (ra || rb) tlog("length append=%s,%s", ename(ra), ename(rb));
    free(buf);
    return HTTPSRV_DONE;
}

/* /t/status?code=C[&reason=R] (R empty: an empty reason) */
static int h_status(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "status");
    char rbuf[128];
    long code = qint(s, "code", 200, -100000, 100000);
    const char *reason = qstr(s, "reason", rbuf, sizeof rbuf);
    int rc = httpsrv_response_status_set(s, (int)code, reason);
    if (rc) tlog("status set=%s", ename(rc));
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    append_str(s, "status body\n");
    return HTTPSRV_DONE;
}

static int h_echo(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "echo");
    size_t len = 12345;
    const void *b = httpsrv_request_body(s, &len);
    char n[32];
    snprintf(n, sizeof n, "%zu", b ? len : 0);
    httpsrv_response_header_set(s, "Content-Type", "application/octet-stream");
    httpsrv_response_header_set(s, "X-Body-Len", n);
    if (b && len) httpsrv_response_append(s, b, len);
    return HTTPSRV_DONE;
}

static int h_headers(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "headers");
    char line[8192];
    const char *m = httpsrv_request_method(s), *t = httpsrv_request_target(s);
    const char *p = httpsrv_request_path(s), *q = httpsrv_request_query(s);
    snprintf(line, sizeof line, "method %s\ntarget %s\npath %s\nquery %s\nversion %d\ncount %zu\n",
             m ? m : "(null)", t ? t : "(null)", p ? p : "(null)", q ? q : "(null)",
             httpsrv_request_version(s), httpsrv_request_header_count(s));
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    append_str(s, line);
    size_t cnt = httpsrv_request_header_count(s);
    for (size_t i = 0; i < cnt && i < 1000; i++) {
        const char *hn = NULL, *hv = NULL;
        int rc = httpsrv_request_header_at(s, i, &hn, &hv);
        snprintf(line, sizeof line, "h %s: %s (%s)\n", hn ? hn : "(null)", hv ? hv : "(null)", ename(rc));
        append_str(s, line);
    }
    const char *first = httpsrv_request_header(s, "x-multi");
    snprintf(line, sizeof line, "first-x-multi %s\n", first ? first : "(null)");
    append_str(s, line);
    const char *host = httpsrv_request_host(s), *host_field = httpsrv_request_header(s, "host");
    snprintf(line, sizeof line, "host %s\nhost-field %s\n", host ? host : "(null)",
             host_field ? host_field : "(null)");
    append_str(s, line);
    char peer[128];
    int rp = httpsrv_request_peer(s, peer, sizeof peer);
    snprintf(line, sizeof line, "peer %s %s\n", rp == 0 ? peer : "-", ename(rp));
    append_str(s, line);
    return HTTPSRV_DONE;
}

static int h_cookies(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "cookies");
    int r[8];
    r[0] = httpsrv_response_header_add(s, "Set-Cookie", "a=1");
    r[1] = httpsrv_response_header_add(s, "Set-Cookie", "b=2");
    r[2] = httpsrv_response_header_set(s, "X-Rep", "one");
    r[3] = httpsrv_response_header_set(s, "X-Rep", "two");
    r[4] = httpsrv_response_header_add(s, "X-Multi", "1");
    r[5] = httpsrv_response_header_add(s, "X-Multi", "2");
    r[6] = httpsrv_response_header_set(s, "x-multi", "3");
    httpsrv_response_header_set(s, "X-Gone", "x");
    r[7] = httpsrv_response_header_remove(s, "x-gone");
    char b[128];
    snprintf(b, sizeof b, "rc %d %d %d %d %d %d %d %d\n", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    append_str(s, b);
    return HTTPSRV_DONE;
}

static int h_bad_return(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "bad-return");
    httpsrv_response_header_set(s, "X-Should-Not-Appear", "1");
    append_str(s, "should not appear");
    return 7;
}

static int h_bad_return_late(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "bad-return-late");
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    append_str(s, "partial-data");
    int rc = httpsrv_response_flush(s, 0);
    tlog("bad-return-late flush=%s", ename(rc));
    return 7;
}

static int h_method(httpsrv_session *s, void *ud)
{
    watch(s, "method");
    char b[64];
    snprintf(b, sizeof b, "method %s via %s\n", httpsrv_request_method(s), (const char *)ud);
    append_str(s, b);
    return HTTPSRV_DONE;
}

static int h_text(httpsrv_session *s, void *ud)
{
    watch(s, "text");
    append_str(s, (const char *)ud);
    return HTTPSRV_DONE;
}

static int h_log(httpsrv_session *s, void *ud)
{
    (void)ud;
    int clear = (int)qint(s, "clear", 0, 0, 1);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    /* copy under the lock, call the library without it */
    pthread_mutex_lock(&log_mu);
    size_t n = log_len;
    char *copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, log_buf, n);
        if (clear) log_len = 0;
    }
    pthread_mutex_unlock(&log_mu);
    if (!copy) return 7;
    int rc = httpsrv_response_append(s, copy, n);
    free(copy);
    if (rc) {
        char b[64];
        snprintf(b, sizeof b, "LOG APPEND FAILED %s\n", ename(rc));
        httpsrv_response_clear(s);
        append_str(s, b);
    }
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* /t/errors: bad arguments on a live session                          */

static int init_route_dup, init_route_nullfn, init_route_nullpath, init_route_badpath;
static int init_set_unknown, init_set_badval, init_set_nullkey, init_set_nullval;
static int init_port_bad, init_listen_bad, init_listen_null;

static void done_never(httpsrv_session *s, int err, uint64_t bytes, void *ud)
{
    (void)s;
    (void)bytes;
    tlog("FAIL done called for %s err=%s", (const char *)ud, ename(err));
}

static void task_never(httpsrv_session *s, void *ud)
{
    (void)s;
    tlog("FAIL task ran for %s", (const char *)ud);
}

static void close_never(httpsrv_session *s, int reason, void *ud)
{
    (void)s;
    tlog("FAIL close_never ran for %s reason=%s", (const char *)ud, ename(reason));
}

static const int all_codes[] = {EINVAL, ESTALE, ECANCELED, EALREADY, EAGAIN, ETIMEDOUT, EPIPE,
                                ECONNRESET, ENOBUFS, EMSGSIZE, EBUSY, EDEADLK, EEXIST, ENOENT,
                                ENOEXEC, ENOMEM, EIO};

static int h_errors(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "errors");
    struct rep *r = calloc(1, sizeof *r);
    if (!r) return 7;

    /* library */
    const char *ver = httpsrv_version();
    chk_true(r, "version_nonempty", ver && ver[0]);
    for (size_t i = 0; i < sizeof all_codes / sizeof all_codes[0]; i++) {
        char name[48];
        const char *t = httpsrv_strerror(all_codes[i]);
        snprintf(name, sizeof name, "strerror_%s", ename(all_codes[i]));
        chk_true(r, name, t != NULL && t[0] != '\0');
    }

    /* server level, recorded during init (before start) */
    chk(r, "init_route_dup", init_route_dup, EEXIST);
    chk(r, "init_route_null_fn", init_route_nullfn, EINVAL);
    chk(r, "init_route_null_path", init_route_nullpath, EINVAL);
    chk(r, "init_route_path_without_slash", init_route_badpath, EINVAL);
    chk(r, "init_set_unknown_key", init_set_unknown, EINVAL);
    chk(r, "init_set_bad_value", init_set_badval, EINVAL);
    chk(r, "init_set_null_key", init_set_nullkey, EINVAL);
    chk(r, "init_set_null_value", init_set_nullval, EINVAL);
    chk_int(r, "init_port_bad_index", init_port_bad, -1);
    chk(r, "init_listen_bad_addr", init_listen_bad, EINVAL);
    chk(r, "init_listen_null", init_listen_null, EINVAL);

    /* server level, NULL server */
    chk(r, "server_set_null", httpsrv_server_set(NULL, "threads", "1"), EINVAL);
    chk(r, "server_listen_null", httpsrv_server_listen(NULL, "127.0.0.1:0"), EINVAL);
    chk_int(r, "server_port_null", httpsrv_server_port(NULL, 0), -1);
    chk(r, "server_route_null", httpsrv_server_route(NULL, NULL, "/x", 0, h_hello, NULL), EINVAL);
    chk(r, "server_load_module_null", httpsrv_server_load_module(NULL, "/x.so", NULL), EINVAL);
    chk(r, "server_set_logger_null", httpsrv_server_set_logger(NULL, NULL, NULL), EINVAL);
    chk(r, "server_start_null", httpsrv_server_start(NULL), EINVAL);
    chk(r, "server_stop_null", httpsrv_server_stop(NULL, 0), EINVAL);
    chk(r, "server_reopen_logs_null", httpsrv_server_reopen_logs(NULL), EINVAL);
    httpsrv_server_free(NULL); /* no-op */
    chk_true(r, "server_free_null_survived", 1);

    /* server level, after start, from a loop thread */
    chk(r, "route_after_start", httpsrv_server_route(g_srv, NULL, "/t/late", 0, h_hello, NULL), EBUSY);
    chk(r, "set_after_start", httpsrv_server_set(g_srv, "threads", "2"), EBUSY);
    chk(r, "start_after_start", httpsrv_server_start(g_srv), EBUSY);
    chk(r, "stop_from_loop_thread", httpsrv_server_stop(g_srv, 0), EDEADLK);
    /* no access log: nothing to reopen, from a loop thread too */
    chk(r, "reopen_logs_without_access_log", httpsrv_server_reopen_logs(g_srv), 0);
    chk_true(r, "port_0_valid", httpsrv_server_port(g_srv, 0) > 0);
    chk_int(r, "port_bad_index", httpsrv_server_port(g_srv, 999), -1);

    /* request getters */
    const char *m = httpsrv_request_method(s);
    chk_true(r, "method_GET", m && strcmp(m, "GET") == 0);
    chk_int(r, "version_11", httpsrv_request_version(s), 11);
    const char *q = httpsrv_request_query(s);
    chk_true(r, "query_empty_string", q && q[0] == '\0');
    chk_null(r, "request_header_absent", httpsrv_request_header(s, "X-Not-There"));
    chk_null(r, "request_header_null_name", httpsrv_request_header(s, NULL));
    chk_null(r, "request_method_null_sess", httpsrv_request_method(NULL));
    chk_null(r, "request_host_null_sess", httpsrv_request_host(NULL));
    const char *host = httpsrv_request_host(s), *host_field = httpsrv_request_header(s, "Host");
    chk_true(r, "request_host_is_host_field", host && host_field && strcmp(host, host_field) == 0);
    chk_int(r, "request_version_null_sess", httpsrv_request_version(NULL), -1);
    size_t cnt = httpsrv_request_header_count(s);
    chk_true(r, "header_count_positive", cnt > 0 && cnt != (size_t)-1);
    const char *hn = "untouched", *hv = "untouched";
    chk(r, "header_at_past_end", httpsrv_request_header_at(s, cnt, &hn, &hv), ENOENT);
    chk_true(r, "header_at_past_end_outputs_untouched", strcmp(hn, "untouched") == 0 && strcmp(hv, "untouched") == 0);
    chk(r, "header_at_huge_index", httpsrv_request_header_at(s, (size_t)-1, &hn, &hv), ENOENT);
    chk(r, "header_at_0", httpsrv_request_header_at(s, 0, &hn, &hv), 0);
    chk_true(r, "header_at_0_outputs", hn && hv && strcmp(hn, "untouched") != 0);
    chk(r, "header_at_null_out", httpsrv_request_header_at(s, 0, NULL, NULL), EINVAL);
    size_t blen = 777;
    const void *body = httpsrv_request_body(s, &blen);
    chk_true(r, "body_none_is_null_0", body == NULL && blen == 0);
    char peer[64];
    memset(peer, 'Z', sizeof peer);
    chk(r, "peer_cap_1", httpsrv_request_peer(s, peer, 1), ENOBUFS);
    chk_true(r, "peer_cap_1_untouched", peer[0] == 'Z');
    chk(r, "peer_cap_0", httpsrv_request_peer(s, peer, 0), ENOBUFS);
    chk(r, "peer_null_buf", httpsrv_request_peer(s, NULL, 64), EINVAL);
    chk(r, "peer_ok", httpsrv_request_peer(s, peer, sizeof peer), 0);
    chk_true(r, "peer_is_loopback", strncmp(peer, "127.0.0.1:", 10) == 0 || strncmp(peer, "[::1]:", 6) == 0);

    /* header_set / header_add argument checks */
    chk(r, "header_set_cr_in_value", httpsrv_response_header_set(s, "X-A", "a\rb"), EINVAL);
    chk(r, "header_set_lf_in_value", httpsrv_response_header_set(s, "X-A", "a\nb"), EINVAL);
    chk(r, "header_set_crlf_in_value", httpsrv_response_header_set(s, "X-A", "a\r\nX-Injected: 1"), EINVAL);
    chk(r, "header_set_space_in_name", httpsrv_response_header_set(s, "Bad Name", "v"), EINVAL);
    chk(r, "header_set_colon_in_name", httpsrv_response_header_set(s, "a:b", "v"), EINVAL);
    chk(r, "header_set_paren_in_name", httpsrv_response_header_set(s, "X(y)", "v"), EINVAL);
    chk(r, "header_set_empty_name", httpsrv_response_header_set(s, "", "v"), EINVAL);
    chk(r, "header_set_crlf_in_name", httpsrv_response_header_set(s, "X-A\r\nX-B", "v"), EINVAL);
    chk(r, "header_set_transfer_encoding", httpsrv_response_header_set(s, "Transfer-Encoding", "chunked"), EINVAL);
    chk(r, "header_set_transfer_encoding_lower", httpsrv_response_header_set(s, "transfer-encoding", "chunked"), EINVAL);
    chk(r, "header_add_transfer_encoding", httpsrv_response_header_add(s, "Transfer-Encoding", "chunked"), EINVAL);
    chk(r, "header_add_lf_in_value", httpsrv_response_header_add(s, "X-A", "a\nb"), EINVAL);
    chk(r, "header_add_bad_name", httpsrv_response_header_add(s, "Bad Name", "v"), EINVAL);
    /* every control byte but HTAB is refused (RFC 9110 section 5.5), wherever it is in short
     * and long values; HTAB and obs-text (0x80 and above) are taken as they are */
    {
        static const unsigned char ctl[] = {0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f};
        for (size_t i = 0; i < sizeof ctl; i++) {
            for (size_t at = 0; at < 3; at++) {
                char shortv[4] = "abc", longv[24] = "0123456789abcdefghijklm", name[64];
                shortv[at] = (char)ctl[i];
                longv[at * 11] = (char)ctl[i];
                snprintf(name, sizeof name, "header_set_ctl_%02x_at_%zu", ctl[i], at);
                chk(r, name, httpsrv_response_header_set(s, "X-A", shortv), EINVAL);
                snprintf(name, sizeof name, "header_add_ctl_%02x_at_%zu_long", ctl[i], at * 11);
                chk(r, name, httpsrv_response_header_add(s, "X-A", longv), EINVAL);
                snprintf(name, sizeof name, "status_reason_ctl_%02x_at_%zu", ctl[i], at);
                chk(r, name, httpsrv_response_status_set(s, 200, shortv), EINVAL);
            }
        }
    }
    chk(r, "header_set_esc_sequence", httpsrv_response_header_set(s, "X-A", "\x1b[31mred\x1b[0m"), EINVAL);
    chk(r, "status_reason_htab_obs_text_ok", httpsrv_response_status_set(s, 200, "O\tK \xc3\xa9"), 0);
    chk(r, "header_set_null_sess", httpsrv_response_header_set(NULL, "X-A", "v"), EINVAL);
    chk(r, "header_set_null_name", httpsrv_response_header_set(s, NULL, "v"), EINVAL);
    chk(r, "header_set_null_value", httpsrv_response_header_set(s, "X-A", NULL), EINVAL);
    chk(r, "header_add_null_sess", httpsrv_response_header_add(NULL, "X-A", "v"), EINVAL);
    chk(r, "header_remove_null_sess", httpsrv_response_header_remove(NULL, "X-A"), EINVAL);
    chk(r, "header_remove_null_name", httpsrv_response_header_remove(s, NULL), EINVAL);
    chk(r, "header_remove_absent", httpsrv_response_header_remove(s, "X-Absent"), ENOENT);
    chk(r, "header_set_ok", httpsrv_response_header_set(s, "X-Tmp", "1"), 0);
    chk(r, "header_remove_present", httpsrv_response_header_remove(s, "x-tmp"), 0);
    chk(r, "header_remove_again", httpsrv_response_header_remove(s, "X-Tmp"), ENOENT);

    /* status */
    chk(r, "status_99", httpsrv_response_status_set(s, 99, NULL), EINVAL);
    chk(r, "status_199", httpsrv_response_status_set(s, 199, NULL), EINVAL);
    chk(r, "status_1000", httpsrv_response_status_set(s, 1000, NULL), EINVAL);
    chk(r, "status_negative", httpsrv_response_status_set(s, -200, NULL), EINVAL);
    chk(r, "status_reason_crlf", httpsrv_response_status_set(s, 200, "OK\r\nX-Injected: 1"), EINVAL);
    chk(r, "status_reason_lf", httpsrv_response_status_set(s, 200, "O\nK"), EINVAL);
    chk(r, "status_null_sess", httpsrv_response_status_set(NULL, 200, NULL), EINVAL);
    chk(r, "status_999", httpsrv_response_status_set(s, 999, "Custom"), 0);
    chk(r, "status_200", httpsrv_response_status_set(s, 200, NULL), 0);

    /* body: append / clear / pending */
    chk(r, "append_null_sess", httpsrv_response_append(NULL, "x", 1), EINVAL);
    chk(r, "append_null_data", httpsrv_response_append(s, NULL, 5), EINVAL);
    chk(r, "append_junk", httpsrv_response_append(s, "junk", 4), 0);
    chk_u64(r, "pending_after_append", httpsrv_response_pending(s), 4);
    chk_int(r, "headers_sent_before", httpsrv_response_headers_sent(s), 0);
    chk(r, "clear", httpsrv_response_clear(s), 0);
    chk_u64(r, "pending_after_clear", httpsrv_response_pending(s), 0);
    chk(r, "clear_null_sess", httpsrv_response_clear(NULL), EINVAL);
    chk(r, "compression_bad_mode", httpsrv_response_compression(s, 7), EINVAL);
    chk(r, "compression_off", httpsrv_response_compression(s, HTTPSRV_COMPRESS_OFF), 0);
    chk(r, "flush_null_sess", httpsrv_response_flush(NULL, 0), EINVAL);
    chk(r, "flush_async_null_sess", httpsrv_response_flush_async(NULL, 0, done_never, "null"), EINVAL);
    chk_int(r, "headers_sent_null_sess", httpsrv_response_headers_sent(NULL), -1);
    chk_u64(r, "pending_null_sess", httpsrv_response_pending(NULL), (uint64_t)(size_t)-1);
    chk_u64(r, "bytes_sent_null_sess", httpsrv_response_bytes_sent(NULL), UINT64_MAX);

    /* session functions with NULL */
    chk(r, "on_close_null_sess", httpsrv_session_on_close(NULL, close_never, "null"), EINVAL);
    chk(r, "set_data_null_sess", httpsrv_session_set_data(NULL, r), EINVAL);
    chk_null(r, "session_data_null_sess", httpsrv_session_data(NULL));
    chk(r, "post_null_sess", httpsrv_session_post(NULL, task_never, "null"), EINVAL);
    chk(r, "post_null_fn", httpsrv_session_post(s, NULL, NULL), EINVAL);
    chk(r, "abort_null_sess", httpsrv_session_abort(NULL), EINVAL);

    /* now send the headers and the first part of the report */
    /* sent as they are (checked by tests/c_api_errors.rs) */
    chk(r, "header_set_htab_ok", httpsrv_response_header_set(s, "X-Tab", "a\tb\tc"), 0);
    chk(r, "header_add_obs_text_ok", httpsrv_response_header_add(s, "X-Obs", "caf\xc3\xa9 \xe2\x82\xac"), 0);
    chk(r, "header_set_content_type", httpsrv_response_header_set(s, "Content-Type", "text/plain"), 0);
    chk(r, "header_set_x_errors", httpsrv_response_header_set(s, "X-Errors", "phase1"), 0);
    chk(r, "append_report", httpsrv_response_append(s, r->buf, r->len), 0);
    r->len = 0;
    r->buf[0] = '\0';
    chk(r, "flush0_on_loop", httpsrv_response_flush(s, 0), 0);
    chk_int(r, "headers_sent_after", httpsrv_response_headers_sent(s), 1);
    chk(r, "status_after_headers", httpsrv_response_status_set(s, 500, NULL), EALREADY);
    chk(r, "header_set_after_headers", httpsrv_response_header_set(s, "X-Late", "1"), EALREADY);
    chk(r, "header_add_after_headers", httpsrv_response_header_add(s, "X-Late", "1"), EALREADY);
    chk(r, "header_remove_after_headers", httpsrv_response_header_remove(s, "X-Errors"), EALREADY);
    chk(r, "clear_after_headers", httpsrv_response_clear(s), EALREADY);
    chk(r, "compression_after_headers", httpsrv_response_compression(s, HTTPSRV_COMPRESS_ON), EALREADY);
    chk_true(r, "bytes_sent_positive", httpsrv_response_bytes_sent(s) > 0 &&
                                           httpsrv_response_bytes_sent(s) != UINT64_MAX);
    chk(r, "empty_flush", httpsrv_response_flush(s, 0), 0);
    rep_end(r);
    httpsrv_response_append(s, r->buf, r->len);
    int rf = httpsrv_response_flush(s, 1);

    /* after the final flush: into the log */
    struct rep *f = calloc(1, sizeof *f);
    if (f) {
        chk(f, "final_flush", rf, 0);
        chk(f, "append_after_final", httpsrv_response_append(s, "x", 1), EALREADY);
        chk(f, "flush0_after_final", httpsrv_response_flush(s, 0), EALREADY);
        chk(f, "flush1_after_final", httpsrv_response_flush(s, 1), EALREADY);
        chk(f, "flush_async_after_final", httpsrv_response_flush_async(s, 1, done_never, "after-final"), EALREADY);
        chk(f, "status_after_final", httpsrv_response_status_set(s, 200, NULL), EALREADY);
        chk(f, "header_set_after_final", httpsrv_response_header_set(s, "X-A", "1"), EALREADY);
        chk(f, "clear_after_final", httpsrv_response_clear(s), EALREADY);
        chk_int(f, "headers_sent_after_final", httpsrv_response_headers_sent(s), 1);
        const char *m2 = httpsrv_request_method(s);
        chk_true(f, "request_readable_after_final", m2 && strcmp(m2, "GET") == 0);
        rep_end(f);
        rep_to_log(f, "errors-final");
        free(f);
    }
    free(r);
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* stale handles                                                       */

static pthread_mutex_t stale_mu = PTHREAD_MUTEX_INITIALIZER;
static httpsrv_session *stale_sess;

static int h_stale_keep(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "stale-keep");
    pthread_mutex_lock(&stale_mu);
    stale_sess = s;
    pthread_mutex_unlock(&stale_mu);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    append_str(s, "kept\n");
    return HTTPSRV_DONE;
}

static void stale_checks(struct rep *r, httpsrv_session *h)
{
    const char *n = "untouched", *v = "untouched";
    size_t len = 99;
    char buf[64];
    chk_null(r, "method", httpsrv_request_method(h));
    chk_null(r, "target", httpsrv_request_target(h));
    chk_null(r, "path", httpsrv_request_path(h));
    chk_null(r, "query", httpsrv_request_query(h));
    chk_int(r, "version", httpsrv_request_version(h), -1);
    chk_null(r, "header", httpsrv_request_header(h, "Host"));
    chk_null(r, "host", httpsrv_request_host(h));
    chk_u64(r, "header_count", httpsrv_request_header_count(h), (uint64_t)(size_t)-1);
    chk(r, "header_at", httpsrv_request_header_at(h, 0, &n, &v), ESTALE);
    chk_true(r, "header_at_untouched", strcmp(n, "untouched") == 0);
    chk_null(r, "body", httpsrv_request_body(h, &len));
    chk(r, "peer", httpsrv_request_peer(h, buf, sizeof buf), ESTALE);
    chk(r, "status_set", httpsrv_response_status_set(h, 200, NULL), ESTALE);
    chk(r, "header_set", httpsrv_response_header_set(h, "X-A", "1"), ESTALE);
    chk(r, "header_add", httpsrv_response_header_add(h, "X-A", "1"), ESTALE);
    chk(r, "header_remove", httpsrv_response_header_remove(h, "X-A"), ESTALE);
    chk(r, "append", httpsrv_response_append(h, "x", 1), ESTALE);
    chk(r, "flush0", httpsrv_response_flush(h, 0), ESTALE);
    chk(r, "flush1", httpsrv_response_flush(h, 1), ESTALE);
    chk(r, "flush_async", httpsrv_response_flush_async(h, 1, done_never, "stale"), ESTALE);
    chk(r, "clear", httpsrv_response_clear(h), ESTALE);
    chk_int(r, "headers_sent", httpsrv_response_headers_sent(h), -1);
    chk(r, "compression", httpsrv_response_compression(h, HTTPSRV_COMPRESS_OFF), ESTALE);
    chk_u64(r, "bytes_sent", httpsrv_response_bytes_sent(h), UINT64_MAX);
    chk_u64(r, "pending", httpsrv_response_pending(h), (uint64_t)(size_t)-1);
    chk(r, "on_close", httpsrv_session_on_close(h, close_never, "stale"), ESTALE);
    chk(r, "set_data", httpsrv_session_set_data(h, buf), ESTALE);
    chk_null(r, "session_data", httpsrv_session_data(h));
    chk(r, "post", httpsrv_session_post(h, task_never, "stale"), ESTALE);
    chk(r, "abort", httpsrv_session_abort(h), ESTALE);
    /* again, after all of the above: still stale, still no effect */
    chk(r, "append_again", httpsrv_response_append(h, "x", 1), ESTALE);
}

static void *stale_thread(void *arg)
{
    struct rep *r = arg;
    pthread_mutex_lock(&stale_mu);
    httpsrv_session *h = stale_sess;
    pthread_mutex_unlock(&stale_mu);
    if (h) stale_checks(r, h);
    thread_done();
    return NULL;
}

/* /t/stale/check[?thread=1] */
static int h_stale_check(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "stale-check");
    struct rep *r = calloc(1, sizeof *r);
    if (!r) return 7;
    pthread_mutex_lock(&stale_mu);
    httpsrv_session *h = stale_sess;
    pthread_mutex_unlock(&stale_mu);
    if (!h) {
        chk_true(r, "have_stored_handle", 0);
    } else if (h == s) {
        /* a handle equal to a live one would be a token reused without a
         * generation; report it (the checks below would hit the live one) */
        chk_true(r, "stored_handle_differs_from_live_one", 0);
    } else {
        chk_true(r, "stored_handle_differs_from_live_one", 1);
        stale_checks(r, h);
        if (qint(s, "thread", 0, 0, 1)) {
            /* the same from a thread of the module (joined here: bounded) */
            struct rep *r2 = calloc(1, sizeof *r2);
            if (r2) {
                pthread_t t;
                pthread_mutex_lock(&thr_mu);
                thr_live++;
                pthread_mutex_unlock(&thr_mu);
                if (pthread_create(&t, NULL, stale_thread, r2) == 0) {
                    pthread_join(t, NULL);
                    rep_line(r, "-- from a module thread");
                    char *save = NULL;
                    for (char *l = strtok_r(r2->buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                        rep_line(r, "thread_%s", l);
                    r->n += r2->n;
                    r->fails += r2->fails;
                } else {
                    thread_done();
                }
                free(r2);
            }
        }
    }
    rep_end(r);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    httpsrv_response_append(s, r->buf, r->len);
    free(r);
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* EMSGSIZE, ENOBUFS                                                   */

static int h_emsgsize(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "emsgsize");
    struct rep r;
    memset(&r, 0, sizeof r);
    chk(&r, "header_set_content_length", httpsrv_response_header_set(s, "Content-Length", "5"), 0);
    chk(&r, "append_6_of_5", httpsrv_response_append(s, "123456", 6), EMSGSIZE);
    chk_u64(&r, "pending_after_emsgsize", httpsrv_response_pending(s), 0);
    chk(&r, "append_3", httpsrv_response_append(s, "123", 3), 0);
    chk(&r, "append_3_more", httpsrv_response_append(s, "456", 3), EMSGSIZE);
    chk(&r, "append_2", httpsrv_response_append(s, "45", 2), 0);
    chk(&r, "append_1_past", httpsrv_response_append(s, "6", 1), EMSGSIZE);
    chk_u64(&r, "pending_5", httpsrv_response_pending(s), 5);
    chk(&r, "final", httpsrv_response_flush(s, 1), 0);
    rep_end(&r);
    rep_to_log(&r, "emsgsize");
    return HTTPSRV_DONE;
}

/* /t/enobufs?max=M (the host runs with --set max_pending_bytes=M) */
static int h_enobufs(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "enobufs");
    long max = qint(s, "max", 65536, 4096, 1 << 22);
    struct rep r;
    memset(&r, 0, sizeof r);
    char *big = malloc((size_t)max * 2);
    if (!big) return 7;
    memset(big, 'B', (size_t)max * 2);
    chk(&r, "append_max_minus_1000", httpsrv_response_append(s, big, (size_t)max - 1000), 0);
    chk(&r, "append_999", httpsrv_response_append(s, big, 999), 0);
    size_t p1 = httpsrv_response_pending(s);
    chk_u64(&r, "pending_max_minus_1", p1, (uint64_t)max - 1);
    chk(&r, "append_2000_past_max", httpsrv_response_append(s, big, 2000), ENOBUFS);
    chk_u64(&r, "pending_unchanged", httpsrv_response_pending(s), p1);
    chk(&r, "append_2max_past_max", httpsrv_response_append(s, big, (size_t)max * 2), ENOBUFS);
    chk_u64(&r, "pending_unchanged_2", httpsrv_response_pending(s), p1);
    free(big);
    chk(&r, "clear", httpsrv_response_clear(s), 0);
    chk_u64(&r, "pending_after_clear", httpsrv_response_pending(s), 0);
    rep_end(&r);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    httpsrv_response_append(s, r.buf, r.len);
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* httpsrv_response_append_ref: lent memory, released exactly once     */

struct lent_buf {
    char tag[24];
    size_t len;
    unsigned char data[];
};

static void lent_release(void *ud)
{
    struct lent_buf *b = ud;
    tlog("ref-release %s %zu", b->tag, b->len);
    /* a read after the release would send these bytes instead of the pattern */
    memset(b->data, 0xEE, b->len);
    free(b);
}

/* never called: the appends that use it fail */
static void lent_release_wrong(void *ud)
{
    tlog("ref-release WRONG %s", (const char *)ud);
}

/* len bytes of the i % 251 pattern, lent under tag */
static int append_lent(httpsrv_session *s, const char *tag, size_t len)
{
    struct lent_buf *b = malloc(sizeof *b + len);
    if (!b) return ENOMEM;
    snprintf(b->tag, sizeof b->tag, "%s", tag);
    b->len = len;
    fill_pattern(b->data, len, 0);
    int rc = httpsrv_response_append_ref(s, b->data, len, lent_release, b);
    if (rc != 0) free(b); /* refused: the memory is still ours */
    return rc;
}

/* /t/ref?len=N[&chunk=1][&type=T][&tag=X]: body "copy1" + N pattern bytes (lent) + "copy2" +
 * 100 pattern bytes (lent); with chunk=1 a non-final flush after "copy2".
 * /t/ref?mode=errors: the failing calls, reported in the body (which is lent static data). */
static int h_ref(httpsrv_session *s, void *ud)
{
    (void)ud;
    char tag[24], type[64], mode[16];
    if (!qstr(s, "tag", tag, sizeof tag) || !tag[0]) snprintf(tag, sizeof tag, "ref");
    watch(s, "ref");
    if (qstr(s, "mode", mode, sizeof mode) && strcmp(mode, "errors") == 0) {
        static char report[16384];
        static const char data[] = "0123456789";
        struct rep r;
        memset(&r, 0, sizeof r);
        chk(&r, "ref_null_data", httpsrv_response_append_ref(s, NULL, 5, lent_release_wrong, "null"), EINVAL);
        chk(&r, "ref_null_session", httpsrv_response_append_ref(NULL, data, 5, lent_release_wrong, "sess"), EINVAL);
        /* only copied bytes count against max_pending_bytes: a copy that large is refused
         * before a byte is read (a lent piece is the module's memory and is not refused) */
        chk(&r, "append_past_max_pending", httpsrv_response_append(s, data, (size_t)1 << 40), ENOBUFS);
        chk_u64(&r, "pending_after_refusals", httpsrv_response_pending(s), 0);
        chk(&r, "ref_empty", httpsrv_response_append_ref(s, data, 0, NULL, NULL), 0);
        rep_end(&r);
        memcpy(report, r.buf, r.len);
        httpsrv_response_header_set(s, "Content-Type", "text/plain");
        int rs = httpsrv_response_append_ref(s, report, r.len, NULL, NULL);
        int rf = httpsrv_response_flush(s, 1);
        int ra = httpsrv_response_append_ref(s, data, 5, lent_release_wrong, "after-final");
        tlog("ref-errors static=%s final=%s after_final=%s", ename(rs), ename(rf), ename(ra));
        return HTTPSRV_DONE;
    }
    if (qstr(s, "mode", mode, sizeof mode) && strcmp(mode, "pieces") == 0) {
        /* n lent pieces of len bytes, none flushed, then len copied bytes and one more: lent
         * pieces do not count against max_pending_bytes, copies do (the host runs with
         * max_pending_bytes = len) */
        long n = qint(s, "n", 4, 1, 16);
        long plen = qint(s, "len", 1 << 20, 1, 1L << 24);
        char line[256];
        size_t used = (size_t)snprintf(line, sizeof line, "ref-pieces lent=");
        for (long i = 0; i < n && used < sizeof line - 32; i++) {
            char ptag[24];
            snprintf(ptag, sizeof ptag, "pieces-%d", (int)i);
            used += (size_t)snprintf(line + used, sizeof line - used, "%s%s", i ? "," : "",
                                     ename(append_lent(s, ptag, (size_t)plen)));
        }
        unsigned char *copy = malloc((size_t)plen);
        if (!copy) return 7;
        fill_pattern(copy, (size_t)plen, 0);
        int rc = httpsrv_response_append(s, copy, (size_t)plen);
        int ro = httpsrv_response_append(s, copy, 1);
        free(copy);
        tlog("%s copy=%s over=%s", line, ename(rc), ename(ro));
        return HTTPSRV_DONE;
    }
    long len = qint(s, "len", 3000, 0, 1L << 24);
    if (qstr(s, "type", type, sizeof type) && type[0]) httpsrv_response_header_set(s, "Content-Type", type);
    char tag1[40], tag2[40];
    snprintf(tag1, sizeof tag1, "%s-1", tag);
    snprintf(tag2, sizeof tag2, "%s-2", tag);
    int r1 = append_str(s, "copy1");
    int r2 = append_lent(s, tag1, (size_t)len);
    int r3 = append_str(s, "copy2");
    int r4 = qint(s, "chunk", 0, 0, 1) ? httpsrv_response_flush(s, 0) : 0;
    int r5 = append_lent(s, tag2, 100);
    tlog("ref-appended %s %s %s %s %s %s", tag, ename(r1), ename(r2), ename(r3), ename(r4 == EAGAIN ? 0 : r4),
         ename(r5));
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* PENDING completed from a foreign thread                             */

static void pending_done(httpsrv_session *s, int err, uint64_t bytes, void *ud)
{
    struct track *t = ud;
    tlog("pending-done err=%s bytes=%llu loop_thread=%d headers_sent=%d", ename(err), (unsigned long long)bytes,
         pthread_equal(pthread_self(), t->loop) != 0, httpsrv_response_headers_sent(s));
    track_put(t);
}

static void *pending_thread(void *arg)
{
    struct track *t = arg;
    httpsrv_session *s = t->sess;
    sleep_ms(t->ms);
    int ra;
    if (t->bytes > 0) {
        unsigned char *buf = malloc((size_t)t->bytes);
        if (buf) fill_pattern(buf, (size_t)t->bytes, 0);
        ra = buf ? httpsrv_response_append(s, buf, (size_t)t->bytes) : ENOMEM;
        free(buf);
    } else {
        ra = append_str(s, "pending-done\n");
    }
    long long t0 = now_ms();
    int rf;
    if (t->use_async) {
        pthread_mutex_lock(&t->mu);
        t->refs++; /* the done callback holds one */
        pthread_mutex_unlock(&t->mu);
        rf = httpsrv_response_flush_async(s, 1, pending_done, t);
        if (rf != 0) track_put(t);
    } else {
        rf = httpsrv_response_flush(s, 1);
    }
    tlog("pending append=%s flush=%s flush_ms=%lld", ename(ra), ename(rf), now_ms() - t0);
    int closed = track_wait(t, 5000);
    sleep_ms(50);
    int r2 = append_str(s, "x");
    int r3 = httpsrv_response_flush(s, 1);
    tlog("pending after closed=%d append=%s flush=%s", closed, ename(r2), ename(r3));
    track_put(t);
    thread_done();
    return NULL;
}

/* /t/pending?ms=M[&chunk=1][&bytes=B][&async=1]: a thread of the module appends
 * "pending-done\n" (or B bytes of the i % 251 pattern) after M ms and makes the final flush
 * (with flush_async when async=1) */
static int h_pending(httpsrv_session *s, void *ud)
{
    (void)ud;
    struct track *t = track_new(s, "pending");
    if (!t) return 7;
    t->ms = qint(s, "ms", 100, 0, 60000);
    t->bytes = qint(s, "bytes", 0, 0, 4 << 20);
    t->use_async = (int)qint(s, "async", 0, 0, 1);
    t->loop = pthread_self();
    int rc = httpsrv_session_on_close(s, close_track, t);
    if (rc) {
        tlog("pending on_close=%s", ename(rc));
        t->refs = 1;
    }
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    if (qint(s, "chunk", 0, 0, 1)) {
        append_str(s, "pending-start\n");
        int rf = httpsrv_response_flush(s, 0);
        if (rf) tlog("pending start flush=%s", ename(rf));
    }
    if (spawn(pending_thread, t) != 0) {
        tlog("pending spawn failed");
        track_put(t);
        return 7;
    }
    return HTTPSRV_PENDING;
}

/* ------------------------------------------------------------------ */
/* a chain of flush_async                                              */

struct chain {
    long n, i, size;
    pthread_t loop;
};

static void chain_piece(httpsrv_session *s, struct chain *c)
{
    char buf[4096];
    long size = c->size > (long)sizeof buf ? (long)sizeof buf : c->size;
    memset(buf, 'A' + (int)(c->i % 26), (size_t)size);
    int ra = httpsrv_response_append(s, buf, (size_t)size);
    if (ra) tlog("async %ld append=%s", c->i, ename(ra));
}

static void chain_done(httpsrv_session *s, int err, uint64_t bytes, void *ud)
{
    struct chain *c = ud;
    int same = pthread_equal(pthread_self(), c->loop);
    tlog("async %ld err=%s bytes=%llu loop_thread=%d headers_sent=%d", c->i, ename(err),
         (unsigned long long)bytes, same, httpsrv_response_headers_sent(s));
    if (err != 0 || c->i + 1 >= c->n) {
        free(c);
        return;
    }
    c->i++;
    chain_piece(s, c);
    int rc = httpsrv_response_flush_async(s, c->i + 1 == c->n, chain_done, c);
    if (rc) {
        tlog("async %ld flush_async=%s", c->i, ename(rc));
        free(c);
    }
}

/* /t/async-chain?n=N&size=S */
static int h_async_chain(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "async-chain");
    struct chain *c = calloc(1, sizeof *c);
    if (!c) return 7;
    c->n = qint(s, "n", 3, 1, 1000);
    c->size = qint(s, "size", 10, 1, 4096);
    c->loop = pthread_self();
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    chain_piece(s, c);
    int rc = httpsrv_response_flush_async(s, c->n == 1, chain_done, c);
    if (rc) {
        tlog("async 0 flush_async=%s", ename(rc));
        free(c);
        return 7;
    }
    return HTTPSRV_PENDING;
}

/* ------------------------------------------------------------------ */
/* abort, post, data                                                   */

static int h_abort(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "abort");
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    append_str(s, "before-abort\n");
    int rf = httpsrv_response_flush(s, 0);
    int ra = httpsrv_session_abort(s);
    int r2 = append_str(s, "after");
    int r3 = httpsrv_response_flush(s, 1);
    int r4 = httpsrv_session_abort(s);
    const char *m = httpsrv_request_method(s);
    tlog("abort flush=%s abort=%s append_after=%s flush_after=%s abort_again=%s method_after=%s", ename(rf),
         ename(ra), ename(r2), ename(r3), ename(r4), m ? m : "(null)");
    return HTTPSRV_DONE;
}

struct postctx {
    httpsrv_session *sess;
    pthread_t loop;
};

static void post_task(httpsrv_session *s, void *ud)
{
    struct postctx *p = ud;
    int same = pthread_equal(pthread_self(), p->loop);
    int ra = append_str(s, "posted\n");
    int rf = httpsrv_response_flush(s, 1);
    tlog("post-task same_thread=%d handle_same=%d append=%s flush=%s", same, s == p->sess, ename(ra), ename(rf));
    free(p);
}

static void *post_thread(void *arg)
{
    struct postctx *p = arg;
    httpsrv_session *s = p->sess;
    sleep_ms(20);
    int rc = httpsrv_session_post(s, post_task, p);
    tlog("post rc=%s", ename(rc));
    if (rc) httpsrv_session_abort(s); /* p leaks: bounded, test-only */
    thread_done();
    return NULL;
}

static int h_post(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "post");
    struct postctx *p = calloc(1, sizeof *p);
    if (!p) return 7;
    p->sess = s;
    p->loop = pthread_self();
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    if (spawn(post_thread, p) != 0) {
        free(p);
        return 7;
    }
    return HTTPSRV_PENDING;
}

static int marker;

static int h_data(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "data");
    struct rep r;
    memset(&r, 0, sizeof r);
    chk_null(&r, "data_unset", httpsrv_session_data(s));
    chk(&r, "set_data", httpsrv_session_set_data(s, &marker), 0);
    chk_true(&r, "data_is_marker", httpsrv_session_data(s) == &marker);
    chk(&r, "set_data_null", httpsrv_session_set_data(s, NULL), 0);
    chk_null(&r, "data_null_again", httpsrv_session_data(s));
    chk(&r, "set_data_again", httpsrv_session_set_data(s, &marker), 0);
    rep_end(&r);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    httpsrv_response_append(s, r.buf, r.len);
    return HTTPSRV_DONE;
}

/* /t/loop-big?bytes=B : one big flush(0) on the loop thread */
static int h_loop_big(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "loop-big");
    long bytes = qint(s, "bytes", 3 << 20, 1, 4 << 20);
    unsigned char *buf = malloc((size_t)bytes);
    if (!buf) return 7;
    fill_pattern(buf, (size_t)bytes, 0);
    httpsrv_response_header_set(s, "Content-Type", "application/octet-stream");
    int ra = httpsrv_response_append(s, buf, (size_t)bytes);
    free(buf);
    int rf = httpsrv_response_flush(s, 0);
    size_t pend = httpsrv_response_pending(s);
    /* the queued bytes count against max_pending_bytes (?max=M, default 4 MiB): an append
     * that would go 1000 bytes past it is refused and takes nothing */
    long max = qint(s, "max", 4 << 20, 0, 64 << 20);
    int rmax = -2;
    size_t pend2 = pend;
    if (pend != (size_t)-1 && (long)pend < max) {
        size_t over = (size_t)(max - (long)pend) + 1000;
        unsigned char *junk = malloc(over);
        if (junk) {
            memset(junk, 'J', over);
            rmax = httpsrv_response_append(s, junk, over);
            free(junk);
            pend2 = httpsrv_response_pending(s);
        }
    }
    int rfin = httpsrv_response_flush(s, 1);
    tlog("loop-big append=%s flush0=%s pending_after=%zu append_past_max=%s pending_after_refused=%zu final=%s",
         ename(ra), ename(rf), pend, ename(rmax), pend2, ename(rfin));
    return HTTPSRV_DONE;
}

/* /t/async-big?bytes=B : one final flush_async of B bytes; the done result is logged */
static void async_big_done(httpsrv_session *s, int err, uint64_t bytes, void *ud)
{
    (void)ud;
    tlog("async-big err=%s bytes=%llu pending=%zu", ename(err), (unsigned long long)bytes, httpsrv_response_pending(s));
}

static int h_async_big(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "async-big");
    long bytes = qint(s, "bytes", 3 << 20, 1, 4 << 20);
    unsigned char *buf = malloc((size_t)bytes);
    if (!buf) return 7;
    fill_pattern(buf, (size_t)bytes, 0);
    httpsrv_response_header_set(s, "Content-Type", "application/octet-stream");
    int ra = httpsrv_response_append(s, buf, (size_t)bytes);
    free(buf);
    int rc = httpsrv_response_flush_async(s, 1, async_big_done, NULL);
    tlog("async-big append=%s flush_async=%s", ename(ra), ename(rc));
    return rc == 0 ? HTTPSRV_PENDING : 7;
}

/* /t/concurrent?threads=T&n=N : T threads of the module append N lines each to one PENDING
 * session at the same time (flush(0) every 10 lines); the coordinator makes the final flush */
struct conc {
    httpsrv_session *sess;
    int k;
    long n;
    int fails;
};

static void *conc_worker(void *arg)
{
    struct conc *c = arg;
    for (long i = 0; i < c->n; i++) {
        char line[64];
        snprintf(line, sizeof line, "w%d %06ld ................................\n", c->k, i);
        if (append_str(c->sess, line) != 0) c->fails++;
        if (i % 10 == 9 && httpsrv_response_flush(c->sess, 0) != 0) c->fails++;
    }
    return NULL;
}

struct conc_main {
    httpsrv_session *sess;
    int threads;
    long n;
};

static void *conc_coordinator(void *arg)
{
    struct conc_main *m = arg;
    pthread_t th[16];
    struct conc cs[16];
    int started = 0;
    for (int k = 0; k < m->threads; k++) {
        cs[k].sess = m->sess;
        cs[k].k = k;
        cs[k].n = m->n;
        cs[k].fails = 0;
        if (pthread_create(&th[k], NULL, conc_worker, &cs[k]) == 0) started++;
        else break;
    }
    int fails = 0;
    for (int k = 0; k < started; k++) {
        pthread_join(th[k], NULL);
        fails += cs[k].fails;
    }
    int rf = httpsrv_response_flush(m->sess, 1);
    tlog("concurrent started=%d fails=%d final=%s", started, fails, ename(rf));
    free(m);
    thread_done();
    return NULL;
}

static int h_concurrent(httpsrv_session *s, void *ud)
{
    (void)ud;
    watch(s, "concurrent");
    struct conc_main *m = calloc(1, sizeof *m);
    if (!m) return 7;
    m->sess = s;
    m->threads = (int)qint(s, "threads", 4, 1, 16);
    m->n = qint(s, "n", 100, 1, 10000);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    if (spawn(conc_coordinator, m) != 0) {
        free(m);
        return 7;
    }
    return HTTPSRV_PENDING;
}

/* ------------------------------------------------------------------ */
/* pool routes: /t/pool/...                                            */

/* /t/pool/lines?n=N&ms=M */
static int pool_lines(httpsrv_session *s, struct track *t)
{
    long n = qint(s, "n", 3, 1, 10000);
    long ms = qint(s, "ms", 100, 0, 60000);
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    int rc = 0;
    long long start = now_ms();
    for (long i = 0; i < n; i++) {
        char line[64];
        snprintf(line, sizeof line, "line %ld\n", i);
        int ra = append_str(s, line);
        rc = httpsrv_response_flush(s, 0);
        tlog("lines %ld append=%s flush=%s t=%lld closed=%d", i, ename(ra), ename(rc), now_ms() - start, __atomic_load_n(&t->closed, __ATOMIC_SEQ_CST));
        if (rc != 0) break;
        if (i + 1 < n) sleep_ms(ms);
    }
    if (rc == 0) {
        rc = httpsrv_response_flush(s, 1);
        tlog("lines final=%s", ename(rc));
    }
    return HTTPSRV_DONE;
}

/* /t/pool/big?bytes=B&reps=R : R blocking flushes of B bytes */
static int pool_big(httpsrv_session *s)
{
    long bytes = qint(s, "bytes", 3 << 20, 1, 4 << 20);
    long reps = qint(s, "reps", 1, 1, 64);
    unsigned char *buf = malloc((size_t)bytes);
    if (!buf) return 7;
    httpsrv_response_header_set(s, "Content-Type", "application/octet-stream");
    int rc = 0;
    for (long r = 0; r < reps; r++) {
        fill_pattern(buf, (size_t)bytes, (size_t)(r * bytes));
        int ra = httpsrv_response_append(s, buf, (size_t)bytes);
        long long t0 = now_ms();
        rc = httpsrv_response_flush(s, 0);
        tlog("big %ld append=%s flush=%s ms=%lld", r, ename(ra), ename(rc), now_ms() - t0);
        if (rc != 0) break;
    }
    free(buf);
    if (rc == 0) {
        rc = httpsrv_response_flush(s, 1);
        tlog("big final=%s", ename(rc));
    }
    return HTTPSRV_DONE;
}

/* /t/pool/stream?n=N&size=S&ms=M */
static int pool_stream(httpsrv_session *s)
{
    long n = qint(s, "n", 3, 0, 100000);
    long size = qint(s, "size", 5, 1, 1 << 20);
    long ms = qint(s, "ms", 0, 0, 60000);
    char *buf = malloc((size_t)size);
    if (!buf) return 7;
    httpsrv_response_header_set(s, "Content-Type", "text/plain");
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        memset(buf, 'a' + (int)(i % 26), (size_t)size);
        httpsrv_response_append(s, buf, (size_t)size);
        rc = httpsrv_response_flush(s, 0);
        if (rc) tlog("pool-stream %ld flush=%s", i, ename(rc));
        sleep_ms(ms);
    }
    free(buf);
    if (rc == 0) rc = httpsrv_response_flush(s, 1);
    tlog("pool-stream final=%s", ename(rc));
    return HTTPSRV_DONE;
}

/* /t/pool/errors: what only a pool thread can check */
static int pool_errors(httpsrv_session *s)
{
    struct rep *r = calloc(1, sizeof *r);
    if (!r) return 7;
    chk(r, "stop_from_pool_thread", httpsrv_server_stop(g_srv, 0), EDEADLK);
    chk(r, "route_after_start", httpsrv_server_route(g_srv, NULL, "/t/late2", 0, h_hello, NULL), EBUSY);
    chk(r, "set_after_start", httpsrv_server_set(g_srv, "pool_threads", "2"), EBUSY);
    const char *m = httpsrv_request_method(s);
    chk_true(r, "method_readable", m && m[0]);
    chk(r, "header_set_pool", httpsrv_response_header_set(s, "Content-Type", "text/plain"), 0);
    chk(r, "append_pool", httpsrv_response_append(s, "pool-errors\n", 12), 0);
    chk(r, "blocking_flush0", httpsrv_response_flush(s, 0), 0);
    chk_int(r, "headers_sent", httpsrv_response_headers_sent(s), 1);
    chk(r, "status_after_headers", httpsrv_response_status_set(s, 500, NULL), EALREADY);
    chk_u64(r, "pending_after_blocking_flush", httpsrv_response_pending(s), 0);
    rep_end(r);
    httpsrv_response_append(s, r->buf, r->len);
    free(r);
    return HTTPSRV_DONE;
}

static int h_pool(httpsrv_session *s, void *ud)
{
    (void)ud;
    const char *p = httpsrv_request_path(s);
    if (!p) return 7;
    if (strcmp(p, "/t/pool/lines") == 0) {
        struct track *t = track_new(s, "pool-lines");
        if (!t) return 7;
        if (httpsrv_session_on_close(s, close_track, t) != 0) t->refs = 1;
        int rc = pool_lines(s, t);
        track_put(t);
        return rc;
    }
    if (strcmp(p, "/t/pool/big") == 0) {
        watch(s, "pool-big");
        return pool_big(s);
    }
    if (strcmp(p, "/t/pool/stream") == 0) {
        watch(s, "pool-stream");
        return pool_stream(s);
    }
    if (strcmp(p, "/t/pool/errors") == 0) {
        watch(s, "pool-errors");
        return pool_errors(s);
    }
    if (strcmp(p, "/t/pool/hello") == 0) {
        watch(s, "pool-hello");
        httpsrv_response_header_set(s, "Content-Type", "text/plain");
        append_str(s, "Hello, pool!\n");
        return HTTPSRV_DONE;
    }
    if (strcmp(p, "/t/pool/echo") == 0) {
        return h_echo(s, NULL);
    }
    watch(s, "pool-unknown");
    httpsrv_response_status_set(s, 404, NULL);
    append_str(s, "no such pool route\n");
    return HTTPSRV_DONE;
}

/* ------------------------------------------------------------------ */
/* module entry points                                                 */

#define ROUTE(method, path, flags, fn, ud)                                              \
    do {                                                                                \
        int rc_ = httpsrv_server_route(srv, method, path, flags, fn, ud);               \
        if (rc_ != 0) {                                                                 \
            fprintf(stderr, "test_module: route %s failed: %d\n", path, rc_);           \
            return rc_;                                                                 \
        }                                                                               \
    } while (0)

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    if (args && strncmp(args, "fail=", 5) == 0) return atoi(args + 5);
    g_srv = srv;

    ROUTE(NULL, "/t/hello", 0, h_hello, NULL);
    ROUTE(NULL, "/t/thread", 0, h_thread, NULL);
    ROUTE(NULL, "/t/tls", 0, h_tls, NULL);
    ROUTE(NULL, "/t/stream", 0, h_stream, NULL);
    ROUTE(NULL, "/t/length", 0, h_length, NULL);
    ROUTE(NULL, "/t/status", 0, h_status, NULL);
    ROUTE(NULL, "/t/echo", 0, h_echo, NULL);
    ROUTE(NULL, "/t/headers", 0, h_headers, NULL);
    ROUTE(NULL, "/t/cookies", 0, h_cookies, NULL);
    ROUTE(NULL, "/t/bad-return", 0, h_bad_return, NULL);
    ROUTE(NULL, "/t/bad-return-late", 0, h_bad_return_late, NULL);
    ROUTE(NULL, "/t/errors", 0, h_errors, NULL);
    ROUTE(NULL, "/t/stale/keep", 0, h_stale_keep, NULL);
    ROUTE(NULL, "/t/stale/check", 0, h_stale_check, NULL);
    ROUTE(NULL, "/t/emsgsize", 0, h_emsgsize, NULL);
    ROUTE(NULL, "/t/enobufs", 0, h_enobufs, NULL);
    ROUTE(NULL, "/t/ref", 0, h_ref, NULL);
    ROUTE(NULL, "/t/pool-ref", HTTPSRV_ROUTE_POOL, h_ref, NULL);
    ROUTE(NULL, "/t/pending", 0, h_pending, NULL);
    ROUTE(NULL, "/t/async-chain", 0, h_async_chain, NULL);
    ROUTE(NULL, "/t/abort", 0, h_abort, NULL);
    ROUTE(NULL, "/t/post", 0, h_post, NULL);
    ROUTE(NULL, "/t/data", 0, h_data, NULL);
    ROUTE(NULL, "/t/loop-big", 0, h_loop_big, NULL);
    ROUTE(NULL, "/t/async-big", 0, h_async_big, NULL);
    ROUTE(NULL, "/t/concurrent", 0, h_concurrent, NULL);
    ROUTE(NULL, "/t/log", 0, h_log, NULL);
    ROUTE("GET", "/t/method", 0, h_method, "GET-route");
    ROUTE("PUT", "/t/method", 0, h_method, "PUT-route");
    ROUTE(NULL, "/t/prefix/*", 0, h_text, "prefix\n");
    ROUTE(NULL, "/t/prefix/long/*", 0, h_text, "prefix-long\n");
    ROUTE(NULL, "/t/pool/*", HTTPSRV_ROUTE_POOL, h_pool, NULL);

    /* error cases recorded for /t/errors (the server is not started yet) */
    init_route_dup = httpsrv_server_route(srv, NULL, "/t/hello", 0, h_hello, NULL);
    init_route_nullfn = httpsrv_server_route(srv, NULL, "/t/nullfn", 0, NULL, NULL);
    init_route_nullpath = httpsrv_server_route(srv, NULL, NULL, 0, h_hello, NULL);
    init_route_badpath = httpsrv_server_route(srv, NULL, "no-slash", 0, h_hello, NULL);
    init_set_unknown = httpsrv_server_set(srv, "no_such_option", "1");
    init_set_badval = httpsrv_server_set(srv, "send_timeout_ms", "abc");
    init_set_nullkey = httpsrv_server_set(srv, NULL, "1");
    init_set_nullval = httpsrv_server_set(srv, "threads", NULL);
    init_port_bad = httpsrv_server_port(srv, 999);
    init_listen_bad = httpsrv_server_listen(srv, "not an address");
    init_listen_null = httpsrv_server_listen(srv, NULL);
    return 0;
}

void httpsrv_module_fini(httpsrv_server *srv)
{
    (void)srv;
    /* wait (bounded) for the threads this module started: after fini the
     * module is dlclose()d */
    long long end = now_ms() + 10000;
    pthread_mutex_lock(&thr_mu);
    while (thr_live > 0 && now_ms() < end) {
        pthread_mutex_unlock(&thr_mu);
        sleep_ms(5);
        pthread_mutex_lock(&thr_mu);
    }
    int left = thr_live;
    pthread_mutex_unlock(&thr_mu);
    sleep_ms(20); /* let the last thread leave the module's code */
    /* the event log, for tests that can no longer ask over HTTP */
    pthread_mutex_lock(&log_mu);
    size_t start = 0;
    for (size_t i = 0; i < log_len; i++) {
        if (log_buf[i] == '\n') {
            printf("LOG %.*s\n", (int)(i - start), log_buf + start);
            start = i + 1;
        }
    }
    pthread_mutex_unlock(&log_mu);
    printf("FINI threads_left=%d\n", left);
    fflush(stdout);
}
