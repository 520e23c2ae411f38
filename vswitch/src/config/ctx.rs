//! Configuration errors ([`ConfigError`]) and where they are: the file and a
//! line index built once, so naming the
//! line of any span is a binary search (validation stays linear in the size
//! of the file).

use toml::Spanned;

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

pub struct Ctx<'a> {
    pub file: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a str, text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        Self { file, line_starts }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    pub fn line<S>(&self, at: &Spanned<S>) -> usize {
        self.line_of(at.span().start)
    }

    pub fn error<S>(&self, at: &Spanned<S>, field: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(self.line(at), field, message)
    }

    pub fn error_at(&self, line: usize, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.to_owned(), line, field: field.to_owned(), message: message.into() }
    }

    pub fn err<T, S>(&self, at: &Spanned<S>, field: &str, message: impl Into<String>) -> Result<T, ConfigError> {
        Err(self.error(at, field, message))
    }

    /// A number in `min..=max`, or `default` when absent.
    pub fn range(
        &self,
        v: &Option<Spanned<u64>>,
        field: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => self.err(s, field, format!("{} is out of range; expected {min}..={max}", s.get_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let c = Ctx::new("f", "a\nbb\n\nc");
        assert_eq!((c.line_of(0), c.line_of(1), c.line_of(2), c.line_of(5), c.line_of(6)), (1, 1, 2, 3, 4));
    }
}
