//! Positioned problems in a pipeline file, reported all at once.

use std::fmt;

/// A position in the pipeline file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
}

/// One problem in a pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: String,
    /// Where in it.
    pub pos: Pos,
    /// YAML path of the offending node, e.g. `stages.clean.inputs[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to change, when smelt can tell.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: error: {}", self.file, self.pos.line, self.pos.col, self.message)?;
        if !self.path.is_empty() {
            write!(f, "\n  at `{}`", self.path)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in a pipeline file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} in pipeline", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

pub use smelt_catalog::closest;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(closest("warcc", ["warc", "jsonl", "parquet"]), Some("warc"));
        assert_eq!(closest("html_to_txt", ["html_to_text", "content_hash"]), Some("html_to_text"));
        assert_eq!(closest("zzzzzz", ["warc", "jsonl"]), None);
    }
}
