//! Response header fields, kept in one byte buffer that is reused from response to response, so
//! setting a field allocates nothing once a session has served a request. The buffer holds the
//! fields as they go on the wire ("Name: value\r\n"), so a head usually takes them in one copy.

/// One field: its line "name: value\r\n" in `Fields::bytes`.
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u32,
    name_len: u32,
    value_len: u32,
}

impl Entry {
    fn name<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let s = self.start as usize;
        &bytes[s..s + self.name_len as usize]
    }

    fn value<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let s = self.start as usize + self.name_len as usize + SEPARATOR.len();
        &bytes[s..s + self.value_len as usize]
    }

    fn line<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let s = self.start as usize;
        &bytes[s..s + self.size()]
    }

    /// Bytes of the whole line.
    fn size(&self) -> usize {
        self.name_len as usize + self.value_len as usize + SEPARATOR.len() + CRLF.len()
    }
}

/// Field names the library itself looks up in every response. Each has a bit in
/// `Fields::known`, so asking for one that is absent (the usual answer) scans nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    ContentType,
    ContentLength,
    ContentEncoding,
    Vary,
    Connection,
    Server,
    Date,
    TransferEncoding,
}

impl Known {
    #[cfg(test)]
    const ALL: [Known; 8] = [
        Known::ContentType,
        Known::ContentLength,
        Known::ContentEncoding,
        Known::Vary,
        Known::Connection,
        Known::Server,
        Known::Date,
        Known::TransferEncoding,
    ];

    /// The name, lower-case.
    pub fn name(self) -> &'static [u8] {
        match self {
            Known::ContentType => b"content-type",
            Known::ContentLength => b"content-length",
            Known::ContentEncoding => b"content-encoding",
            Known::Vary => b"vary",
            Known::Connection => b"connection",
            Known::Server => b"server",
            Known::Date => b"date",
            Known::TransferEncoding => b"transfer-encoding",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The known name a field name (a token, any case) is, if any. The length picks the one
    /// candidate, so a name that is none of them costs one comparison at most.
    pub fn of(name: &[u8]) -> Option<Known> {
        let candidate = match name.len() {
            4 if name[0] | 0x20 == b'v' => Known::Vary,
            4 => Known::Date,
            6 => Known::Server,
            10 => Known::Connection,
            12 => Known::ContentType,
            14 => Known::ContentLength,
            16 => Known::ContentEncoding,
            17 => Known::TransferEncoding,
            _ => return None,
        };
        token_eq_lower(name, candidate.name()).then_some(candidate)
    }
}

/// `name` (a token) equals `lower` (lower-case letters and '-') ignoring ASCII case. Setting
/// bit 0x20 lower-cases a letter and leaves '-' and digits alone; for a token no other byte
/// maps onto one of `lower`'s.
fn token_eq_lower(name: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    if n < 8 {
        return name.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b);
    }
    // Eight bytes at a time; the last word may overlap the one before, covering any length.
    let word =
        |s: &[u8], at: usize| <[u8; 8]>::try_from(&s[at..at + 8]).map_or(0, u64::from_ne_bytes);
    let mut at = 0;
    while at + 8 < n {
        if word(name, at) | CASE != word(lower, at) {
            return false;
        }
        at += 8;
    }
    word(name, n - 8) | CASE == word(lower, n - 8)
}

/// The `Known` bit of a field name (0 for other names).
fn known_bit(name: &[u8]) -> u8 {
    Known::of(name).map_or(0, Known::bit)
}

/// Field lines in the order they were added; names compare ASCII case-insensitively.
#[derive(Default, Debug)]
pub struct Fields {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// Bytes of `bytes` that live entries use; the rest belongs to removed or replaced fields.
    live: usize,
    /// A bit per `KNOWN` name present.
    known: u8,
}

const SEPARATOR: &[u8] = b": ";
const CRLF: &[u8] = b"\r\n";

/// Dead bytes tolerated before `bytes` is rebuilt: a handler that replaces one field over and
/// over must not grow the buffer without bound.
const SLACK: usize = 1024;

