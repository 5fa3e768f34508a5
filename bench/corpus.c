/*
 * corpus.c - writes the benchmark's response bodies into a directory, so that
 * every server (httpsrv module, nginx/lua, libmicrohttpd, floor) serves the
 * very same bytes.
 *
 *   corpus DIR      writes DIR/text.txt  (20480 bytes of HTML-like text:
 *                                         /chunks, /gzip10k, /gzipstream)
 *                          DIR/big.bin   (1048576 bytes: /big)
 *
 * The text is words drawn from a fixed vocabulary by a fixed LCG, so it
 * compresses like ordinary prose (about 3x at gzip level 1), and it is the
 * same on every machine. The routes slice it:
 *   /chunks      16 pieces of 1024 bytes: text[0..16384)
 *   /gzip10k     text[0..10240) in one piece
 *   /gzipstream  20 pieces of 1024 bytes: text[0..20480)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_LEN 20480
#define BIG_LEN (1024 * 1024)

static const char *const words[] = {
    "the",     "server",   "module",  "response", "request", "stream", "flush",
    "of",      "and",      "a",       "to",       "in",      "is",     "chunk",
    "header",  "body",     "client",  "kernel",   "socket",  "buffer", "event",
    "loop",    "thread",   "worker",  "latency",  "memory",  "connection",
    "keep",    "alive",    "gzip",    "deflate",  "bytes",   "time",   "with",
    "that",    "for",      "on",      "it",       "as",      "are",    "this",
    "benchmark", "nginx",  "lua",     "library",  "handler", "queue",  "send",
};

static uint32_t state = 12345u;

static uint32_t next_rand(void)
{
    state = state * 1103515245u + 12345u;
    return (state >> 16) & 0x7fff;
}

static int write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    if (fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static char text[TEXT_LEN + 64];
    size_t len = 0;
    size_t nwords = sizeof words / sizeof words[0];
    int in_par = 0, line = 0;

    while (len < TEXT_LEN) {
        char piece[64];
        int n;
        if (!in_par) {
            n = snprintf(piece, sizeof piece, "<p>");
            in_par = 1;
            line = 0;
        } else if (line > 12 && next_rand() % 8 == 0) {
            n = snprintf(piece, sizeof piece, ".</p>\n");
            in_par = 0;
        } else {
            n = snprintf(piece, sizeof piece, "%s%s", line ? " " : "",
                         words[next_rand() % nwords]);
            line++;
        }
        memcpy(text + len, piece, (size_t)n);
        len += (size_t)n;
    }
    text[TEXT_LEN - 1] = '\n';
    if (write_file(argv[1], "text.txt", text, TEXT_LEN) != 0)
        return 1;

    char *big = malloc(BIG_LEN);
    if (big == NULL)
        return 1;
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (char)('a' + next_rand() % 26);
    if (write_file(argv[1], "big.bin", big, BIG_LEN) != 0)
        return 1;
    free(big);
    return 0;
}
