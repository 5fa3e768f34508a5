/*
 * host.c - the C test host for httpsrv integration tests.
 *
 * It has no link-time dependency on the library: the library is dlopen()ed
 * with RTLD_NOW|RTLD_GLOBAL (so modules resolve httpsrv_* from it) and every
 * function is resolved with dlsym().
 *
 *   host LIBPATH [--listen ADDR]... [--module PATH[=ARGS]]... [--set K=V]...
 *                [--try-set K=V]... [--logger stdout]
 *                [--tls ADDR,CERT,KEY]... [--try-tls ADDR,CERT,KEY]...
 *                [--cert CERT,KEY]... [--try-cert CERT,KEY]...
 *   host LIBPATH --resolve-all HEADER
 *
 * Output on stdout (one line each, flushed):
 *   SET <key> <value> <rc>        for every --set / --try-set
 *   LISTEN <addr> <rc>            for every listener
 *   LISTEN_TLS <addr> <rc>        for every TLS listener (httpsrv_server_listen_tls)
 *   CERT <cert> <rc>              for every --cert (httpsrv_server_add_certificate)
 *   MODULE <path> <rc>            for every module
 *   START <rc>
 *   PORT <n>                      per listener, in order
 *   READY
 * then commands on stdin, one per line:
 *   stop <grace_ms>   -> STOPPED <rc>
 *   port <index>      -> PORTOF <index> <port>
 *   ping              -> PONG
 *   reload            -> RELOADED <rc>   (httpsrv_server_reload_certificates)
 *   tls ADDR,CERT,KEY -> LISTEN_TLS <addr> <rc>
 *   cert CERT,KEY     -> CERT <cert> <rc>
 *   nofile <n>        -> NOFILE <open> <rc>   (tests only: lowers the soft
 *                        RLIMIT_NOFILE so that n more descriptors than the
 *                        <open> ones now may be opened; rc 0 or an errno)
 * On EOF: stop(0) if not stopped yet (STOPPED <rc>), httpsrv_server_free,
 * dlclose the library, print FREED and exit 0.
 * A failing --set, listen, module load or start prints FAILED <what>, frees
 * everything, prints FREED and exits 1.
 *
 * Options are applied in this order: logger, sets, listens (default
 * 127.0.0.1:0), TLS listeners, certificates, modules, start. Listener indexes
 * (PORT lines) follow that order; a --try-tls that failed has none. With --logger stdout the library's log goes to
 * stdout as "HLOG <level> <message>" lines.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct httpsrv_server httpsrv_server;

typedef httpsrv_server *(*fn_server_new)(void);
typedef int (*fn_server_set)(httpsrv_server *, const char *, const char *);
typedef int (*fn_server_listen)(httpsrv_server *, const char *);
typedef int (*fn_server_port)(const httpsrv_server *, size_t);
typedef int (*fn_server_load_module)(httpsrv_server *, const char *, const char *);
typedef int (*fn_server_start)(httpsrv_server *);
typedef int (*fn_server_stop)(httpsrv_server *, unsigned);
typedef void (*fn_server_free)(httpsrv_server *);
typedef const char *(*fn_strerror)(int);
typedef const char *(*fn_version)(void);
typedef void (*fn_log)(int, const char *, void *);
typedef int (*fn_server_set_logger)(httpsrv_server *, fn_log, void *);
typedef int (*fn_server_listen_tls)(httpsrv_server *, const char *, const char *, const char *);
typedef int (*fn_server_add_certificate)(httpsrv_server *, const char *, const char *);
typedef int (*fn_server_reload_certificates)(httpsrv_server *);

#define MAX_ARGS 64

static void *lib;
static struct {
    fn_server_new server_new;
    fn_server_set server_set;
    fn_server_listen server_listen;
    fn_server_port server_port;
    fn_server_load_module server_load_module;
    fn_server_start server_start;
    fn_server_stop server_stop;
    fn_server_free server_free;
    fn_strerror strerror_;
    fn_version version;
    fn_server_set_logger server_set_logger;
    fn_server_listen_tls server_listen_tls;
    fn_server_add_certificate server_add_certificate;
    fn_server_reload_certificates server_reload_certificates;
} api;

/* "ADDR,CERT,KEY" (listen_tls) or "CERT,KEY" (add_certificate): prints
 * LISTEN_TLS / CERT with the result; -1 for a malformed spec. */
