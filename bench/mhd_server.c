/*
 * mhd_server.c - the libmicrohttpd peer of the benchmark.
 *
 *   mhd_server DIR [THREADS]      DIR from bench/corpus.c; THREADS (default 1) internal
 *                                 polling threads (MHD_USE_INTERNAL_POLLING_THREAD with
 *                                 epoll; more than 1: MHD_OPTION_THREAD_POOL_SIZE)
 *
 * MHD_USE_TURBO is on: libmicrohttpd's fastest mode (optimistic reads, fewer shutdown
 * calls). Without it, 0.9.75 with epoll sometimes never reads requests that arrived before
 * it accepted their connections (a burst of new connections each sending at once sat in
 * the kernel's receive queues while MHD waited in epoll_wait), so the idle-connection
 * workload hung.
 *
 * Listens on 127.0.0.1, a free port, prints "mhd listening on http://127.0.0.1:PORT/" and
 * runs until SIGTERM or SIGINT.
 *
 *   GET /hello   13 bytes "Hello, world!", text/plain (one response object, reused)
 *   GET /chunks  16 x 1 KiB of text/plain from a content-reader callback (chunked)
 *   GET /big     big.bin, 1 MiB, application/octet-stream (persistent buffer, reused)
 *   anything else: 404. libmicrohttpd has no gzip, so the gzip workloads skip it.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#define TEXT_LEN 20480
#define BIG_LEN (1024 * 1024)
#define PIECE 1024
#define CHUNKS 16

static char text[TEXT_LEN];
static char *big;
static struct MHD_Response *r_hello, *r_big, *r_404;

static int load(const char *dir, const char *name, char *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    size_t got = fread(buf, 1, len, f);
    fclose(f);
    return got == len ? 0 : -1;
}

/* /chunks: one 1 KiB piece per call; MHD frames it as a chunk. */
static ssize_t chunks_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= (uint64_t)CHUNKS * PIECE)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t off = (size_t)pos;
    size_t n = PIECE - off % PIECE; /* the rest of the current piece */
    if (n > max)
        n = max;
    memcpy(buf, text + off, n);
    return (ssize_t)n;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    /* The usual two-step: a response queued at the first call (before MHD knows the
     * request has no body) makes MHD close the connection after it. */
    static int seen;
    if (*con_cls == NULL) {
        *con_cls = &seen;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0)
        return MHD_NO;
    if (strcmp(url, "/hello") == 0)
        return MHD_queue_response(conn, MHD_HTTP_OK, r_hello);
    if (strcmp(url, "/big") == 0)
        return MHD_queue_response(conn, MHD_HTTP_OK, r_big);
    if (strcmp(url, "/chunks") == 0) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, PIECE, chunks_reader, NULL, NULL);
        if (r == NULL)
            return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/plain");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
    }
    return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, r_404);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [THREADS]\n", argv[0]);
        return 2;
    }
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 1;
    big = malloc(BIG_LEN);
    if (big == NULL || load(argv[1], "text.txt", text, TEXT_LEN) != 0 ||
        load(argv[1], "big.bin", big, BIG_LEN) != 0)
        return 1;

    r_hello = MHD_create_response_from_buffer(13, (void *)"Hello, world!", MHD_RESPMEM_PERSISTENT);
    r_big = MHD_create_response_from_buffer(BIG_LEN, big, MHD_RESPMEM_PERSISTENT);
    r_404 = MHD_create_response_from_buffer(9, (void *)"not found", MHD_RESPMEM_PERSISTENT);
    if (r_hello == NULL || r_big == NULL || r_404 == NULL)
        return 1;
    MHD_add_response_header(r_hello, "Content-Type", "text/plain");
    MHD_add_response_header(r_big, "Content-Type", "application/octet-stream");

    /* Block the stop signals before MHD starts its threads; main waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO;
    struct MHD_Daemon *d;
    if (threads > 1)
        d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)20000,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0,
                             MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_END);
    else
        d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)20000,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "mhd_server: MHD_start_daemon failed\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL) {
        fprintf(stderr, "mhd_server: no port\n");
        return 1;
    }
    printf("mhd listening on http://127.0.0.1:%u/\n", (unsigned)info->port);
    fflush(stdout);

    int sig;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    MHD_destroy_response(r_hello);
    MHD_destroy_response(r_big);
    MHD_destroy_response(r_404);
    free(big);
    return 0;
}
