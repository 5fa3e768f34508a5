//! Property tests (proptest) of the request and response paths:
//!
//! 1. A valid pipeline of requests, cut into random pieces on a real socket, gets exactly the
//!    responses it gets when sent in one write.
//! 2. The chunked decoder agrees with a simple non-incremental reference decoder on random
//!    (valid, mutated and truncated) input, however the input is split.
//! 3. Random append / flush / final sequences on a `Response` always produce a correctly framed
//!    message whose body is the appended bytes, and every flush is decodable on its own.
//!
//! No failure persistence: a regression file would land in the work tree. Case counts are kept
//! small enough for the normal test suite; PROPTEST_CASES raises them for a longer run.

#[path = "common/chunked_reference.rs"]
mod chunked_reference;
mod common;

use chunked_reference::*;
use common::*;
use httpsrv::http::compress::{Coding, CompressorPool};
use httpsrv::http::outqueue::OutQueue;
use httpsrv::http::response::{Context, Response};
use httpsrv::io::{Memory, MemoryPeer, Transport};
use httpsrv::proto::h1::chunked::ChunkedDecoder;
use httpsrv::proto::h1::{self, ResponseEncoder};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}

fn esc(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. random splits of a valid pipeline

/// One request of a pipeline and whether it is a HEAD (for reading its response).
#[derive(Clone, Debug)]
struct Req {
    bytes: Vec<u8>,
    head: bool,
}

fn req(bytes: impl Into<Vec<u8>>) -> Req {
    let bytes = bytes.into();
    Req {
        head: bytes.starts_with(b"HEAD "),
        bytes,
    }
}

/// A chunked encoding of `body` cut at the given sizes, with optional extensions and trailer.
fn chunk_body(body: &[u8], cuts: &[usize], ext: bool, trailer: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut cuts = cuts.iter().copied().filter(|&c| c > 0).cycle();
    while pos < body.len() {
        let n = cuts.next().unwrap_or(body.len()).min(body.len() - pos);
        out.extend_from_slice(format!("{n:X}").as_bytes());
        if ext {
            out.extend_from_slice(b";e=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body[pos..pos + n]);
        out.extend_from_slice(b"\r\n");
        pos += n;
    }
    out.extend_from_slice(b"0\r\n");
    if trailer {
        out.extend_from_slice(b"X-Sum: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn pipeline_request() -> impl Strategy<Value = Req> {
    prop_oneof![
        Just(req(&b"GET /t/hello HTTP/1.1\r\nHost: x\r\n\r\n"[..])),
        Just(req(&b"HEAD /t/hello HTTP/1.1\r\nHost: x\r\n\r\n"[..])),
        Just(req(
            &b"GET http://x/t/hello?q HTTP/1.1\r\nHost: x\r\n\r\n"[..]
        )),
        Just(req(&b"GET /t/nope HTTP/1.1\r\nHost: x\r\n\r\n"[..])),
        Just(req(&b"DELETE /t/method HTTP/1.1\r\nHost: x\r\n\r\n"[..])),
        Just(req(
            &b"PUT /t/method HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..]
        )),
        Just(req(
            &b"GET /t/prefix/long/a HTTP/1.1\r\nHost: x\r\n\r\n"[..]
        )),
        (0u32..4, 1u32..40).prop_map(|(n, s)| req(format!(
            "GET /t/stream?n={n}&size={s} HTTP/1.1\r\nHost: x\r\n\r\n"
        ))),
        (0u32..300).prop_map(|n| req(format!(
            "GET /t/length?n={n} HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
            "f".repeat(n as usize % 17)
        ))),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|body| {
            let mut r = format!(
                "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            req(r)
        }),
        (
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(1usize..100, 1..5),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(body, cuts, ext, trailer)| {
                let mut r =
                    b"POST /t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                        .to_vec();
                r.extend_from_slice(&chunk_body(&body, &cuts, ext, trailer));
                req(r)
            }),
    ]
}

/// Date changes every second; everything else of a response is deterministic.
fn normalize(raw: &[u8], head_len: usize) -> Vec<u8> {
    let head = String::from_utf8_lossy(&raw[..head_len]);
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("date:") {
                "Date: <date>".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(&raw[head_len..]);
    out
}

/// Sends `pieces` on a fresh connection (TCP_NODELAY, a short pause between writes so the
/// server reads them separately) and reads one response per request.
fn exchange(port: u16, reqs: &[Req], pieces: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
    let mut c = Conn::open(port);
    c.stream.set_nodelay(true).unwrap();
    for (i, p) in pieces.iter().enumerate() {
        c.stream
            .write_all(p)
            .map_err(|e| format!("write of piece {i}: {e}"))?;
        if i + 1 < pieces.len() {
            thread::sleep(Duration::from_micros(700));
        }
    }
    let mut out = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let resp = c
            .try_read_response(r.head, Duration::from_secs(15))
            .map_err(|e| format!("response {i}: {e}"))?;
        out.push(normalize(&resp.raw, resp.head_len));
    }
    // Nothing more: one response per request.
    c.read_some(Duration::from_millis(20));
    if !c.buf.is_empty() {
        return Err(format!("extra bytes: {}", esc(&c.buf)));
    }
    Ok(out)
}

#[test]
fn random_splits_of_a_pipeline_give_identical_responses() {
    let srv = Server::start();
    let port = srv.port();
    let strategy = (
        prop::collection::vec(pipeline_request(), 1..8),
        prop::collection::vec(any::<prop::sample::Index>(), 1..40),
    );
    let mut runner = TestRunner::new(config(40));
    let result = runner.run(&strategy, |(reqs, cut_at)| {
        let all: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.iter().copied()).collect();
        let reference = exchange(port, &reqs, &[&all]).map_err(TestCaseError::fail)?;
        // Random cut points, a few of them deliberately at or next to request boundaries.
        let mut cuts: Vec<usize> = cut_at.iter().map(|i| i.index(all.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([all.len()]) {
            if c > prev {
                pieces.push(&all[prev..c]);
                prev = c;
            }
        }
        let split = exchange(port, &reqs, &pieces).map_err(TestCaseError::fail)?;
        for (i, (a, b)) in reference.iter().zip(&split).enumerate() {
            prop_assert!(
                a == b,
                "response {i} differs when the pipeline is split at {:?}:\nwhole: {}\nsplit: {}",
                pieces.iter().map(|p| p.len()).collect::<Vec<_>>(),
                esc(a),
                esc(b)
            );
        }
        // One byte per write, too, now and then.
        if all.len() < 600 && reqs.len() % 3 == 0 {
            let bytes: Vec<&[u8]> = all.chunks(1).collect();
            let bytewise = exchange(port, &reqs, &bytes).map_err(TestCaseError::fail)?;
            prop_assert!(reference == bytewise, "byte-at-a-time responses differ");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // No refusal happened on the way (every request was valid).
    let log = srv.log();
    assert!(!log.contains("close status"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// 2. the chunked decoder against a reference

/// Feeds `input` to a fresh decoder in pieces of the given sizes (cycled; empty: one piece),
/// checking the per-call contract.
fn feed(input: &[u8], max: u64, pieces: &[usize]) -> Result<Outcome, String> {
    let mut dec = ChunkedDecoder::new(max);
    let mut body = Vec::new();
    let mut pos = 0;
    let mut sizes = pieces.iter().copied().filter(|&s| s > 0).cycle();
    loop {
        let n = sizes.next().unwrap_or(input.len()).min(input.len() - pos);
        match dec.decode(&input[pos..pos + n], &mut body) {
            Err(e) => {
                if dec.decode(b"0\r\n\r\n", &mut body) != Err(e) {
                    return Err("an error did not stick".into());
                }
                return Ok(Outcome::Error(e.status));
            }
            Ok((used, true)) => {
                if used > n || !dec.is_done() {
                    return Err(format!("done after using {used} of {n}"));
                }
                if dec.decode(b"1\r\nx\r\n0\r\n\r\n", &mut body) != Ok((0, true)) {
                    return Err("a finished decoder took more input".into());
                }
                if dec.body_len() != body.len() as u64 {
                    return Err(format!("body_len {} != {}", dec.body_len(), body.len()));
                }
                return Ok(Outcome::Done(pos + used, body));
            }
            Ok((used, false)) => {
                if used != n {
                    return Err(format!("an unfinished call used {used} of {n}"));
                }
                pos += n;
                if pos == input.len() {
                    return Ok(Outcome::Incomplete);
                }
            }
        }
    }
}

fn size_line(n: usize) -> impl Strategy<Value = Vec<u8>> {
    (
        0usize..3,
        any::<bool>(),
        prop_oneof![
            6 => Just(String::new()),
            2 => Just(";a".to_string()),
            2 => Just(";a=b".to_string()),
            1 => Just(";a=\"q;x y\"".to_string()),
            1 => Just(" ;x".to_string()),
            1 => Just("\t ;y=z".to_string()),
            1 => Just("; a = \"x\\\"y\\\\\" ;b\t; c=d".to_string()),
            1 => Just(";a=\"\";b=\"\tcaf\u{e9}\"".to_string()),
            // Around the bound of the size line.
            1 => (4080usize..4100).prop_map(|l| format!(";{}", "e".repeat(l))),
        ],
    )
        .prop_map(move |(zeros, upper, ext)| {
            let digits = if upper {
                format!("{n:X}")
            } else {
                format!("{n:x}")
            };
            format!("{}{digits}{ext}\r\n", "0".repeat(zeros)).into_bytes()
        })
}

fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..40).prop_flat_map(|data| {
        size_line(data.len()).prop_map(move |mut line| {
            line.extend_from_slice(&data);
            line.extend_from_slice(b"\r\n");
            line
        })
    })
}

fn trailer_section() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}", "[ -~\t]{0,20}"), 0..3)
            .prop_map(|fields| {
                let mut t = Vec::new();
                for (n, v) in fields {
                    t.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
                }
                t.extend_from_slice(b"\r\n");
                t
            }),
        // Around the bound of the trailer section (one field plus the final CRLF).
        1 => (16370usize..16390).prop_map(|len| {
            let mut t = b"X-Big: ".to_vec();
            t.resize(len - 4, b'v');
            t.extend_from_slice(b"\r\n\r\n");
            t
        }),
    ]
}

/// A valid chunked stream followed by a few bytes of whatever comes next.
fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(chunk(), 0..5),
        size_line(0),
        trailer_section(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(chunks, last, trailer, tail)| {
            let mut s = chunks.concat();
            s.extend_from_slice(&last);
            s.extend_from_slice(&trailer);
            s.extend_from_slice(&tail);
            s
        })
}

const INTERESTING: &[u8] = b"0123456789abcdefABCDEFgxX+-_ ;\t\r\n:=\"\x00\x7f\x80\xff";

/// Valid streams, mutated, truncated, or random bytes.
fn chunked_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => valid_stream(),
        4 => (
            valid_stream(),
            prop::collection::vec(
                (any::<prop::sample::Index>(), prop::sample::select(INTERESTING.to_vec()), 0u8..3),
                1..4
            ),
        )
            .prop_map(|(mut s, edits)| {
                for (at, byte, kind) in edits {
                    if s.is_empty() {
                        s.push(byte);
                        continue;
                    }
                    let i = at.index(s.len());
                    match kind {
                        0 => s[i] = byte,
                        1 => s.insert(i, byte),
                        _ => {
                            s.remove(i);
                        }
                    }
                }
                s
            }),
        1 => (valid_stream(), any::<prop::sample::Index>())
            .prop_map(|(s, at)| s[..at.index(s.len() + 1)].to_vec()),
        1 => prop::collection::vec(prop::sample::select(INTERESTING.to_vec()), 0..60),
    ]
}

#[test]
fn chunked_decoder_agrees_with_reference() {
    let strategy = (
        chunked_input(),
        prop::sample::select(vec![u64::MAX, 0, 1, 16, 100, 1000, 1 << 20]),
        prop::collection::vec(1usize..24, 0..6),
    );
    let mut runner = TestRunner::new(config(2000));
    let result = runner.run(&strategy, |(input, max, pieces)| {
        let want = reference(&input, max);
        let whole = feed(&input, max, &[]).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&whole, &want, "whole input vs reference: {}", esc(&input));
        let bytewise = feed(&input, max, &[1]).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&bytewise, &want, "one byte per call: {}", esc(&input));
        let split = feed(&input, max, &pieces).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&split, &want, "pieces {:?}: {}", pieces, esc(&input));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The reference itself, on hand-written cases (so a shared misreading of the RFC shows).
#[test]
fn chunked_reference_known_cases() {
    use Outcome::*;
    let m = u64::MAX;
    let cases: &[(&[u8], u64, Outcome)] = &[
        (b"5\r\nhello\r\n0\r\n\r\n", m, Done(15, b"hello".to_vec())),
        (
            b"5\r\nhello\r\n0\r\n\r\nGET",
            m,
            Done(15, b"hello".to_vec()),
        ),
        (
            b"5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n",
            m,
            Done(25, b"hello".to_vec()),
        ),
        (
            b"5 ;a\r\nhello\r\n0\r\n\r\n",
            m,
            Done(18, b"hello".to_vec()),
        ),
        (b"5 \r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (
            b"5; a = \"x\\\"y\" ;b\r\nhello\r\n0\r\n\r\n",
            m,
            Done(30, b"hello".to_vec()),
        ),
        (b"5;\r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"5;=\r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"5; \r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"5;a \r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"5;a=\r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"5;a=\"x\r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"5;a=\"x", m, Incomplete),
        (b"0x5\r\nhello\r\n0\r\n\r\n", m, Error(400)),
        (b"+5\r\n", m, Error(400)),
        (b"5\nhello", m, Error(400)),
        (b"5\r\nhello\n", m, Error(400)),
        (b"10000000000000000\r\n", m, Error(400)),
        (b"ffffffffffffffff\r\n", m, Incomplete),
        (b"ffffffffffffffff\r\n", m - 1, Error(413)),
        (b"6\r\n", 5, Error(413)),
        (b"5\r\nhello\r\n1\r\n", 5, Error(413)),
        (b"5\r\nhel", m, Incomplete),
        (b"0\r\n\r", m, Incomplete),
        (b"0\r\nX : v\r\n\r\n", m, Error(400)),
        (b"0\r\nX: a\r\n b\r\n\r\n", m, Error(400)),
    ];
    for (input, max, want) in cases {
        assert_eq!(&reference(input, *max), want, "{}", esc(input));
        assert_eq!(&feed(input, *max, &[]).unwrap(), want, "{}", esc(input));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. append / flush / final sequences produce a correctly framed body

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<u8>),
    Flush,
}

#[derive(Clone, Debug)]
struct Setup {
    version: u8,
    http10_buffering: bool,
    keep_alive: bool,
    coding: Option<Coding>,
    min_length: usize,
    declare_length: bool,
    level: u32,
    is_head: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop::sample::select(vec![10u8, 11, 11]),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![None, Some(Coding::Gzip), Some(Coding::Deflate)]),
        prop::sample::select(vec![0usize, 20, 256]),
        prop::sample::select(vec![false, false, true]),
        prop::sample::select(vec![1u32, 6, 9]),
        prop::sample::select(vec![false, false, false, false, false, true]),
    )
        .prop_map(
            |(
                version,
                http10_buffering,
                keep_alive,
                coding,
                min_length,
                declare_length,
                level,
                is_head,
            )| {
                Setup {
                    version,
                    http10_buffering,
                    keep_alive,
                    coding,
                    min_length,
                    declare_length,
                    level,
                    is_head,
                }
            },
        )
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..400).prop_map(Op::Append),
            1 => prop::collection::vec(prop::sample::select(b"ab\r\n0".to_vec()), 0..50)
                .prop_map(Op::Append),
            2 => Just(Op::Flush),
        ],
        0..12,
    )
}

