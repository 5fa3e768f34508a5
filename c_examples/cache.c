/*
 * cache.c - large bodies without copying: httpsrv_response_append_ref.
 *
 *   GET /cached        a 256 KiB page, rendered once and then lent to every response
 *   GET /cached?kb=N   the same page cut to N KiB (1..256)
 *
 * The rendered page lives in a reference-counted entry. Each response takes a reference
 * and lends the bytes; the library calls entry_release once it no longer reads them
 * (sent, not needed for HEAD, or the client left), on a library thread, never while it
 * holds a lock. The last release frees the entry, so a page replaced in the cache stays
 * valid for the responses still sending it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

#define PAGE_BYTES (256 * 1024)

struct entry {
    atomic_int refs;
    size_t len;
    char body[];
};

static struct entry *cached; /* set in init, read-only afterwards; the module holds one ref */

static void entry_release(void *userdata)
{
    struct entry *e = userdata;
    if (atomic_fetch_sub(&e->refs, 1) == 1)
        free(e);
}

static struct entry *render_page(void)
{
    struct entry *e = malloc(sizeof *e + PAGE_BYTES);
    if (e == NULL)
        return NULL;
    atomic_init(&e->refs, 1);
    size_t n = 0;
    for (int line = 0; n < PAGE_BYTES; line++) {
        char text[80];
        int w = snprintf(text, sizeof text, "line %06d: rendered once, lent to every response\n", line);
        size_t take = (size_t)w < PAGE_BYTES - n ? (size_t)w : PAGE_BYTES - n;
        memcpy(e->body + n, text, take);
        n += take;
    }
    e->len = n;
    return e;
}

/* The query's kb=N, clamped to 1..256; 256 without one. */
static size_t requested_len(httpsrv_session *sess)
{
    const char *q = httpsrv_request_query(sess);
    const char *kb = q ? strstr(q, "kb=") : NULL;
    if (kb == NULL)
        return PAGE_BYTES;
    long n = strtol(kb + 3, NULL, 10);
    if (n < 1)
        n = 1;
    if (n > PAGE_BYTES / 1024)
        n = PAGE_BYTES / 1024;
    return (size_t)n * 1024;
}

/* GET /cached (inline). */
static int cached_page(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    struct entry *e = cached;
    int err = httpsrv_response_header_set(sess, "Content-Type", "text/plain; charset=utf-8");
    if (err != 0)
        return err;
    atomic_fetch_add(&e->refs, 1); /* the response's reference */
    err = httpsrv_response_append_ref(sess, e->body, requested_len(sess), entry_release, e);
    if (err != 0) {
        /* Refused: the library took nothing and will not call entry_release. */
        entry_release(e);
        return err;
    }
    return HTTPSRV_DONE;
}

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    cached = render_page();
    if (cached == NULL)
        return ENOMEM;
    return httpsrv_server_route(srv, "GET", "/cached", 0, cached_page, NULL);
}

void httpsrv_module_fini(httpsrv_server *srv)
{
    (void)srv;
    /* The server has stopped: every response released its reference. */
    entry_release(cached);
    cached = NULL;
}
