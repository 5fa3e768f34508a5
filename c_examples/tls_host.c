/*
 * tls_host.c - a program that embeds httpsrv and serves HTTPS (not a module: it
 * has main() and links the library).
 *
 *   tls_host ADDR CERT KEY [CERT2 KEY2 ...]
 *
 *   GET /hello  ->  200, "Hello over TLSv1.3 (TLS_AES_128_GCM_SHA256), name site.test\n"
 *
 * It creates a server, binds one TLS listener on ADDR (e.g. 127.0.0.1:8443)
 * with the PEM certificate chain CERT and its private key KEY, adds every
 * further CERT2 KEY2 pair for SNI (a client asking for a name one of them
 * covers gets that certificate; any other client gets CERT), registers a
 * route, starts, and waits for a signal:
 *   SIGHUP           read every certificate and key file again (new handshakes
 *                    get the new ones; on an error the old ones stay)
 *   SIGINT, SIGTERM  stop: in-flight responses get up to 5 s, then free.
 *
 * Build: make -C c_examples (after `cargo build --release`), or
 *        cc -std=c11 -Wall -Wextra -Werror -o tls_host tls_host.c \
 *           $(pkg-config --cflags --libs httpsrv)     # an installed library
 * Try:   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
 *            -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
 *            -keyout key.pem -out cert.pem
 *        c_examples/build/tls_host 127.0.0.1:8443 cert.pem key.pem
 *        curl --cacert cert.pem https://localhost:8443/hello
 */
#define _POSIX_C_SOURCE 200809L /* sigwait, pthread_sigmask */

#include <signal.h>
#include <stdio.h>

#include "httpsrv.h"

/* An inline handler: it runs on the connection's loop thread and must not
 * block. What the handshake agreed on is there for the asking; a module
 * written for cleartext works unchanged over TLS. */
static int hello(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    const char *version = httpsrv_request_tls(sess, "version"); /* NULL: cleartext */
    const char *cipher = httpsrv_request_tls(sess, "cipher");
    const char *sni = httpsrv_request_tls(sess, "sni"); /* NULL: the client sent none */
    char body[256];
    int n = snprintf(body, sizeof body, "Hello over %s (%s), name %s\n",
                     version ? version : "cleartext", cipher ? cipher : "-",
                     sni ? sni : "(none)");
    if (n < 0 || (size_t)n >= sizeof body)
        return -1; /* the client gets a 500 */
    int err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");
    if (err == 0)
        err = httpsrv_response_append(sess, body, (size_t)n);
    return err == 0 ? HTTPSRV_DONE : -1;
}

/* Prints what failed and returns 1 when err is an error. */
static int failed(const char *what, int err)
{
    if (err == 0)
        return 0;
    fprintf(stderr, "tls_host: %s: %s\n", what, httpsrv_strerror(err));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc % 2 != 0) {
        fprintf(stderr, "usage: %s ADDR CERT KEY [CERT2 KEY2 ...]\n", argv[0]);
        return 2;
    }

    /* Block the signals we wait for before the library starts its threads:
     * they inherit the mask, so the signals stay pending for sigwait below
     * instead of landing on a library thread. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &signals, NULL) != 0) {
        fprintf(stderr, "tls_host: cannot block signals\n");
        return 1;
    }

    httpsrv_server *srv = httpsrv_server_new();
    if (srv == NULL) {
        fprintf(stderr, "tls_host: out of memory\n");
        return 1;
    }
    int bad = failed("threads", httpsrv_server_set(srv, "threads", "1"));
    /* Loads the files and binds now: ENOENT a file is missing, EBADMSG no usable
     * certificate or key (the reason and the file's name go to the error log). */
    if (!bad)
        bad = failed(argv[1], httpsrv_server_listen_tls(srv, argv[1], argv[2], argv[3]));
    for (int i = 4; !bad && i + 1 < argc; i += 2)
        bad = failed(argv[i], httpsrv_server_add_certificate(srv, argv[i], argv[i + 1]));
    if (!bad)
        bad = failed("route", httpsrv_server_route(srv, "GET", "/hello", 0, hello, NULL));
    if (!bad)
        bad = failed("start", httpsrv_server_start(srv));
    if (bad) {
        httpsrv_server_free(srv);
        return 1;
    }
    /* Port 0 in ADDR binds any free port: httpsrv_server_port says which. */
    printf("tls_host listening on %s, port %d\n", argv[1], httpsrv_server_port(srv, 0));
    fflush(stdout);

    for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0)
            break;
        if (sig != SIGHUP)
            break;
        /* Any thread, while running; established connections keep theirs. */
        int err = httpsrv_server_reload_certificates(srv);
        if (err == 0)
            printf("tls_host: certificates reloaded\n");
        else
            printf("tls_host: reload failed, keeping the old certificates: %s\n",
                   httpsrv_strerror(err));
        fflush(stdout);
    }

    httpsrv_server_stop(srv, 5000); /* in-flight responses get up to 5 s */
    httpsrv_server_free(srv);       /* afterwards no library thread runs */
    printf("tls_host: stopped\n");
    return 0;
}
