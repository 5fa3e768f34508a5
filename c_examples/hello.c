/*
 * hello.c - the smallest httpsrv module.
 *
 *   GET /hello  ->  200, Content-Type: text/plain, body "Hello, world!"
 *
 * A module is a shared object that exports two symbols (plus an optional
 * httpsrv_module_fini). The httpsrv_* functions it calls stay undefined in
 * the .so and are resolved from the host process when it is dlopen()ed.
 *
 * Build: gcc -std=c11 -Wall -Wextra -Werror -fPIC -shared -I../include \
 *            -o hello.so hello.c
 * Run:   httpsrvd --listen 127.0.0.1:8080 --module ./hello.so
 */
#include <stdio.h>

#include "httpsrv.h"

/* Required: the ABI this module was compiled against. The server refuses to
 * load a module whose number differs from its own (ENOEXEC). */
const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

/*
 * An inline handler (the default): it runs on the connection's event-loop
 * thread, so it must not block. It only fills in the response; returning
 * HTTPSRV_DONE tells the library to finish it (exactly like a final flush).
 * Because the whole body is known at that point, the library sends it with a
 * Content-Length rather than chunked.
 */
static int hello(httpsrv_session *sess, void *userdata)
{
    static const char body[] = "Hello, world!";
    int err;

    (void)userdata; /* not used: we registered the route with NULL */

    /* Each call returns 0 or an errno value; check every one. */
    err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");
    if (err == 0)
        err = httpsrv_response_append(sess, body, sizeof body - 1); /* 13 bytes, no NUL */
    if (err != 0) {
        fprintf(stderr, "hello: building the response failed: %s\n",
                httpsrv_strerror(err));
        /* Any value other than DONE/PENDING is a failure: the client gets a
         * 500 if nothing was sent yet. */
        return -1;
    }
    return HTTPSRV_DONE;
}

/*
 * Required: called once by httpsrv_server_load_module() before the server
 * starts. Register routes here. `args` is the text after '=' in
 * `--module hello.so=ARGS` (NULL or "" when there is none).
 * A non-zero result makes the load fail with that error.
 */
int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    int err = httpsrv_server_route(srv, "GET", "/hello", 0, hello, NULL);
    if (err != 0)
        fprintf(stderr, "hello: cannot register GET /hello: %s\n",
                httpsrv_strerror(err));
    return err;
}