/// What the client holds: everything the OutQueue handed to a transport so far. The transport
/// takes at most 64 KiB per write, as a socket's buffer would.
struct Wire {
    transport: Transport,
    peer: MemoryPeer,
    got: Vec<u8>,
}

impl Wire {
    fn new() -> Wire {
        let (transport, peer) = Memory::pair();
        Wire {
            transport: Transport::Memory(transport),
            peer,
            got: Vec::new(),
        }
    }
    fn drain(&mut self, q: &mut OutQueue) {
        for _ in 0..100_000 {
            self.peer.set_window(Some(64 * 1024));
            self.transport.write(q).unwrap();
            self.got.extend_from_slice(&self.peer.take_output());
            if q.is_empty() {
                return;
            }
        }
        panic!("the queue never drained");
    }
}

/// The body bytes carried so far by a (possibly unfinished) message: de-chunked when chunked.
/// Err when the framing is broken; `complete` says whether the chunked body was terminated.
fn body_so_far(rest: &[u8], chunked: bool) -> Result<(Vec<u8>, bool), String> {
    if !chunked {
        return Ok((rest.to_vec(), false));
    }
    let mut body = Vec::new();
    let mut p = 0;
    loop {
        if p == rest.len() {
            return Ok((body, false));
        }
        let le = rest[p..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk-size line cut in the middle")?;
        let line = std::str::from_utf8(&rest[p..p + le]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(line, 16).map_err(|_| format!("chunk size {line:?}"))?;
        p += le + 2;
        if size == 0 {
            if &rest[p..] != b"\r\n" {
                return Err(format!("after the last chunk: {}", esc(&rest[p..])));
            }
            return Ok((body, true));
        }
        if rest.len() < p + size + 2 || &rest[p + size..p + size + 2] != b"\r\n" {
            return Err("a chunk cut in the middle".into());
        }
        body.extend_from_slice(&rest[p..p + size]);
        p += size + 2;
    }
}

/// Decompresses everything decodable from a (possibly unfinished) stream.
fn inflate(coding: Option<&str>, data: &[u8], finished: bool) -> Result<Vec<u8>, String> {
    use flate2::{Decompress, FlushDecompress};
    let (raw, skip) = match coding {
        None => return Ok(data.to_vec()),
        Some("gzip") => (true, 10),
        Some("deflate") => (false, 0),
        Some(c) => return Err(format!("Content-Encoding {c}")),
    };
    if finished {
        let mut out = Vec::new();
        let r = if raw {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out)
        } else {
            flate2::read::ZlibDecoder::new(data).read_to_end(&mut out)
        };
        r.map_err(|e| format!("finished stream does not decode: {e}"))?;
        return Ok(out);
    }
    if data.len() < skip {
        return Ok(Vec::new());
    }
    let mut d = Decompress::new(!raw);
    let mut out = Vec::with_capacity(data.len() * 4 + 1024);
    let input = &data[skip..];
    let mut pos = 0;
    for _ in 0..10_000 {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let before = d.total_in();
        d.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
            .map_err(|e| e.to_string())?;
        pos += (d.total_in() - before) as usize;
        if pos == input.len() && out.capacity() > out.len() {
            return Ok(out);
        }
    }
    Err("inflate did not finish".into())
}

/// Runs one sequence. `pool` is shared by every case, as a loop's pool is shared by its
/// responses, so deflate states are reused across codings and levels.
fn check_sequence(s: &Setup, ops: &[Op], pool: &CompressorPool) -> Result<(), String> {
    let types = vec!["text/plain".to_string()];
    let cx = Context {
        version: s.version,
        is_head: s.is_head,
        keep_alive: s.keep_alive,
        accepts: s.coding,
        http10_buffering: s.http10_buffering,
        compression: true,
        compression_level: s.level,
        compression_min_length: s.min_length,
        compression_types: &types,
        server_header: "httpsrv",
        compressors: pool,
    };
    let total: usize = ops
        .iter()
        .map(|o| match o {
            Op::Append(d) => d.len(),
            Op::Flush => 0,
        })
        .sum();
    let mut resp = Response::default();
    let mut encoder = ResponseEncoder::default();
    resp.set_header(b"Content-Type", b"text/plain").unwrap();
    if s.declare_length {
        resp.set_header(b"Content-Length", total.to_string().as_bytes())
            .unwrap();
    }
    let mut q = OutQueue::default();
    let mut wire = Wire::new();
    let mut appended = Vec::new();
    let buffered_10 = s.version == 10 && s.http10_buffering;
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Append(d) => {
                resp.append(d, q.len(), usize::MAX)
                    .map_err(|e| format!("append {i}: {e}"))?;
                appended.extend_from_slice(d);
            }
            Op::Flush => {
                h1::flush(&mut resp, &mut encoder, false, &cx, &mut q)
                    .map_err(|e| format!("flush {i}: {e}"))?;
                wire.drain(&mut q);
                if buffered_10 {
                    if !wire.got.is_empty() {
                        return Err("HTTP/1.0 buffering sent bytes before the final flush".into());
                    }
                    continue;
                }
                // Every flush is decodable on its own: what arrived so far carries exactly the
                // body appended so far.
                let Some(he) = wire.got.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return Err(format!("flush {i}: no complete head: {}", esc(&wire.got)));
                };
                let (head, rest) = wire.got.split_at(he + 4);
                if s.is_head {
                    if !rest.is_empty() {
                        return Err(format!("flush {i}: body bytes for HEAD: {}", esc(rest)));
                    }
                    continue;
                }
                // The head alone, read as if no body followed.
                let head_only = parse_response(head, true, false)
                    .map_err(|e| format!("flush {i}: {e}"))?
                    .ok_or_else(|| format!("flush {i}: incomplete head"))?;
                let chunked = head_only.header("Transfer-Encoding").is_some();
                let (framed, complete) =
                    body_so_far(rest, chunked).map_err(|e| format!("flush {i}: {e}"))?;
                if complete {
                    return Err(format!("flush {i}: the last chunk before the final flush"));
                }
                let decoded = inflate(head_only.header("Content-Encoding"), &framed, false)
                    .map_err(|e| format!("flush {i}: {e}"))?;
                if decoded != appended {
                    return Err(format!(
                        "flush {i}: the client can decode {} of the {} bytes appended so far",
                        decoded.len(),
                        appended.len()
                    ));
                }
            }
        }
    }
    h1::flush(&mut resp, &mut encoder, true, &cx, &mut q)
        .map_err(|e| format!("final flush: {e}"))?;
    wire.drain(&mut q);
    if resp.append(b"x", 0, usize::MAX).is_ok()
        || h1::flush(&mut resp, &mut encoder, true, &cx, &mut q).is_ok()
    {
        return Err("append or flush accepted after the final flush".into());
    }

    let out = &wire.got;
    if s.is_head {
        let r = parse_response(out, true, true)
            .map_err(|e| format!("HEAD: {e}"))?
            .ok_or("HEAD: incomplete head")?;
        if r.raw.len() != out.len() {
            return Err(format!("HEAD: body bytes {}", esc(&out[r.raw.len()..])));
        }
        if r.header("Content-Encoding").is_none() {
            if let Some(cl) = r.header("Content-Length") {
                if cl != appended.len().to_string() {
                    return Err(format!(
                        "HEAD: Content-Length {cl}, GET would send {}",
                        appended.len()
                    ));
                }
            }
        }
        return Ok(());
    }
    let close_delimited = s.version == 10 && !s.http10_buffering && !encoder.keep_alive();
    let r = parse_response(out, false, true)
        .map_err(|e| format!("final message: {e}: {}", esc(out)))?
        .ok_or_else(|| format!("final message incomplete: {}", esc(out)))?;
    if r.raw.len() != out.len() {
        return Err(format!(
            "{} bytes after the message: {}",
            out.len() - r.raw.len(),
            esc(&out[r.raw.len()..])
        ));
    }
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    if r.has("Content-Length") && r.has("Transfer-Encoding") {
        return Err(format!(
            "both Content-Length and Transfer-Encoding:\n{}",
            r.head_text()
        ));
    }
    if r.header_all("Content-Length").len() > 1 || r.header_all("Transfer-Encoding").len() > 1 {
        return Err(format!("a framing field twice:\n{}", r.head_text()));
    }
    if s.version == 10 && r.framing == Framing::Chunked {
        return Err("chunked to an HTTP/1.0 client".into());
    }
    // Close-delimited only for an HTTP/1.0 stream, and then the connection must close.
    if r.framing == Framing::Close && !close_delimited {
        return Err(format!(
            "close-delimited, but HTTP/1.{} buffering={} keep_alive={}:\n{}",
            s.version % 10,
            s.http10_buffering,
            encoder.keep_alive(),
            r.head_text()
        ));
    }
    if r.framing == Framing::Chunked {
        let (last, rest) = r.chunks.split_last().unwrap();
        if *last != 0 || rest.contains(&0) {
            return Err(format!("chunk sizes {:?}", r.chunks));
        }
    }
    if encoder.keep_alive() && r.conn_close() {
        return Err("keep-alive but Connection: close".into());
    }
    let body = inflate(r.header("Content-Encoding"), &r.body, true)?;
    if body != appended {
        return Err(format!(
            "the body is {} bytes, {} were appended; framing {:?}, head:\n{}",
            body.len(),
            appended.len(),
            r.framing,
            r.head_text()
        ));
    }
    if s.declare_length
        && r.header("Content-Encoding").is_none()
        && r.framing != Framing::ContentLength
    {
        return Err(format!(
            "the handler's Content-Length was not honoured:\n{}",
            r.head_text()
        ));
    }
    Ok(())
}

#[test]
fn append_flush_final_sequences_are_framed_correctly() {
    let pool = CompressorPool::new(4);
    let mut runner = TestRunner::new(config(1000));
    let result = runner.run(&(setup(), ops()), |(s, ops)| {
        check_sequence(&s, &ops, &pool).map_err(|e| TestCaseError::fail(format!("{s:?} {e}")))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