static int tls_call(httpsrv_server *srv, const char *spec, int listen)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", spec);
    buf[strcspn(buf, "\r\n")] = '\0';
    char *parts[3] = {buf, NULL, NULL};
    int want = listen ? 3 : 2;
    for (int i = 1; i < want; i++) {
        char *comma = strchr(parts[i - 1], ',');
        if (!comma) {
            printf("BADSPEC %s\n", spec);
            return -1;
        }
        *comma = '\0';
        parts[i] = comma + 1;
    }
    int rc;
    if (listen) {
        rc = api.server_listen_tls(srv, parts[0], parts[1], parts[2]);
        printf("LISTEN_TLS %s %d\n", parts[0], rc);
    } else {
        rc = api.server_add_certificate(srv, parts[0], parts[1]);
        printf("CERT %s %d\n", parts[0], rc);
    }
    fflush(stdout);
    return rc;
}

/* --logger stdout: library log messages as "HLOG <level> <message>" lines on stdout */
static void log_to_stdout(int level, const char *message, void *ud)
{
    (void)ud;
    printf("HLOG %d %s\n", level, message ? message : "(null)");
    fflush(stdout);
}

static void *must_sym(const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        printf("MISSING %s\n", name);
        fflush(stdout);
        fprintf(stderr, "host: dlsym(%s): %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

/* Function pointers cannot be assigned from void * in ISO C without a
 * diagnostic; copy the bits instead. */
#define RESOLVE(field, name)                                   \
    do {                                                       \
        void *sym_ = must_sym(name);                           \
        memcpy(&api.field, &sym_, sizeof(api.field));          \
    } while (0)

static void strip_comments(char *s)
{
    char *r = s, *w = s;
    while (*r) {
        if (r[0] == '/' && r[1] == '*') {
            char *e = strstr(r + 2, "*/");
            if (!e) break;
            r = e + 2;
            *w++ = ' ';
        } else if (r[0] == '/' && r[1] == '/') {
            while (*r && *r != '\n') r++;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

static int resolve_all(const char *header)
{
    FILE *f = fopen(header, "rb");
    if (!f) {
        printf("NOHEADER %s %d\n", header, errno);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return 1; }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            if (cap > (64u << 20)) break; /* bounded: headers are small */
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return 1; }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        if (n == 0) break;
        len += n;
    }
    fclose(f);
    buf[len] = '\0';
    strip_comments(buf);

    int found = 0, missing = 0;
    char seen[512][96];
    int nseen = 0;
    for (char *p = buf; (p = strstr(p, "httpsrv_")) != NULL;) {
        /* must start an identifier */
        if (p > buf) {
            char c = p[-1];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
                p += 8;
                continue;
            }
        }
        char *e = p + 8;
        while ((*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9') || *e == '_') e++;
        size_t nlen = (size_t)(e - p);
        char *q = e;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q == '(' && nlen > 8 && nlen < 96 && !((*e >= 'A' && *e <= 'Z'))) {
            char name[96];
            memcpy(name, p, nlen);
            name[nlen] = '\0';
            int dup = 0;
            for (int i = 0; i < nseen; i++)
                if (strcmp(seen[i], name) == 0) dup = 1;
            if (!dup && nseen < 512) {
                strcpy(seen[nseen++], name);
                if (strncmp(name, "httpsrv_module_", 15) == 0) {
                    /* exported by modules, not by the library */
                    printf("SKIP %s\n", name);
                } else if (dlsym(lib, name)) {
                    printf("OK %s\n", name);
                    found++;
                } else {
                    printf("MISSING %s\n", name);
                    missing++;
                }
            }
        }
        p = e;
    }
    free(buf);
    printf("RESOLVED %d MISSING %d\n", found, missing);
    fflush(stdout);
    return (missing == 0 && found > 0) ? 0 : 1;
}

/* descriptors open in this process, or -1 */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* nofile <n>: at most n descriptors more than are open now */
static void limit_fds(unsigned long more)
{
    long open = open_fds();
    int rc = EINVAL;
    struct rlimit rl;
    if (open >= 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = (rlim_t)open + (rlim_t)more;
        rc = setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : errno;
    }
    printf("NOFILE %ld %d\n", open, rc);
}

static void finish(httpsrv_server *srv, int stopped, int code)
{
    if (srv) {
        if (!stopped) {
            int rc = api.server_stop(srv, 0);
            printf("STOPPED %d\n", rc);
            fflush(stdout);
        }
        api.server_free(srv);
    }
    if (dlclose(lib) != 0) {
        printf("DLCLOSE_FAILED %s\n", dlerror());
        fflush(stdout);
        exit(3);
    }
    printf("FREED\n");
    fflush(stdout);
    exit(code);
}

int main(int argc, char **argv)
{
    /* Prove that the library never raises SIGPIPE: keep its default action
     * (terminate) instead of inheriting whatever the parent set. */
    signal(SIGPIPE, SIG_DFL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (argc < 2) {
        fprintf(stderr, "usage: %s LIBPATH [--listen ADDR]... [--module PATH[=ARGS]]... [--set K=V]...\n"
                        "       %s LIBPATH --resolve-all HEADER\n", argv[0], argv[0]);
        return 2;
    }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        printf("DLOPEN_FAILED %s\n", dlerror());
        return 2;
    }

    const char *listens[MAX_ARGS], *modules[MAX_ARGS], *sets[MAX_ARGS];
    const char *tlss[MAX_ARGS], *certs[MAX_ARGS];
    int set_try[MAX_ARGS], tls_try[MAX_ARGS], cert_try[MAX_ARGS];
    int nl = 0, nm = 0, ns = 0, nt = 0, nc = 0, logger = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "host: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--resolve-all") == 0) {
            int rc = resolve_all(v);
            dlclose(lib);
            return rc;
        } else if (strcmp(a, "--logger") == 0) {
            logger = strcmp(v, "stdout") == 0;
        } else if (strcmp(a, "--listen") == 0 && nl < MAX_ARGS) {
            listens[nl++] = v;
        } else if (strcmp(a, "--module") == 0 && nm < MAX_ARGS) {
            modules[nm++] = v;
        } else if ((strcmp(a, "--tls") == 0 || strcmp(a, "--try-tls") == 0) && nt < MAX_ARGS) {
            tls_try[nt] = strcmp(a, "--try-tls") == 0;
            tlss[nt++] = v;
        } else if ((strcmp(a, "--cert") == 0 || strcmp(a, "--try-cert") == 0) && nc < MAX_ARGS) {
            cert_try[nc] = strcmp(a, "--try-cert") == 0;
            certs[nc++] = v;
        } else if ((strcmp(a, "--set") == 0 || strcmp(a, "--try-set") == 0) && ns < MAX_ARGS) {
            set_try[ns] = strcmp(a, "--try-set") == 0;
            sets[ns++] = v;
        } else {
            fprintf(stderr, "host: bad argument %s\n", a);
            return 2;
        }
    }

    RESOLVE(server_new, "httpsrv_server_new");
    RESOLVE(server_set, "httpsrv_server_set");
    RESOLVE(server_listen, "httpsrv_server_listen");
    RESOLVE(server_port, "httpsrv_server_port");
    RESOLVE(server_load_module, "httpsrv_server_load_module");
    RESOLVE(server_start, "httpsrv_server_start");
    RESOLVE(server_stop, "httpsrv_server_stop");
    RESOLVE(server_free, "httpsrv_server_free");
    RESOLVE(strerror_, "httpsrv_strerror");
    RESOLVE(version, "httpsrv_version");
    RESOLVE(server_set_logger, "httpsrv_server_set_logger");
    RESOLVE(server_listen_tls, "httpsrv_server_listen_tls");
    RESOLVE(server_add_certificate, "httpsrv_server_add_certificate");
    RESOLVE(server_reload_certificates, "httpsrv_server_reload_certificates");

    const char *ver = api.version();
    printf("VERSION %s\n", ver ? ver : "(null)");

    httpsrv_server *srv = api.server_new();
    if (!srv) {
        printf("FAILED server_new\n");
        finish(NULL, 1, 1);
    }

    if (logger) {
        int rc = api.server_set_logger(srv, log_to_stdout, NULL);
        printf("LOGGER %d\n", rc);
    }

    for (int i = 0; i < ns; i++) {
        char kv[1024];
        snprintf(kv, sizeof kv, "%s", sets[i]);
        char *eq = strchr(kv, '=');
        if (!eq) {
            printf("FAILED set %s\n", kv);
            finish(srv, 1, 1);
        }
        *eq = '\0';
        int rc = api.server_set(srv, kv, eq + 1);
        printf("SET %s %s %d\n", kv, eq + 1, rc);
        if (rc != 0 && !set_try[i]) {
            const char *msg = api.strerror_(rc);
            printf("FAILED set %s: %s\n", kv, msg ? msg : "(null)");
            finish(srv, 1, 1);
        }
    }

    if (nl == 0) listens[nl++] = "127.0.0.1:0";
    for (int i = 0; i < nl; i++) {
        int rc = api.server_listen(srv, listens[i]);
        printf("LISTEN %s %d\n", listens[i], rc);
        if (rc != 0) {
            printf("FAILED listen %s\n", listens[i]);
            finish(srv, 1, 1);
        }
    }

    int nports = nl;
    for (int i = 0; i < nt; i++) {
        int rc = tls_call(srv, tlss[i], 1);
        if (rc == 0) {
            nports++;
        } else if (!tls_try[i]) {
            printf("FAILED listen_tls %s\n", tlss[i]);
            finish(srv, 1, 1);
        }
    }
    for (int i = 0; i < nc; i++) {
        int rc = tls_call(srv, certs[i], 0);
        if (rc != 0 && !cert_try[i]) {
            printf("FAILED cert %s\n", certs[i]);
            finish(srv, 1, 1);
        }
    }

    for (int i = 0; i < nm; i++) {
        char spec[4096];
        snprintf(spec, sizeof spec, "%s", modules[i]);
        char *eq = strchr(spec, '=');
        const char *args = NULL;
        if (eq) {
            *eq = '\0';
            args = eq + 1;
        }
        int rc = api.server_load_module(srv, spec, args);
        printf("MODULE %s %d\n", spec, rc);
        if (rc != 0) {
            const char *msg = api.strerror_(rc);
            printf("FAILED module %s: %s\n", spec, msg ? msg : "(null)");
            finish(srv, 1, 1);
        }
    }

    int rc = api.server_start(srv);
    printf("START %d\n", rc);
    if (rc != 0) {
        printf("FAILED start\n");
        finish(srv, 1, 1);
    }
    for (int i = 0; i < nports; i++) printf("PORT %d\n", api.server_port(srv, (size_t)i));
    printf("READY\n");
    fflush(stdout);

    int stopped = 0;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        unsigned long v = 0;
        if (sscanf(line, "stop %lu", &v) == 1) {
            int r = api.server_stop(srv, (unsigned)v);
            stopped = 1;
            printf("STOPPED %d\n", r);
        } else if (sscanf(line, "port %lu", &v) == 1) {
            printf("PORTOF %lu %d\n", v, api.server_port(srv, (size_t)v));
        } else if (line[0] == '\n' || line[0] == '\0') {
            continue;
        } else if (sscanf(line, "nofile %lu", &v) == 1) {
            limit_fds(v);
        } else if (strncmp(line, "ping", 4) == 0) {
            printf("PONG\n");
        } else if (strncmp(line, "reload", 6) == 0) {
            printf("RELOADED %d\n", api.server_reload_certificates(srv));
        } else if (strncmp(line, "tls ", 4) == 0) {
            tls_call(srv, line + 4, 1);
        } else if (strncmp(line, "cert ", 5) == 0) {
            tls_call(srv, line + 5, 0);
        } else {
            printf("UNKNOWN\n");
        }
        fflush(stdout);
    }
    finish(srv, stopped, 0);
    return 0;
}
