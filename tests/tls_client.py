#!/usr/bin/env python3
"""A TLS client for tests/tls.rs, on Python's ssl module (OpenSSL): a real client that is not
rustls. Every output is one JSON line on stdout.

  tls_client.py fingerprint FILE      sha256 of the DER of the first certificate in a PEM file
  tls_client.py hello NAME            a ClientHello for NAME, hex (the bytes a client sends first)
  tls_client.py connect PORT [--sni NAME] [--tls 1.2|1.3]
      handshakes, prints {"event": "connected", version, cipher, alpn, cert (sha256)}, then runs
      commands from stdin, one per line:
        GET PATH   one request on the connection: {"event": "response", status, headers, body,
                   arrivals: [[ms since the request was sent, bytes of the response so far]...]}
        POSTS SIZES [chunked]
                   pipelined POST /t/echo requests, one per comma-separated body size, each
                   body a pattern of its own, sent while the answers are read: {"event": "posts", "ok": N, "failures": [...]}, a request
                   being ok when its answer is 200 and echoes its body exactly
        EOF        reads to the end: {"event": "eof", "clean": true} when the server ended with
                   close_notify, false for a bare TCP end
        QUIT       closes
"""

import hashlib
import json
import socket
import ssl
import sys
import select
import time

TIMEOUT = 15


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def fingerprint(path):
    with open(path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def context(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    # The tests check which certificate was served by its fingerprint.
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    if version == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def hello(name):
    ctx = context(None)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    out({"hello": outgoing.read().hex()})


def read_response(sock, buf, sent_at, arrivals):
    """Reads one response from `sock` (bytes already read in buf[0]); returns (status,
    headers, body)."""
    while True:
        r = parse_response(buf[0])
        if r is not None:
            status, headers, body, took = r
            buf[0] = buf[0][took:]
            return status, headers, body
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection ended mid-response")
        buf[0] += data
        arrivals.append([round((time.monotonic() - sent_at) * 1000, 1), len(buf[0])])


def pattern(size, seed):
    """A body of `size` bytes that differs for every seed and offset."""
    block = hashlib.sha256(b"%d" % seed).digest() * 64
    reps = size // len(block) + 1
    return (block * reps)[:size]


def parse_response(data):
    """One whole response at the start of `data`: (status, headers, body, bytes it took), or
    None while it is incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    at = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            eol = data.find(b"\r\n", at)
            if eol < 0:
                return None
            size = int(data[at:eol].split(b";")[0], 16)
            if len(data) < eol + 2 + size + 2:
                return None
            body += data[eol + 2:eol + 2 + size]
            at = eol + 2 + size + 2
            if size == 0:
                return int(lines[0].split()[1]), headers, body, at
    length = int(headers.get("content-length", "0"))
    if len(data) < at + length:
        return None
    return int(lines[0].split()[1]), headers, data[at:at + length], at + length


def posts(sock, buf, sni, sizes, chunked):
    bodies = [pattern(n, i) for i, n in enumerate(sizes)]
    requests = []
    for body in bodies:
        head = "POST /t/echo HTTP/1.1\r\nHost: %s\r\n" % (sni or "test")
        if chunked:
            data = b""
            for at in range(0, len(body), 7000):
                piece = body[at:at + 7000]
                data += b"%x\r\n" % len(piece) + piece + b"\r\n"
            data += b"0\r\n\r\n"
            head += "Transfer-Encoding: chunked\r\n\r\n"
        else:
            data = body
            head += "Content-Length: %d\r\n\r\n" % len(body)
        requests.append(head.encode() + data)
    wire = b"".join(requests)
    # One thread, non-blocking (an SSL object must not be used by two threads at once): send
    # in pieces of odd sizes, so records and requests do not line up, while reading the
    # echoes, which would otherwise fill both directions' buffers.
    sock.setblocking(False)
    sent, step, inbuf = 0, 5000, buf[0]
    ok, failures, answered = 0, [], 0
    deadline = time.monotonic() + TIMEOUT
    try:
        while answered < len(bodies):
            want_write = sent < len(wire)
            if not sock.pending():
                r, w, _ = select.select([sock], [sock] if want_write else [], [], 1.0)
                if time.monotonic() > deadline:
                    failures.append("timed out after %d answers, %d of %d bytes sent" % (
                        answered, sent, len(wire)))
                    break
            if want_write:
                try:
                    n = sock.send(wire[sent:sent + step])
                    sent += n
                    step = step * 3 % 70001 + 1
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            try:
                data = sock.recv(65536)
                if not data:
                    failures.append("the connection ended after %d answers" % answered)
                    break
                inbuf += data
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            while answered < len(bodies):
                r = parse_response(inbuf)
                if r is None:
                    break
                status, _, got, took = r
                inbuf = inbuf[took:]
                body = bodies[answered]
                if status == 200 and got == body:
                    ok += 1
                else:
                    failures.append("request %d (%d bytes): status %d, %d bytes back%s" % (
                        answered, len(body), status, len(got),
                        ", differing" if len(got) == len(body) else ""))
                answered += 1
    except (OSError, ssl.SSLError) as e:
        failures.append("after %d answers, %d of %d bytes sent: %s" % (
            answered, sent, len(wire), e))
    sock.setblocking(True)
    sock.settimeout(TIMEOUT)
    buf[0] = inbuf
    out({"event": "posts", "ok": ok, "failures": failures})


def connect(port, sni, version):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    ctx = context(version)
    sock = ctx.wrap_socket(raw, server_hostname=sni, suppress_ragged_eofs=False)
    der = sock.getpeercert(binary_form=True)
    out({
        "event": "connected",
        "version": sock.version(),
        "cipher": sock.cipher()[0],
        "alpn": sock.selected_alpn_protocol(),
        "cert": hashlib.sha256(der).hexdigest(),
    })
    buf = [b""]
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "GET":
            request = "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (words[1], sni or "test")
            sent_at = time.monotonic()
            sock.sendall(request.encode())
            arrivals = []
            status, headers, body = read_response(sock, buf, sent_at, arrivals)
            out({
                "event": "response",
                "status": status,
                "headers": headers,
                "body": body.decode("latin-1"),
                "arrivals": arrivals,
            })
        elif words[0] == "POSTS":
            sizes = [int(n) for n in words[1].split(",")]
            posts(sock, buf, sni, sizes, len(words) > 2 and words[2] == "chunked")
        elif words[0] == "EOF":
            clean = True
            try:
                while sock.recv(65536):
                    pass
            except ssl.SSLEOFError:
                clean = False
            except (ssl.SSLError, OSError) as e:
                out({"event": "eof", "clean": False, "error": str(e)})
                continue
            out({"event": "eof", "clean": clean})
        elif words[0] == "QUIT":
            break
    sock.close()


def main():
    args = sys.argv[1:]
    if args[0] == "fingerprint":
        out({"fingerprint": fingerprint(args[1])})
    elif args[0] == "hello":
        hello(args[1])
    elif args[0] == "connect":
        port = int(args[1])
        sni, version = None, None
        i = 2
        while i < len(args):
            if args[i] == "--sni":
                sni = args[i + 1]
            elif args[i] == "--tls":
                version = args[i + 1]
            i += 2
        try:
            connect(port, sni, version)
        except (OSError, ssl.SSLError, EOFError) as e:
            out({"event": "error", "error": "%s: %s" % (type(e).__name__, e)})


if __name__ == "__main__":
    main()
