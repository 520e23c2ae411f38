//! Bounds-checked big-endian reading and writing. Every read that would run
//! past the end is an error the caller turns into the spec's `BAD_LEN` code
//! of the structure being read, never a panic.

/// Reads big-endian fields from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A read past the end of the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Short)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The rest of the slice.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// A sub-reader over the next `n` bytes.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, Short> {
        Ok(Reader::new(self.bytes(n)?))
    }

    pub fn skip(&mut self, n: usize) -> Result<(), Short> {
        self.bytes(n).map(|_| ())
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Peeks a big-endian u16 at the current position.
    pub fn peek_u16(&self) -> Result<u16, Short> {
        self.clone().u16()
    }
}

/// Appends big-endian fields to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    /// Zero bytes up to the next multiple of 8.
    pub fn pad8(&mut self) -> &mut Self {
        let n = padding8(self.buf.len());
        self.zeros(n)
    }

    /// Writes a big-endian u16 at `at` (a length filled in afterwards).
    pub fn set_u16(&mut self, at: usize, v: u16) {
        self.buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// A fixed-size, NUL-terminated string field (names, descriptions),
    /// cut at a character boundary to fit.
    pub fn fixed_str(&mut self, s: &str, size: usize) -> &mut Self {
        let b = truncated(s, size - 1).as_bytes();
        self.bytes(b).zeros(size - b.len())
    }
}

/// Zero bytes that bring `len` to a multiple of 8.
pub fn padding8(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// A fixed-size string field: up to its first NUL, the last byte always
/// being the terminator; invalid UTF-8 replaced, and cut to fit again so
/// that what decodes encodes to the same string.
pub fn fixed_str(b: &[u8]) -> String {
    let b = &b[..b.len().saturating_sub(1)];
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    truncated(&String::from_utf8_lossy(&b[..end]), b.len()).to_owned()
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}
