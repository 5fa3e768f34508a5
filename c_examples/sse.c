/*
 * sse.c - server-sent events (text/event-stream), one event per flush.
 *
 *   GET /events[?count=N&interval=MS]       pool handler: N events
 *                                           "data: tick I\n\n", MS apart
 *   GET /events-gzip[?count=N&interval=MS]  the same, gzip-compressed when the
 *                                           client accepts it
 *   GET /sse.html[?src=/events-gzip]        a page that shows the events of
 *                                           src (default /events) as they come
 *
 * Module args (optional), e.g. --module sse.so=count=20,interval=100, change
 * the defaults (10 events, 300 ms). Bounds: count 1..1000, interval 10..5000.
 *
 * Try:  curl -N http://127.0.0.1:8080/events
 *       curl -N --compressed http://127.0.0.1:8080/events-gzip
 *
 * Compression: text/event-stream is not in the server's default
 * compression_types, so /events-gzip asks for it with HTTPSRV_COMPRESS_ON.
 * Every non-final flush ends with a deflate sync flush, so a client can
 * decode each event as soon as it arrives; compression does not delay them.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

#define COUNT_MIN 1
#define COUNT_MAX 1000
#define INTERVAL_MIN 10
#define INTERVAL_MAX 5000

/* Defaults for this server, set from the module args in init. A route's
 * userdata points here; it is only read after init, so no locking. */
struct sse_config {
    long count;
    long interval_ms;
};
static struct sse_config config = { 10, 300 };

/*
 * Returns the integer value of `key` in "a=1&b=2" (',' also separates, for
 * module args), clamped to [lo, hi]; `def` when absent or not a number.
 */
static long param_long(const char *params, const char *key, long def, long lo, long hi)
{
    size_t klen = strlen(key);
    const char *p = params;

    while (p != NULL && *p != '\0') {
        size_t len = strcspn(p, "&,");
        const char *end = p + len;
        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            char *stop;
            long v = strtol(p + klen + 1, &stop, 10);
            if (stop == p + klen + 1 || stop != end)
                return def;
            return v < lo ? lo : v > hi ? hi : v;
        }
        p = *end != '\0' ? end + 1 : end;
    }
    return def;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * The event stream. It runs on a pool thread (HTTPSRV_ROUTE_POOL), so it may
 * sleep, and each flush blocks until the event reached the kernel. When the
 * client goes away the next flush fails (EPIPE, ECONNRESET, ...) and we stop.
 */
static int events(httpsrv_session *sess, int compress)
{
    const char *query = httpsrv_request_query(sess);
    long count = param_long(query, "count", config.count, COUNT_MIN, COUNT_MAX);
    long interval = param_long(query, "interval", config.interval_ms, INTERVAL_MIN, INTERVAL_MAX);

    int err = httpsrv_response_header_set(sess, "Content-Type", "text/event-stream");
    if (err == 0)
        err = httpsrv_response_header_set(sess, "Cache-Control", "no-cache");
    if (err == 0 && compress)
        err = httpsrv_response_compression(sess, HTTPSRV_COMPRESS_ON);

    for (long i = 1; err == 0 && i <= count; i++) {
        if (i > 1)
            sleep_ms(interval);
        char event[64];
        int len = snprintf(event, sizeof event, "data: tick %ld\n\n", i);
        err = httpsrv_response_append(sess, event, (size_t)len);
        if (err == 0)
            err = httpsrv_response_flush(sess, 0); /* one event per flush */
    }
    if (err == 0)
        err = httpsrv_response_flush(sess, 1);

    switch (err) {
    case 0:
        return HTTPSRV_DONE;
    case EPIPE:
    case ECONNRESET:
    case ETIMEDOUT:
    case ECANCELED: /* client gone, too slow, or server stopping */
        return HTTPSRV_DONE;
    default:
        fprintf(stderr, "sse: %s failed: %s\n", httpsrv_request_path(sess),
                httpsrv_strerror(err));
        return -1;
    }
}

static int events_plain(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    return events(sess, 0);
}

static int events_gzip(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    return events(sess, 1);
}