impl Fields {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.live = 0;
        self.known = 0;
    }

    fn position(&self, k: Known) -> Option<usize> {
        if self.known & k.bit() == 0 {
            return None;
        }
        self.entries
            .iter()
            .position(|e| token_eq_lower(e.name(&self.bytes), k.name()))
    }

    /// Drops buffers larger than `max` bytes.
    pub fn shrink(&mut self, max: usize) {
        if self.bytes.capacity() > max || self.entries.capacity() * size_of::<Entry>() > max {
            *self = Fields::default();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of the first field named `k`.
    pub fn get(&self, k: Known) -> Option<&[u8]> {
        self.position(k).map(|i| self.entries[i].value(&self.bytes))
    }

    pub fn contains(&self, k: Known) -> bool {
        self.known & k.bit() != 0
    }

    /// Appends every field's line to `out` in order, leaving out fields named `skip`.
    pub fn write_lines(&self, out: &mut Vec<u8>, skip: Known) {
        if !self.contains(skip) {
            return self.write_all_lines(out);
        }
        for e in &self.entries {
            let name = e.name(&self.bytes);
            if !token_eq_lower(name, skip.name()) {
                out.extend_from_slice(e.line(&self.bytes));
            }
        }
    }

    /// Appends every field's line to `out` in order.
    #[inline]
    pub fn write_all_lines(&self, out: &mut Vec<u8>) {
        if self.live == self.bytes.len() {
            // No removed or replaced field in between: the buffer is the lines.
            out.extend_from_slice(&self.bytes);
            return;
        }
        for e in &self.entries {
            out.extend_from_slice(e.line(&self.bytes));
        }
    }

    /// Every field as (name, value), in order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|e| (e.name(&self.bytes), e.value(&self.bytes)))
    }

    /// Adds a field after the others. Names and values are short (a head is at most a few
    /// KiB), so the u32 offsets cannot overflow in practice; a field that would is dropped.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.push_named(name, value, known_bit(name));
    }

    /// `push` for a name known to be `k`.
    pub fn push_known(&mut self, k: Known, name: &[u8], value: &[u8]) {
        self.push_named(name, value, k.bit());
    }

    /// `push`, given `name`'s known bit.
    fn push_named(&mut self, name: &[u8], value: &[u8], bit: u8) {
        let (Ok(start), Ok(name_len), Ok(value_len)) = (
            u32::try_from(self.bytes.len()),
            u32::try_from(name.len()),
            u32::try_from(value.len()),
        ) else {
            return;
        };
        // One capacity check for the line instead of one per piece.
        self.bytes
            .reserve(name.len() + value.len() + SEPARATOR.len() + CRLF.len());
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(SEPARATOR);
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(CRLF);
        let entry = Entry {
            start,
            name_len,
            value_len,
        };
        self.live += entry.size();
        self.entries.push(entry);
        self.known |= bit;
    }

    /// Removes every field named `name`; returns how many there were.
    pub fn remove_all(&mut self, name: &[u8]) -> usize {
        self.remove_named(name, known_bit(name))
    }

    /// `remove_all` for a known name.
    pub fn remove_known(&mut self, k: Known) {
        self.remove_named(k.name(), k.bit());
    }

    /// `remove_all`, given `name`'s known bit.
    fn remove_named(&mut self, name: &[u8], bit: u8) -> usize {
        if bit != 0 && self.known & bit == 0 {
            return 0;
        }
        let before = self.entries.len();
        let bytes = &self.bytes;
        let mut freed = 0;
        self.entries.retain(|e| {
            let keep = !e.name(bytes).eq_ignore_ascii_case(name);
            if !keep {
                freed += e.size();
            }
            keep
        });
        self.live -= freed;
        self.known &= !bit;
        self.compact_if_sparse();
        before - self.entries.len()
    }

    /// Replaces every field named `name` with one; `known` is `Known::of(name)`, which the
    /// caller has already worked out.
    pub fn set(&mut self, name: &[u8], value: &[u8], known: Option<Known>) {
        debug_assert_eq!(known, Known::of(name));
        let bit = known.map_or(0, Known::bit);
        self.remove_named(name, bit);
        self.push_named(name, value, bit);
    }

    /// Appends `suffix` to the value of the first field named `k`; false when there is none.
    pub fn extend_value(&mut self, k: Known, suffix: &[u8]) -> bool {
        let Some(i) = self.position(k) else {
            return false;
        };
        let old = self.entries[i];
        let (Ok(start), Ok(value_len)) = (
            u32::try_from(self.bytes.len()),
            u32::try_from(old.value_len as usize + suffix.len()),
        ) else {
            return false;
        };
        // The field moves to the end of the buffer, keeping its place in the order.
        let line = old.start as usize..old.start as usize + old.size() - CRLF.len();
        self.bytes.extend_from_within(line);
        self.bytes.extend_from_slice(suffix);
        self.bytes.extend_from_slice(CRLF);
        self.entries[i] = Entry {
            start,
            name_len: old.name_len,
            value_len,
        };
        self.live += suffix.len();
        self.compact_if_sparse();
        true
    }

    fn compact_if_sparse(&mut self) {
        if self.bytes.len() <= self.live + SLACK {
            return;
        }
        let mut bytes = Vec::with_capacity(self.live);
        for e in &mut self.entries {
            let s = e.start as usize;
            let start = bytes.len() as u32;
            bytes.extend_from_slice(&self.bytes[s..s + e.size()]);
            e.start = start;
        }
        self.bytes = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &Fields) -> Vec<(String, String)> {
        f.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn set_replaces_every_field_of_the_name_case_insensitively() {
        let mut f = Fields::default();
        f.push(b"Set-Cookie", b"a=1");
        f.push(b"X-A", b"1");
        f.push(b"set-cookie", b"b=2");
        f.set(b"Set-Cookie", b"c=3", None);
        assert_eq!(
            all(&f),
            [
                ("X-A".into(), "1".into()),
                ("Set-Cookie".into(), "c=3".into())
            ]
        );
        assert_eq!(f.remove_all(b"x-a"), 1);
        f.push(b"Content-TYPE", b"text/plain");
        assert_eq!(f.get(Known::ContentType), Some(&b"text/plain"[..]));
        assert_eq!(f.remove_all(b"CONTENT-type"), 1);
        assert_eq!(f.get(Known::ContentType), None);
        f.push(b"content-type", b"a/b");
        f.push(b"Content-Type", b"c/d");
        assert_eq!(f.get(Known::ContentType), Some(&b"a/b"[..]));
        assert_eq!(f.remove_all(b"content-type"), 2);
        assert_eq!(f.remove_all(b"x-a"), 0);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn known_names_are_found_in_any_case() {
        for k in Known::ALL {
            assert_eq!(known_bit(k.name()), k.bit());
            assert_eq!(known_bit(&k.name().to_ascii_uppercase()), k.bit());
        }
        for other in [
            &b"x-type"[..],
            b"content-typf",
            b"dates",
            b"",
            b"vary2",
            b"vate",
            b"dary",
            // A difference in each eight-byte word the comparison reads.
            b"dontent-type",
            b"contant-encoding",
            b"transfer-encodinh",
            b"transfer/encoding",
        ] {
            assert_eq!(known_bit(other), 0, "{other:?}");
        }
    }

    fn lines(f: &Fields, skip: Known) -> String {
        let mut out = b"x".to_vec();
        f.write_lines(&mut out, skip);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn lines_are_written_whole_or_one_by_one_alike() {
        let mut f = Fields::default();
        f.push(b"Content-Type", b"text/plain");
        f.push(b"X-A", b"");
        assert_eq!(
            lines(&f, Known::Connection),
            "xContent-Type: text/plain\r\nX-A: \r\n"
        );
        // Replaced and extended fields leave dead bytes behind: written line by line.
        f.push(b"Vary", b"Cookie");
        f.set(b"content-type", b"text/html", Some(Known::ContentType));
        assert!(f.extend_value(Known::Vary, b", Accept-Encoding"));
        f.push(b"CONNECTION", b"close");
        assert_eq!(
            lines(&f, Known::Connection),
            "xX-A: \r\nVary: Cookie, Accept-Encoding\r\ncontent-type: text/html\r\n"
        );
        assert_eq!(
            lines(&f, Known::Date),
            "xX-A: \r\nVary: Cookie, Accept-Encoding\r\ncontent-type: text/html\r\nCONNECTION: close\r\n"
        );
        f.clear();
        f.push(b"Connection", b"close");
        f.push(b"Server", b"s");
        assert_eq!(lines(&f, Known::Connection), "xServer: s\r\n");
    }

    #[test]
    fn extend_value_keeps_the_order() {
        let mut f = Fields::default();
        f.push(b"Vary", b"Cookie");
        f.push(b"X", b"y");
        assert!(f.extend_value(Known::Vary, b", Accept-Encoding"));
        assert!(!f.extend_value(Known::Date, b"z"));
        assert_eq!(
            all(&f),
            [
                ("Vary".into(), "Cookie, Accept-Encoding".into()),
                ("X".into(), "y".into())
            ]
        );
    }

    #[test]
    fn replacing_a_field_again_and_again_does_not_grow_the_buffer() {
        let mut f = Fields::default();
        f.push(b"Server", b"me");
        for i in 0..100_000 {
            f.set(b"Date", format!("{i}").as_bytes(), Some(Known::Date));
            f.extend_value(Known::Server, b"");
        }
        assert!(f.bytes.len() <= f.live + SLACK, "{} bytes", f.bytes.len());
        assert_eq!(f.get(Known::Server), Some(&b"me"[..]));
        assert_eq!(f.get(Known::Date), Some(&b"99999"[..]));
        f.clear();
        assert!(
            f.is_empty() && f.bytes.capacity() > 0,
            "clearing keeps the buffer"
        );
    }
}
