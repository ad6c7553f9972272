//! A tiny little-endian, length-prefixed record format for the system-range records that
//! are not descriptors: jobs ([`crate::sql::jobs`]) and table statistics
//! ([`crate::sql::stats`]). Each record starts with its own version byte.

/// Appends `s` as a u32 length and its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads a record front to back; every read answers `None` past the end.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take().map(|[b]| b)
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    pub fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    /// Reads a u32 length and that many bytes, borrowed from the record.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let (s, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(s)
    }
    pub fn str(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers_read_back_and_a_short_record_reads_none() {
        let mut b = Vec::new();
        put_str(&mut b, "héllo");
        b.extend_from_slice(&7u64.to_le_bytes());
        let mut r = Reader(&b);
        assert_eq!(r.str().as_deref(), Some("héllo"));
        assert_eq!(r.u64(), Some(7));
        assert_eq!(r.u32(), None);
        assert_eq!(Reader(&b[..5]).str(), None);
    }
}
