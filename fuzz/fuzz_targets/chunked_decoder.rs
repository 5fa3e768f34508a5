//! Fuzzes `httpsrv::proto::h1::chunked::ChunkedDecoder`.
//!
//! The first input byte picks the body limit, the second the way the stream is cut into pieces;
//! the rest is the chunked stream. Every run checks:
//! - feeding the stream whole, one byte at a time and in uneven pieces gives the same outcome
//!   (done with the same bytes consumed and body, still incomplete, or the same error status);
//! - that outcome equals the one of a simple, non-incremental reference decoder written from
//!   RFC 9112 section 7.1 (plus the decoder's documented limits);
//! - the per-call contract: a call that does not finish uses all of its input, a finished decoder
//!   takes nothing more, an error sticks, `body_len()` equals the body produced.
#![no_main]

#[path = "../../tests/common/chunked_reference.rs"]
mod chunked_reference;

use chunked_reference::{reference, Outcome};
use httpsrv::proto::h1::chunked::ChunkedDecoder;
use libfuzzer_sys::fuzz_target;

/// Body limits the first input byte picks from.
const MAX_BODY: [u64; 6] = [u64::MAX, 0, 1, 16, 1000, 1 << 20];

fn feed(input: &[u8], max: u64, pieces: &[usize]) -> Outcome {
    let mut dec = ChunkedDecoder::new(max);
    let mut body = Vec::new();
    let mut pos = 0;
    let mut sizes = pieces.iter().copied().filter(|&s| s > 0).cycle();
    loop {
        let n = sizes.next().unwrap_or(input.len()).min(input.len() - pos);
        match dec.decode(&input[pos..pos + n], &mut body) {
            Err(e) => {
                assert_eq!(dec.decode(b"0\r\n\r\n", &mut body), Err(e), "errors stick");
                return Outcome::Error(e.status);
            }
            Ok((used, true)) => {
                assert!(used <= n);
                assert!(dec.is_done());
                assert_eq!(dec.decode(b"1\r\nx\r\n0\r\n\r\n", &mut body), Ok((0, true)));
                assert_eq!(dec.body_len(), body.len() as u64);
                return Outcome::Done(pos + used, body);
            }
            Ok((used, false)) => {
                assert_eq!(used, n, "an unfinished call uses all of its input");
                assert!(!dec.is_done());
                pos += n;
                if pos == input.len() {
                    return Outcome::Incomplete;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, input @ ..] = data else {
        return;
    };
    let max = MAX_BODY[usize::from(*a) % MAX_BODY.len()];
    let whole = feed(input, max, &[]);
    assert_eq!(feed(input, max, &[1]), whole, "byte at a time");
    let pieces = [usize::from(*b % 17) + 1, usize::from(*b / 17) + 1, 2];
    assert_eq!(feed(input, max, &pieces), whole, "pieces {pieces:?}");
    assert_eq!(reference(input, max), whole, "reference decoder");
    if let Outcome::Done(n, _) = &whole {
        // Bytes after the message (the next request) are never consumed.
        assert!(*n <= input.len());
        assert_eq!(feed(&input[..*n], max, &[]), whole);
    }
});
