//! Response header fields, kept in one byte buffer that is reused from response to response, so
//! setting a field allocates nothing once a session has served a request.

/// One field: its name and then its value, back to back in `Fields::bytes`.
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
        let s = (self.start + self.name_len) as usize;
        &bytes[s..s + self.value_len as usize]
    }

    fn size(&self) -> usize {
        (self.name_len + self.value_len) as usize
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
}

/// `name` (a token) equals `lower` (lower-case letters and '-') ignoring ASCII case. Setting
/// bit 0x20 lower-cases a letter and leaves '-' and digits alone; for a token no other byte
/// maps onto one of `lower`'s.
fn token_eq_lower(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).all(|(&a, &b)| a | 0x20 == b)
}

/// The `Known` bit of a field name from a module (0 for other names).
fn known_bit(name: &[u8]) -> u8 {
    Known::ALL
        .iter()
        .find(|k| token_eq_lower(name, k.name()))
        .map_or(0, |k| k.bit())
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

    /// Every field as (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|e| (e.name(&self.bytes), e.value(&self.bytes)))
    }

    /// Adds a field after the others. Names and values are short (a head is at most a few
    /// KiB), so the u32 offsets cannot overflow in practice; a field that would is dropped.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let (Ok(start), Ok(name_len), Ok(value_len)) = (
            u32::try_from(self.bytes.len()),
            u32::try_from(name.len()),
            u32::try_from(value.len()),
        ) else {
            return;
        };
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.entries.push(Entry {
            start,
            name_len,
            value_len,
        });
        self.live += name.len() + value.len();
        self.known |= known_bit(name);
    }

    /// Removes every field named `name`; returns how many there were.
    pub fn remove_all(&mut self, name: &[u8]) -> usize {
        let bit = known_bit(name);
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

    /// Replaces every field named `name` with one.
    pub fn set(&mut self, name: &[u8], value: &[u8]) {
        self.remove_all(name);
        self.push(name, value);
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
        let range = old.start as usize..(old.start + old.name_len + old.value_len) as usize;
        self.bytes.extend_from_within(range);
        self.bytes.extend_from_slice(suffix);
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
        f.set(b"Set-Cookie", b"c=3");
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
        for other in [&b"x-type"[..], b"content-typf", b"dates", b"", b"vary2"] {
            assert_eq!(known_bit(other), 0, "{other:?}");
        }
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
            f.set(b"Date", format!("{i}").as_bytes());
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