/*
 * The demo page. Each event becomes <li data-t="MS" data-event="tick I">
 * inside <ol id="events">, MS being the arrival time in milliseconds since the
 * page started loading; after the last expected event the page closes the
 * EventSource (or it would reconnect when the stream ends) and sets its title
 * to "done". The expected count is the src URL's count parameter, else the
 * server's default, which is written into the page below.
 */
static const char page_head[] =
    "<!doctype html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<title>events</title>\n"
    "<style>body{font-family:sans-serif;margin:2em} li{font-family:monospace}</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1>Server-sent events</h1>\n"
    "<p>Stream <code id=\"src\"></code>: <span id=\"status\">connecting</span></p>\n"
    "<ol id=\"events\"></ol>\n"
    "<p><a href=\"/sse.html\">/events</a> | <a href=\"/sse.html?src=/events-gzip\">/events-gzip</a>"
    " | <a href=\"/\">index</a></p>\n"
    "<script>\n"
    "var defaultCount = ";
static const char page_tail[] =
    ";\n"
    "(function () {\n"
    "  var src = new URLSearchParams(location.search).get('src') || '/events';\n"
    "  if (src.charAt(0) !== '/' || src.charAt(1) === '/') src = '/events'; // this server only\n"
    "  var n = parseInt(new URL(src, location.href).searchParams.get('count'), 10);\n"
    "  var want = isNaN(n) ? defaultCount : Math.min(Math.max(n, 1), 1000);\n"
    "  var list = document.getElementById('events');\n"
    "  var status = document.getElementById('status');\n"
    "  var seen = 0;\n"
    "  document.getElementById('src').textContent = src;\n"
    "  var es = new EventSource(src);\n"
    "  es.onopen = function () { status.textContent = 'open'; };\n"
    "  es.onmessage = function (ev) {\n"
    "    var t = Math.round(performance.now());\n"
    "    var li = document.createElement('li');\n"
    "    li.setAttribute('data-t', String(t));\n"
    "    li.setAttribute('data-event', ev.data);\n"
    "    li.textContent = ev.data + ' at ' + t + ' ms';\n"
    "    list.appendChild(li);\n"
    "    seen += 1;\n"
    "    if (seen >= want) {\n"
    "      es.close();\n"
    "      status.textContent = 'done';\n"
    "      document.title = 'done';\n"
    "    }\n"
    "  };\n"
    "  es.onerror = function () { status.textContent = 'error, retrying'; };\n"
    "})();\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

/* GET /sse.html: inline; it only builds a small page. */
static int page(httpsrv_session *sess, void *userdata)
{
    const struct sse_config *cfg = userdata;
    char count[24];
    int len = snprintf(count, sizeof count, "%ld", cfg->count);

    int err = httpsrv_response_header_set(sess, "Content-Type", "text/html; charset=utf-8");
    if (err == 0)
        err = httpsrv_response_append(sess, page_head, sizeof page_head - 1);
    if (err == 0)
        err = httpsrv_response_append(sess, count, (size_t)len);
    if (err == 0)
        err = httpsrv_response_append(sess, page_tail, sizeof page_tail - 1);
    if (err != 0) {
        fprintf(stderr, "sse: /sse.html: %s\n", httpsrv_strerror(err));
        return -1;
    }
    return HTTPSRV_DONE;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    config.count = param_long(args, "count", 10, COUNT_MIN, COUNT_MAX);
    config.interval_ms = param_long(args, "interval", 300, INTERVAL_MIN, INTERVAL_MAX);

    static const struct {
        const char *path;
        unsigned flags;
        httpsrv_handler_fn fn;
    } routes[] = {
        { "/events", HTTPSRV_ROUTE_POOL, events_plain },
        { "/events-gzip", HTTPSRV_ROUTE_POOL, events_gzip },
        { "/sse.html", 0, page },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int err = httpsrv_server_route(srv, "GET", routes[i].path, routes[i].flags,
                                       routes[i].fn, &config);
        if (err != 0) {
            fprintf(stderr, "sse: GET %s: %s\n", routes[i].path, httpsrv_strerror(err));
            return err;
        }
    }
    return 0;
}
