//! Standard reason phrases for status lines.

/// Standard reason phrase for `status`: the RFC 9110 registry (section 15) plus 429 and 431
/// (RFC 6585), which servers send on their own when limits are hit. Codes the registry marks
/// "(Unused)" (306, 418) and unknown codes give "": the status line then ends with "<code> ",
/// which RFC 9112 allows (the reason phrase may be empty).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        let cases: &[(u16, &str)] = &[
            (100, "Continue"),
            (101, "Switching Protocols"),
            (200, "OK"),
            (204, "No Content"),
            (206, "Partial Content"),
            (301, "Moved Permanently"),
            (304, "Not Modified"),
            (308, "Permanent Redirect"),
            (400, "Bad Request"),
            (404, "Not Found"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (422, "Unprocessable Content"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
        ];
        for &(code, phrase) in cases {
            assert_eq!(reason_phrase(code), phrase, "status {code}");
        }
    }

    #[test]
    fn unknown_and_unused_codes_are_empty() {
        for code in [
            0, 99, 102, 103, 207, 226, 299, 306, 418, 428, 451, 511, 599, 600, 999,
        ] {
            assert_eq!(reason_phrase(code), "", "status {code}");
        }
    }

    #[test]
    fn phrases_are_safe_on_a_status_line() {
        // A phrase goes verbatim into the status line: it must be visible ASCII or space only.
        for code in 0..=1000u16 {
            let p = reason_phrase(code);
            assert!(
                p.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
                "status {code}"
            );
            assert!(!p.starts_with(' ') && !p.ends_with(' '), "status {code}");
        }
    }
}
