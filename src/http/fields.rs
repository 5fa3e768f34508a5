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

/// Field lines in the order they were added; names compare ASCII case-insensitively.
#[derive(Default, Debug)]
pub struct Fields {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// Bytes of `bytes` that live entries use; the rest belongs to removed or replaced fields.
    live: usize,
}

/// Dead bytes tolerated before `bytes` is rebuilt: a handler that replaces one field over and
/// over must not grow the buffer without bound.
const SLACK: usize = 1024;

impl Fields {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
        self.live = 0;
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

    /// The value of the first field named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.name(&self.bytes).eq_ignore_ascii_case(name))
            .map(|e| e.value(&self.bytes))
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
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
    }

    /// Removes every field named `name`; returns how many there were.
    pub fn remove_all(&mut self, name: &[u8]) -> usize {
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
        self.compact_if_sparse();
        before - self.entries.len()
    }

    /// Replaces every field named `name` with one.
    pub fn set(&mut self, name: &[u8], value: &[u8]) {
        self.remove_all(name);
        self.push(name, value);
    }

    /// Appends `suffix` to the value of the first field named `name`; false when there is none.
    pub fn extend_value(&mut self, name: &[u8], suffix: &[u8]) -> bool {
        let Some(i) = self
            .entries
            .iter()
            .position(|e| e.name(&self.bytes).eq_ignore_ascii_case(name))
        else {
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
        assert_eq!(f.get(b"SET-COOKIE"), Some(&b"a=1"[..]));
        f.set(b"Set-Cookie", b"c=3");
        assert_eq!(
            all(&f),
            [
                ("X-A".into(), "1".into()),
                ("Set-Cookie".into(), "c=3".into())
            ]
        );
        assert_eq!(f.remove_all(b"x-a"), 1);
        assert_eq!(f.remove_all(b"x-a"), 0);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn extend_value_keeps_the_order() {
        let mut f = Fields::default();
        f.push(b"Vary", b"Cookie");
        f.push(b"X", b"y");
        assert!(f.extend_value(b"vary", b", Accept-Encoding"));
        assert!(!f.extend_value(b"absent", b"z"));
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
        f.push(b"Keep", b"me");
        for i in 0..100_000 {
            f.set(b"X-Counter", format!("{i}").as_bytes());
            f.extend_value(b"keep", b"");
        }
        assert!(f.bytes.len() <= f.live + SLACK, "{} bytes", f.bytes.len());
        assert_eq!(f.get(b"keep"), Some(&b"me"[..]));
        assert_eq!(f.get(b"x-counter"), Some(&b"99999"[..]));
        f.clear();
        assert!(
            f.is_empty() && f.bytes.capacity() > 0,
            "clearing keeps the buffer"
        );
    }
}
