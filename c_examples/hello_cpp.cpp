// hello_cpp.cpp - a module in C++ with a small RAII wrapper.
//
//   GET /cpp  ->  200, Content-Type: text/plain, body "Hello from C++"
//
// Build: g++ -std=c++17 -Wall -Wextra -Werror -fPIC -shared -I../include -o hello_cpp.so hello_cpp.cpp
//
// Two rules at the C boundary:
//  - No C++ exception may leave a callback: the library is written in Rust
//    and calls handlers through a C ABI, so an exception unwinding into it is
//    undefined behaviour. `route<F>` below catches everything and turns it into
//    a failed response (a 500).
//  - The wrapper reports errors as the library does, as errno values, and
//    throws nothing itself. The header part (namespace httpsrv) could live in
//    its own httpsrv.hpp.
#include <cerrno>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>

#include "httpsrv.h"

namespace httpsrv {

// A non-owning view of a session handle. Copying it is cheap; the handle is a
// token, so even a stale one is safe to use (every call returns ESTALE).
class Session {
public:
    explicit Session(httpsrv_session *s) noexcept : s_(s) {}

    // Request side. Empty when the handle is stale.
    std::string_view method() const noexcept { return str(httpsrv_request_method(s_)); }
    std::string_view path() const noexcept { return str(httpsrv_request_path(s_)); }
    std::string_view query() const noexcept { return str(httpsrv_request_query(s_)); }
    // nullptr when absent.
    const char *header(const char *name) const noexcept { return httpsrv_request_header(s_, name); }

    // Response side: 0 or an errno value, exactly as the C functions.
    [[nodiscard]] int status(int code, const char *reason = nullptr) noexcept
    {
        return httpsrv_response_status_set(s_, code, reason);
    }
    [[nodiscard]] int header(const char *name, const char *value) noexcept
    {
        return httpsrv_response_header_set(s_, name, value);
    }
    [[nodiscard]] int write(std::string_view data) noexcept
    {
        return httpsrv_response_append(s_, data.data(), data.size());
    }
    // On a loop thread (inline routes) EAGAIN only means "still queued".
    [[nodiscard]] int flush(bool final) noexcept { return httpsrv_response_flush(s_, final ? 1 : 0); }

    httpsrv_session *get() const noexcept { return s_; }

private:
    static std::string_view str(const char *p) noexcept { return p ? std::string_view(p) : std::string_view(); }
    httpsrv_session *s_;
};

// A guard that finishes the response (final flush) when it goes out of
// scope, so every normal return sends the closing framing. It does not when
// the scope is left by an exception, or after fail(): a failed handler must
// not complete a wrong response; returning an error lets the library send a
// 500, or cut the connection if part of the response was already sent.
class Response {
public:
    explicit Response(Session s) noexcept : s_(s), exceptions_(std::uncaught_exceptions()) {}
    Response(const Response &) = delete;
    Response &operator=(const Response &) = delete;
    ~Response()
    {
        if (!done_ && std::uncaught_exceptions() == exceptions_)
            (void)finish();
    }

    Session &session() noexcept { return s_; }

    // The final flush now; 0, or EAGAIN on a loop thread (still queued: fine).
    [[nodiscard]] int finish() noexcept
    {
        done_ = true;
        int err = s_.flush(true);
        if (err != 0 && err != EAGAIN)
            std::fprintf(stderr, "hello_cpp: final flush: %s\n", httpsrv_strerror(err));
        return err;
    }

    // Gives up: logs `err`, leaves the response unfinished and returns the
    // handler result that reports a failure.
    int fail(int err) noexcept
    {
        done_ = true;
        std::fprintf(stderr, "hello_cpp: %s\n", httpsrv_strerror(err));
        return -1;
    }

private:
    Session s_;
    int exceptions_;
    bool done_ = false;
};

// Turns `int F(Session &)` into a C handler that lets no exception escape.
// A handler that throws gets a 500 (or a truncated response if it already
// sent something), and the reason is logged.
template <int (*F)(Session &)>
int route(httpsrv_session *sess, void *) noexcept
{
    try {
        Session s(sess);
        return F(s);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "hello_cpp: handler threw: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "hello_cpp: handler threw\n");
    }
    return -1;
}

} // namespace httpsrv

namespace {

// GET /cpp (inline). Builds the body in a std::string only to show that
// allocating code is fine here: a std::bad_alloc would be caught by route<>.
int hello(httpsrv::Session &s)
{
    std::string body = "Hello from ";
    body += "C++";

    httpsrv::Response res(s);
    if (int err = s.header("Content-Type", "text/plain"); err != 0)
        return res.fail(err);
    if (int err = s.write(body); err != 0)
        return res.fail(err);
    return HTTPSRV_DONE; // ~Response sends the final flush on the way out
}

} // namespace

// The module's exports need C linkage (unmangled names). `extern "C"` on a
// single definition also gives the const variable external linkage, which a
// namespace-scope const would not have by default in C++.
extern "C" const unsigned httpsrv_module_abi = HTTPSRV_ABI_VERSION;

extern "C" int httpsrv_module_init(httpsrv_server *srv, const char *args)
{
    (void)args;
    int err = httpsrv_server_route(srv, "GET", "/cpp", 0, httpsrv::route<hello>, nullptr);
    if (err != 0)
        std::fprintf(stderr, "hello_cpp: cannot register GET /cpp: %s\n", httpsrv_strerror(err));
    return err;
}
