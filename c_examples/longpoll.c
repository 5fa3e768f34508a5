/*
 * longpoll.c - answering later, from a thread of your own.
 *
 *   GET /poll[?ms=N]        the handler returns HTTPSRV_PENDING; after N ms
 *                           (default 500, 0..30000) the module's thread writes
 *                           the answer itself, with a blocking final flush.
 *   GET /poll/async[?ms=N]  the same wait, but the thread only posts a task to
 *                           the session's loop thread (httpsrv_session_post),
 *                           which answers with httpsrv_response_flush_async.
 *
 * Try:  curl -v 'http://127.0.0.1:8080/poll?ms=1000'
 *
 * Who owns what:
 *  - Each waiting request is a `struct waiter` on a list guarded by `mu`.
 *  - The session's close callback (on_close) is the only place that frees a
 *    waiter. It runs exactly once when the session ends, for whatever reason
 *    (answered, client gone, server stopping), on the loop thread.
 *  - The thread takes a due waiter off the list and copies its session
 *    handle before it unlocks; after that it never touches the waiter again.
 *    A session handle is a token, not a pointer: if the session has ended in
 *    the meantime, every call with it just returns ESTALE (or the reason the
 *    session ended), which is harmless.
 *
 * This module keeps its state in globals, so it supports one server per
 * process (init returns EBUSY for a second one).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_condattr_setclock */

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpsrv.h"

const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

void httpsrv_module_fini(httpsrv_server *srv); /* defined at the end, used by init */

struct waiter {
    httpsrv_session *sess;
    struct timespec due; /* CLOCK_MONOTONIC */
    long ms;             /* the delay asked for, for the answer text */
    int async;           /* answer via session_post + flush_async */
    int listed;          /* still on the list (guarded by mu) */
    struct waiter *prev, *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;          /* signalled on a new waiter or stop */
static struct waiter *waiting;       /* guarded by mu */
static int stopping;                 /* guarded by mu */
static int running;                  /* the thread was started */
static pthread_t thread;

/* ---- the waiting list (call with mu held) ---- */

static void list_insert(struct waiter *w)
{
    w->prev = NULL;
    w->next = waiting;
    if (waiting != NULL)
        waiting->prev = w;
    waiting = w;
    w->listed = 1;
}

static void list_remove(struct waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        waiting = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->listed = 0;
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static long query_long(const char *query, const char *key, long def, long lo, long hi)
{
    size_t klen = strlen(key);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        if (end == NULL)
            end = p + strlen(p);
        if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            char *stop;
            long v = strtol(p + klen + 1, &stop, 10);
            if (stop == p + klen + 1 || stop != end)
                return def;
            return v < lo ? lo : v > hi ? hi : v;
        }
        p = *end == '&' ? end + 1 : end;
    }
    return def;
}

static int client_gone(int err)
{
    return err == EPIPE || err == ECONNRESET || err == ETIMEDOUT || err == ECANCELED ||
           err == ESTALE || err == EALREADY;
}

/* Sets status, type and body; the caller flushes. */
static int write_answer(httpsrv_session *sess, long ms, const char *how)
{
    char body[96];
    int len = snprintf(body, sizeof body, "answered after %ld ms (%s)\n", ms, how);
    int err = httpsrv_response_status_set(sess, 200, NULL);
    if (err == 0)
        err = httpsrv_response_header_set(sess, "Content-Type", "text/plain");
    if (err == 0)
        err = httpsrv_response_header_set(sess, "Cache-Control", "no-store");
    if (err == 0)
        err = httpsrv_response_append(sess, body, (size_t)len);
    return err;
}

/* Something other than the client leaving went wrong: log it and end the
 * session (the client's connection is reset) rather than leave it pending. */
static void give_up(httpsrv_session *sess, const char *what, int err)
{
    fprintf(stderr, "longpoll: %s: %s\n", what, httpsrv_strerror(err));
    int aerr = httpsrv_session_abort(sess);
    if (aerr != 0 && !client_gone(aerr))
        fprintf(stderr, "longpoll: abort: %s\n", httpsrv_strerror(aerr));
}

/* ---- callbacks: these run on the session's loop thread, never block ---- */

/* The session ended: drop its waiter (if the thread has not taken it yet)
 * and free it. Nothing uses the waiter after this. */
static void on_close(httpsrv_session *sess, int reason, void *userdata)
{
    struct waiter *w = userdata;
    (void)sess;
    /* reason: 0 answered, EPIPE/ECONNRESET the client left (normal for a
     * long poll), ECANCELED abort or server stop, ETIMEDOUT too slow a client. */
    if (reason == ETIMEDOUT)
        fprintf(stderr, "longpoll: a poll ended: %s\n", httpsrv_strerror(reason));
    pthread_mutex_lock(&mu);
    if (w->listed) {
        list_remove(w);
        pthread_cond_signal(&cond); /* the thread may be waiting for this one */
    }
    pthread_mutex_unlock(&mu);
    free(w);
}

/* flush_async's completion: the bytes reached the kernel, or could not. */
static void async_done(httpsrv_session *sess, int err, uint64_t bytes_sent, void *userdata)
{
    (void)sess;
    (void)userdata;
    (void)bytes_sent;
    if (err != 0 && !client_gone(err))
        fprintf(stderr, "longpoll: async answer failed: %s\n", httpsrv_strerror(err));
    /* After this returns the session ends and on_close runs. */
}

