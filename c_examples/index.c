/*
 * index.c - the demo's front page.
 *
 *   GET /  (exact: other unknown paths still get 404)  ->  an HTML page that
 *          links every example endpoint and has a small form for POST /echo.
 *
 * The page is a constant string; only the library version is filled in.
 */
#include <stdio.h>
#include <string.h>

#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

static const char page_head[] =
    "<!doctype html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<title>httpsrv examples</title>\n"
    "<style>body{font-family:sans-serif;margin:2em;max-width:48em} code{background:#eee}"
    " td{padding:.2em 1em .2em 0;vertical-align:top}</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1>httpsrv examples</h1>\n"
    "<p>Each link is answered by a C or C++ module from <code>c_examples/</code>.</p>\n"
    "<table>\n"
    "<tr><td><a href=\"/hello\">/hello</a></td><td>hello.c: the smallest handler</td></tr>\n"
    "<tr><td><a href=\"/stream\">/stream</a></td><td>streaming.c: 16 chunks of 1 KiB, each flushed"
    " (<a href=\"/stream?n=4&amp;size=64\">?n=4&amp;size=64</a>)</td></tr>\n"
    "<tr><td><a href=\"/stream/slow\">/stream/slow</a></td><td>streaming.c: 5 lines 200 ms apart"
    " from a pool thread (try <code>curl -N</code>)</td></tr>\n"
    "<tr><td><a href=\"/sse.html\">/sse.html</a></td><td>sse.c: a page showing server-sent"
    " events as they arrive</td></tr>\n"
    "<tr><td><a href=\"/sse.html?src=/events-gzip\">/sse.html?src=/events-gzip</a></td>"
    "<td>sse.c: the same events, gzip-compressed</td></tr>\n"
    "<tr><td><a href=\"/events\">/events</a></td><td>sse.c: the raw event stream"
    " (<a href=\"/events-gzip\">/events-gzip</a>)</td></tr>\n"
    "<tr><td><a href=\"/echo/headers\">/echo/headers</a></td><td>echo.c: your request, as the"
    " server saw it</td></tr>\n"
    "<tr><td><a href=\"/poll\">/poll</a></td><td>longpoll.c: answered 500 ms later by a module"
    " thread (<a href=\"/poll?ms=2000\">?ms=2000</a>)</td></tr>\n"
    "<tr><td><a href=\"/poll/async\">/poll/async</a></td><td>longpoll.c: the same with"
    " <code>httpsrv_session_post</code> and <code>httpsrv_response_flush_async</code></td></tr>\n"
    "<tr><td><a href=\"/cached\">/cached</a></td><td>cache.c: a 256 KiB page lent, not copied,"
    " with <code>httpsrv_response_append_ref</code> (<a href=\"/cached?kb=4\">?kb=4</a>)</td></tr>\n"
    "<tr><td><a href=\"/cpp\">/cpp</a></td><td>hello_cpp.cpp: a C++ module with an RAII"
    " wrapper</td></tr>\n"
    "</table>\n"
    "<h2>POST /echo</h2>\n"
    "<form method=\"post\" action=\"/echo\" enctype=\"text/plain\">\n"
    "<textarea name=\"message\" rows=\"3\" cols=\"40\">Hello, echo!</textarea><br>\n"
    "<button type=\"submit\">Send</button>\n"
    "</form>\n"
    "<p><small>libhttpsrv ";
static const char page_tail[] =
    "</small></p>\n"
    "</body>\n"
    "</html>\n";

/* GET / (inline). */
static int index_page(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    const char *version = httpsrv_version();
    if (version == NULL)
        version = "?";

    int err = httpsrv_response_header_set(sess, "Content-Type", "text/html; charset=utf-8");
    if (err == 0)
        err = httpsrv_response_append(sess, page_head, sizeof page_head - 1);
    if (err == 0)
        err = httpsrv_response_append(sess, version, strlen(version));
    if (err == 0)
        err = httpsrv_response_append(sess, page_tail, sizeof page_tail - 1);
    if (err != 0) {
        fprintf(stderr, "index: %s\n", httpsrv_strerror(err));
        return -1;
    }
    return HTTPSRV_DONE;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    int err = httpsrv_server_route(srv, "GET", "/", 0, index_page, NULL);
    if (err != 0)
        fprintf(stderr, "index: cannot register GET /: %s\n", httpsrv_strerror(err));
    return err;
}
