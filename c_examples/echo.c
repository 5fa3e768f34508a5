/*
 * echo.c - reading the request.
 *
 *   POST /echo          answers with the request body and its Content-Type
 *                       (application/octet-stream when the request has none)
 *   GET  /echo/headers  a text/plain listing of the request: method, target,
 *                       path, query, version, peer, then every header field
 *
 * Try:  curl --data-binary 'hi there' -H 'Content-Type: text/plain' \
 *            http://127.0.0.1:8080/echo
 *       curl 'http://127.0.0.1:8080/echo/headers?a=1' -H 'X-Demo: yes'
 *
 * The request (method, target, fields, body) stays valid for the whole
 * session. The library reads the whole body, de-chunked, before the handler
 * runs; bodies over max_body_bytes are refused with 413 before that.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

/* POST /echo (inline: it does not block). */
static int echo(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    size_t len = 0;
    const void *body = httpsrv_request_body(sess, &len); /* NULL and 0: no body */
    const char *type = httpsrv_request_header(sess, "Content-Type");
    if (type == NULL || *type == '\0')
        type = "application/octet-stream";

    int err = httpsrv_response_header_set(sess, "Content-Type", type);
    if (err == 0 && len > 0)
        err = httpsrv_response_append(sess, body, len); /* copies the bytes */
    if (err != 0) {
        /* e.g. ENOBUFS if the body is larger than max_pending_bytes */
        fprintf(stderr, "echo: /echo: %s\n", httpsrv_strerror(err));
        return -1; /* 500 */
    }
    return HTTPSRV_DONE; /* the library sends it with a Content-Length */
}

/*
 * A tiny writer that keeps the first error, so a long run of appends needs
 * only one check at the end: after an error every later call does nothing.
 */
struct out {
    httpsrv_session *sess;
    int err;
};

static void put(struct out *o, const char *s)
{
    if (o->err == 0)
        o->err = httpsrv_response_append(o->sess, s, strlen(s));
}

/* "name: value\n"; a NULL value (a stale handle) prints as "(none)". */
static void put_field(struct out *o, const char *name, const char *value)
{
    put(o, name);
    put(o, ": ");
    put(o, value != NULL ? value : "(none)");
    put(o, "\n");
}

/* GET /echo/headers (inline). */
static int headers(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    struct out o = { sess, 0 };
    char buf[80];

    o.err = httpsrv_response_header_set(sess, "Content-Type", "text/plain; charset=utf-8");

    put_field(&o, "method", httpsrv_request_method(sess));
    put_field(&o, "target", httpsrv_request_target(sess));
    put_field(&o, "path", httpsrv_request_path(sess));
    put_field(&o, "query", httpsrv_request_query(sess));

    int version = httpsrv_request_version(sess); /* 10, 11, or -1 if stale */
    if (version < 0)
        snprintf(buf, sizeof buf, "(unknown)");
    else
        snprintf(buf, sizeof buf, "HTTP/%d.%d", version / 10, version % 10);
    put_field(&o, "version", buf);

    /* "ip:port" ("[v6]:port") of the client; ENOBUFS if buf were too small. */
    int err = httpsrv_request_peer(sess, buf, sizeof buf);
    if (err != 0)
        snprintf(buf, sizeof buf, "(unknown: %s)", httpsrv_strerror(err));
    put_field(&o, "peer", buf);

    size_t count = httpsrv_request_header_count(sess); /* (size_t)-1 if stale */
    if (count == (size_t)-1)
        count = 0;
    snprintf(buf, sizeof buf, "%zu", count);
    put_field(&o, "header-count", buf);
    put(&o, "\n");

    /* Every field in the order received, repeated names included. */
    for (size_t i = 0; i < count; i++) {
        const char *name, *value;
        err = httpsrv_request_header_at(sess, i, &name, &value);
        if (err == ENOENT)
            break; /* past the end */
        if (err != 0) {
            o.err = o.err ? o.err : err;
            break;
        }
        put_field(&o, name, value);
    }

    if (o.err != 0) {
        fprintf(stderr, "echo: /echo/headers: %s\n", httpsrv_strerror(o.err));
        return -1;
    }
    return HTTPSRV_DONE;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    int err = httpsrv_server_route(srv, "POST", "/echo", 0, echo, NULL);
    if (err != 0) {
        fprintf(stderr, "echo: POST /echo: %s\n", httpsrv_strerror(err));
        return err;
    }
    err = httpsrv_server_route(srv, "GET", "/echo/headers", 0, headers, NULL);
    if (err != 0)
        fprintf(stderr, "echo: GET /echo/headers: %s\n", httpsrv_strerror(err));
    return err;
}
