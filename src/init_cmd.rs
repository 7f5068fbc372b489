//! `smelt schema` (the JSON Schema of pipeline files, for editors) and
//! `smelt init` (a starter pipeline whose first line points editors at it).
//!
//! ```text
//! registry (StageType::options) ──engine::schema──► pipeline.schema.json
//! examples/{quickstart,clean,feeds,tokenize}.yaml ──include_str!──► smelt init ──► pipeline.yaml (+ schema beside it)
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use smelt_engine::EngineError;

/// The file name `smelt init` gives the schema, and the examples' headers point to.
pub const SCHEMA_FILE: &str = "pipeline.schema.json";

/// The first line of a pipeline file that tells a YAML language server where its schema is.
pub const SCHEMA_HEADER: &str = "# yaml-language-server: $schema=./pipeline.schema.json";

/// Starter pipelines, each an example under examples/.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// WARC files -> plain text -> content hashes -> Parquet (examples/quickstart.yaml).
    Quickstart,
    /// FineWeb-style cleaning: main content, English, quality filters, PII, dedup (examples/clean.yaml).
    Clean,
    /// News feeds: new items' pages, main content, exact dedup (examples/feeds.yaml).
    Feeds,
    /// JSON Lines -> token ids for training (examples/tokenize.yaml).
    Tokenize,
}

impl Template {
    /// The template's text (it starts with [`SCHEMA_HEADER`]).
    pub fn text(self) -> &'static str {
        match self {
            Template::Quickstart => include_str!("../examples/quickstart.yaml"),
            Template::Clean => include_str!("../examples/clean.yaml"),
            Template::Feeds => include_str!("../examples/feeds.yaml"),
            Template::Tokenize => include_str!("../examples/tokenize.yaml"),
        }
    }
}

/// The schema as pretty JSON with a final newline (what `smelt schema` prints and writes).
pub fn schema_text() -> String {
    let schema = smelt_engine::schema::pipeline_schema(&smelt_runner::registry::stages());
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// `smelt schema [--out FILE]`.
///
/// # Errors
/// The file cannot be written.
pub fn schema(out: Option<&Path>) -> anyhow::Result<()> {
    let text = schema_text();
    match out {
        None => crate::output::emit(text.trim_end()),
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(())
}

/// `smelt init [TEMPLATE] [--out FILE]`: writes the template to `out`
/// (never over an existing file) and the schema beside it unless one is there.
///
/// # Errors
/// `out` exists (a user error), or a file cannot be written.
pub fn init(template: Template, out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        return Err(EngineError::User(format!(
            "{} already exists; smelt init does not overwrite files (choose another name with --out FILE)",
            out.display()
        ))
        .into());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // create_new: a file that appeared since the check is not overwritten either.
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::Error::from(EngineError::User(format!(
                "{} already exists; smelt init does not overwrite files",
                out.display()
            )))
        } else {
            anyhow::Error::from(e).context(format!("cannot write {}", out.display()))
        }
    })?;
    let text = match template.text() {
        t if t.starts_with(SCHEMA_HEADER) => t.to_string(),
        t => format!("{SCHEMA_HEADER}\n{t}"),
    };
    std::io::Write::write_all(&mut f, text.as_bytes()).with_context(|| format!("cannot write {}", out.display()))?;
    let schema_path = dir.join(SCHEMA_FILE);
    if schema_path.exists() {
        eprintln!(
            "wrote {}; kept the existing {} (`smelt schema --out {}` refreshes it)",
            out.display(),
            schema_path.display(),
            schema_path.display()
        );
    } else {
        std::fs::write(&schema_path, schema_text())
            .with_context(|| format!("cannot write {}", schema_path.display()))?;
        eprintln!(
            "wrote {} and {} (its first line points editors at the schema)",
            out.display(),
            schema_path.display()
        );
    }
    eprintln!(
        "next: point its inputs at your data, then `smelt validate {}` and `smelt run {}`",
        out.display(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_starts_with_the_schema_header() {
        for t in [Template::Quickstart, Template::Clean, Template::Feeds, Template::Tokenize] {
            assert!(t.text().starts_with(&format!("{SCHEMA_HEADER}\n")), "{t:?}");
        }
        assert!(SCHEMA_HEADER.ends_with(SCHEMA_FILE));
    }
}