/* Posted by the thread for /poll/async; runs on the loop thread. The delay
 * travels in the userdata pointer itself, so nothing needs freeing. */
static void async_answer(httpsrv_session *sess, void *userdata)
{
    long ms = (long)(intptr_t)userdata;
    int err = write_answer(sess, ms, "session_post + flush_async");
    if (err == 0)
        err = httpsrv_response_flush_async(sess, 1, async_done, NULL);
    if (err != 0 && !client_gone(err))
        give_up(sess, "async answer", err);
}

/* ---- the module's thread ---- */

/* Answers one waiter whose time has come; called without mu held. */
static void answer(httpsrv_session *sess, long ms, int async)
{
    int err;
    if (async) {
        err = httpsrv_session_post(sess, async_answer, (void *)(intptr_t)ms);
    } else {
        /* Not a loop thread, so the final flush blocks until the answer
         * reached the kernel (or the client is gone, or send_timeout_ms).
         * The answer is small, so this is quick; a module sending much more
         * to slow clients would rather use session_post, as /poll/async. */
        err = write_answer(sess, ms, "module thread, blocking flush");
        if (err == 0)
            err = httpsrv_response_flush(sess, 1);
    }
    if (err != 0 && !client_gone(err))
        give_up(sess, async ? "session_post" : "answer", err);
}

static void *poller(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!stopping) {
        /* Find the waiter due first. */
        struct waiter *first = NULL;
        for (struct waiter *w = waiting; w != NULL; w = w->next)
            if (first == NULL || ts_before(&w->due, &first->due))
                first = w;

        if (first == NULL) {
            pthread_cond_wait(&cond, &mu); /* nothing to do: sleep until signalled */
            continue;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (ts_before(&now, &first->due)) {
            /* Not yet. Copy the deadline: on_close may free `first` while we
             * wait (the wait releases mu). */
            struct timespec due = first->due;
            pthread_cond_timedwait(&cond, &mu, &due);
            continue;
        }

        /* Due: take it off the list, copy what we need, then answer it
         * without holding the lock. From here on `first` belongs to on_close
         * alone and may be freed at any moment. */
        list_remove(first);
        httpsrv_session *sess = first->sess;
        long ms = first->ms;
        int async = first->async;
        pthread_mutex_unlock(&mu);
        answer(sess, ms, async);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* ---- the handlers (inline: they only queue the session) ---- */

static int start_poll(httpsrv_session *sess, int async)
{
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -1; /* 500 */
    w->sess = sess;
    w->async = async;
    w->ms = query_long(httpsrv_request_query(sess), "ms", 500, 0, 30000);
    clock_gettime(CLOCK_MONOTONIC, &w->due);
    w->due.tv_sec += w->ms / 1000;
    w->due.tv_nsec += (w->ms % 1000) * 1000000L;
    if (w->due.tv_nsec >= 1000000000L) {
        w->due.tv_sec += 1;
        w->due.tv_nsec -= 1000000000L;
    }

    /* Register the close callback first: from now on it owns `w`. It cannot
     * run before we have listed `w`, because it runs on this same loop
     * thread, which is busy running this handler. */
    int err = httpsrv_session_on_close(sess, on_close, w);
    if (err != 0) {
        free(w);
        if (client_gone(err))
            return HTTPSRV_DONE; /* the client already left */
        fprintf(stderr, "longpoll: on_close: %s\n", httpsrv_strerror(err));
        return -1;
    }

    pthread_mutex_lock(&mu);
    list_insert(w);
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mu);

    /* We keep the session; the thread completes it later. */
    return HTTPSRV_PENDING;
}

static int poll_sync(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    return start_poll(sess, 0);
}

static int poll_async(httpsrv_session *sess, void *userdata)
{
    (void)userdata;
    return start_poll(sess, 1);
}

/* ---- module entry points ---- */

int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    if (running)
        return EBUSY; /* one server per process, see above */

    /* Timed waits use CLOCK_MONOTONIC, so a clock change cannot stall them. */
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);
    if (err == 0)
        err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (err == 0)
        err = pthread_cond_init(&cond, &attr);
    pthread_condattr_destroy(&attr);
    if (err != 0)
        return err;

    stopping = 0;
    err = pthread_create(&thread, NULL, poller, NULL);
    if (err != 0) {
        fprintf(stderr, "longpoll: pthread_create: %s\n", strerror(err));
        pthread_cond_destroy(&cond);
        return err;
    }
    running = 1;

    err = httpsrv_server_route(srv, "GET", "/poll", 0, poll_sync, NULL);
    if (err == 0)
        err = httpsrv_server_route(srv, "GET", "/poll/async", 0, poll_async, NULL);
    if (err != 0) {
        fprintf(stderr, "longpoll: cannot register routes: %s\n", httpsrv_strerror(err));
        httpsrv_module_fini(srv); /* stop the thread again */
    }
    return err;
}

/* Optional: called when the server is freed, after it has stopped. By then
 * every session has ended and its on_close has run, so the list is empty;
 * all that is left is to stop and join the thread. */
void httpsrv_module_fini(httpsrv_server *srv)
{
    (void)srv;
    if (!running)
        return;
    pthread_mutex_lock(&mu);
    stopping = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
    running = 0;
    pthread_cond_destroy(&cond);
    if (waiting != NULL)
        fprintf(stderr, "longpoll: sessions still waiting at fini\n");
}
