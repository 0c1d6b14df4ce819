//! A list of header (or trailer) fields stored in one byte buffer: a response head costs two
//! allocations however many fields it has, instead of two per field.

use std::ops::Range;

/// Header fields in wire order (repeats kept): names as received, values as raw bytes (values
/// need not be UTF-8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    /// The name runs from the previous field's end to here; the value from here to `value_end`.
    name_end: u32,
    value_end: u32,
}

impl Fields {
    /// An empty list.
    pub const fn new() -> Self {
        Fields {
            bytes: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// An empty list with room for `fields` fields of `bytes` bytes in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Fields {
            bytes: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(fields),
        }
    }

    /// Fields from (name, value) pairs (tests and fuzzers build heads this way).
    pub fn from_pairs<V: AsRef<[u8]>>(pairs: &[(&str, V)]) -> Self {
        let mut fields = Fields::default();
        for (name, value) in pairs {
            fields.push(name, value.as_ref());
        }
        fields
    }

    /// Appends a field. Callers keep the total under `http1::MAX_HEAD_BYTES`-like limits, far
    /// below the 4 GiB the offsets can address.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(name.as_bytes());
        let name_end = offset(self.bytes.len());
        self.bytes.extend_from_slice(value);
        self.spans.push(Span {
            name_end,
            value_end: offset(self.bytes.len()),
        });
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The field at `index`: (name, value).
    pub fn at(&self, index: usize) -> Option<(&str, &[u8])> {
        let span = *self.spans.get(index)?;
        let name_start = match index {
            0 => 0,
            _ => self.spans[index - 1].value_end,
        };
        Some((
            self.text(name_start as usize..span.name_end as usize),
            &self.bytes[span.name_end as usize..span.value_end as usize],
        ))
    }

    /// Every field, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        (0..self.len()).filter_map(|i| self.at(i))
    }

    /// Index of the first field named `name` (case-insensitive).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.iter().position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// First value of the field `name` (case-insensitive).
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// Every value of the field `name` (case-insensitive), in wire order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// A name: pushed as `&str`, and spans start and end on the boundaries of what was pushed.
    fn text(&self, range: Range<usize>) -> &str {
        let bytes = &self.bytes[range];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: `bytes` is exactly a `&str` given to `push` (see above).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_repeats_and_raw_values() {
        let f = Fields::from_pairs(&[
            ("Set-Cookie", &b"a=1"[..]),
            ("X-Bin", &[0xff, 0x00, b'x'][..]),
            ("set-cookie", &b""[..]),
        ]);
        assert_eq!(f.len(), 3);
        assert_eq!(f.at(1), Some(("X-Bin", &[0xff, 0x00, b'x'][..])));
        assert_eq!(f.at(3), None);
        assert_eq!(
            f.all("SET-COOKIE").collect::<Vec<_>>(),
            [&b"a=1"[..], &b""[..]]
        );
        assert_eq!(f.position("x-bin"), Some(1));
        assert_eq!(f.get("missing"), None);
        assert!(Fields::default().is_empty());
    }
}
