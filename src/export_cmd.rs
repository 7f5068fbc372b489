//! `smelt export DATASET@V`: a version's token shards (the `tokenize`
//! stage's `input_ids`) as the files training frameworks read.
//!
//! ```text
//! _versions/N.json ──shards, in order──► input_ids rows ──(--pack L: concatenated, cut every L)──►
//!     megatron: PREFIX.bin + PREFIX.idx   (Megatron-LM MMapIndexedDataset: "MMIDIDX\0\0", version 1, dtype code,
//!                                          sequence lengths int32, byte pointers int64, document indices int64)
//!     nanogpt:  PREFIX.bin                (flat uint16 when the vocabulary has < 65536 ids, else uint32)
//!     jsonl:    PREFIX.jsonl              ({"id": ..., "input_ids": [...]} per row, {"input_ids": [...]} packed)
//!   + PREFIX.json: format, dtype, tokenizer name and hash, counts
//! ```
//! PREFIX is `DATASET-vN` inside `--out`. Rows and sequences keep the
//! version's shard order, so an export is byte-identical for a version.
//!
//! `--shuffle global --seed S` writes the sequences (documents, or packed
//! sequences) in a uniformly random order with bounded memory, in two passes:
//! ```text
//! pass 1: each sequence ──bucket = rng(S) mod B──► scratch bucket files (B = size / --shuffle-memory)
//! pass 2: each bucket in turn ──read whole, Fisher-Yates with rng(S, bucket)──► the output
//! ```
//! A random bucket per sequence and a uniform shuffle within each bucket
//! give a uniform permutation; the same version, seed and B give the same bytes.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;
use clap::Args;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use smelt_catalog::{DatasetStore, VersionRef};
use smelt_engine::EngineError;

use crate::output::{emit, emit_json, table, Format};
use smelt_runner::Workspace;

/// `smelt export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Megatron-LM indexed dataset (`.bin` + `.idx`).
    Megatron,
    /// One flat uint16/uint32 token file, as nanoGPT's `train.bin`.
    Nanogpt,
    /// JSON Lines with `input_ids`.
    Jsonl,
}

impl ExportFormat {
    fn name(self) -> &'static str {
        match self {
            ExportFormat::Megatron => "megatron",
            ExportFormat::Nanogpt => "nanogpt",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// `smelt export` arguments.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  smelt export news-tok@3 --format megatron --out /data/megatron      # news-tok-v3.bin + .idx
  smelt export news-tok@prod --format nanogpt --out /data/nanogpt --pack 1024
  smelt export news-tok --format jsonl --out /tmp/x --summary json
  smelt export mixture@2 --format megatron --out /data/mix --shuffle global --seed 7   # a random order, bounded memory")]
pub struct ExportArgs {
    /// DATASET@VERSION, DATASET@TAG or DATASET (latest); its shards need an `input_ids` column (stage `tokenize`).
    pub version: String,
    /// megatron, nanogpt or jsonl.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Pack into sequences of exactly this many tokens (rows concatenated: the EOS `tokenize` puts after each document separates them; the last partial sequence is dropped).
    #[arg(long, value_name = "SEQ_LEN")]
    pub pack: Option<usize>,
    /// Order of the sequences: `none` (the version's order) or `global` (a uniformly random
    /// permutation of all of them, shuffled in two passes with bounded memory, so a mixture trains
    /// without a separate shuffle step).
    #[arg(long, value_enum, default_value = "none")]
    pub shuffle: Shuffle,
    /// Seed of `--shuffle global`: the same seed gives the same order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// MiB the shuffle's second pass holds at once (one bucket of sequences); more memory, fewer buckets.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    pub shuffle_memory: u64,
    /// Buckets of the shuffle's first pass (default: the version's size over --shuffle-memory); the
    /// order depends on the seed and this number.
    #[arg(long, value_name = "N")]
    pub shuffle_buckets: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "table")]
    pub summary: Format,
}

/// `smelt export --shuffle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shuffle {
    /// The version's order.
    None,
    /// A uniformly random order of every sequence (two-pass external shuffle).
    Global,
}

/// SplitMix64: a small, well-mixed generator; the same seed gives the same stream on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0), without modulo bias.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// The first pass of `--shuffle global`: sequences scattered over bucket files.
struct Scatter {
    rng: Rng,
    seed: u64,
    buckets: Vec<BufWriter<std::fs::File>>,
    scratch: smelt_catalog::docindex::ScratchDir,
}

impl Scatter {
    fn new(seed: u64, buckets: usize, near: &Path) -> anyhow::Result<Self> {
        let scratch = smelt_catalog::docindex::ScratchDir::new_in(near, "smelt-shuffle")
            .with_context(|| format!("create a scratch directory in {}", near.display()))?;
        let files = (0..buckets)
            .map(|b| {
                let path = scratch.path().join(format!("{b:05}.bucket"));
                Ok(BufWriter::with_capacity(16 << 10, std::fs::File::create(&path)?))
            })
            .collect::<std::io::Result<Vec<_>>>()
            .context("create the shuffle's bucket files")?;
        Ok(Scatter { rng: Rng::new(seed, u64::MAX), seed, buckets: files, scratch })
    }

    /// Writes a sequence (`id` length + 1 or 0, id, token count, tokens) to a random bucket.
    fn push(&mut self, id: Option<&str>, ids: &[u32]) -> anyhow::Result<()> {
        let b = self.rng.below(self.buckets.len() as u64) as usize;
        let w = &mut self.buckets[b];
        let id = id.map(str::as_bytes);
        w.write_all(&(id.map_or(0, |i| i.len() as u32 + 1)).to_le_bytes())?;
        w.write_all(id.unwrap_or_default())?;
        w.write_all(&(ids.len() as u32).to_le_bytes())?;
        for t in ids {
            w.write_all(&t.to_le_bytes())?;
        }
        Ok(())
    }

    /// The second pass: each bucket read back, shuffled and written to `sink`.
    fn drain(self, sink: &mut Sink) -> anyhow::Result<usize> {
        let n = self.buckets.len();
        for w in self.buckets {
            w.into_inner().map_err(|e| e.into_error())?; // flushed; scratch files need no fsync
        }
        for b in 0..n {
            let path = self.scratch.path().join(format!("{b:05}.bucket"));
            let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            let mut seqs: Vec<(Option<&str>, &[u8])> = Vec::new();
            let mut at = 0;
            let take = |at: &mut usize, n: usize| -> anyhow::Result<&[u8]> {
                let s = bytes.get(*at..*at + n).context("a shuffle bucket file is cut short")?;
                *at += n;
                Ok(s)
            };
            while at < bytes.len() {
                let id_len = u32::from_le_bytes(take(&mut at, 4)?.try_into()?) as usize;
                let id = match id_len {
                    0 => None,
                    n => Some(std::str::from_utf8(take(&mut at, n - 1)?)?),
                };
                let tokens = u32::from_le_bytes(take(&mut at, 4)?.try_into()?) as usize;
                seqs.push((id, take(&mut at, tokens * 4)?));
            }
            let mut rng = Rng::new(self.seed, b as u64);
            for i in (1..seqs.len()).rev() {
                seqs.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let mut tokens = Vec::new();
            for (id, raw) in seqs {
                tokens.clear();
                tokens.extend(raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))));
                sink.push(id, &tokens)?;
            }
            drop(bytes);
            let _ = std::fs::remove_file(&path);
        }
        Ok(n)
    }
}

/// Megatron's dtype codes (megatron/core/datasets/indexed_dataset.py, `DType`).
const MEGATRON_UINT16: u8 = 8;
const MEGATRON_INT32: u8 = 4;

/// Token width in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    U16,
    U32,
}

/// Where the tokens go.
struct Sink {
    format: ExportFormat,
    width: Width,
    data: BufWriter<std::fs::File>,
    /// Megatron: length of each sequence.
    lengths: Vec<i32>,
    tokens: u64,
    sequences: u64,
    buf: Vec<u8>,
}

impl Sink {
    fn push(&mut self, id: Option<&str>, ids: &[u32]) -> anyhow::Result<()> {
        self.sequences += 1;
        self.tokens += ids.len() as u64;
        match self.format {
            ExportFormat::Jsonl => {
                let mut line = match id {
                    Some(id) => serde_json::json!({"id": id, "input_ids": ids}),
                    None => serde_json::json!({"input_ids": ids}),
                }
                .to_string();
                line.push('\n');
                self.data.write_all(line.as_bytes())?;
            }
            ExportFormat::Megatron | ExportFormat::Nanogpt => {
                self.buf.clear();
                for &t in ids {
                    match self.width {
                        Width::U16 => {
                            let t = u16::try_from(t)
                                .map_err(|_| EngineError::User(format!("token id {t} does not fit uint16")))?;
                            self.buf.extend_from_slice(&t.to_le_bytes());
                        }
                        Width::U32 => self.buf.extend_from_slice(&t.to_le_bytes()),
                    }
                }
                self.data.write_all(&self.buf)?;
                if self.format == ExportFormat::Megatron {
                    self.lengths.push(i32::try_from(ids.len()).context("a sequence longer than 2^31 tokens")?);
                }
            }
        }
        Ok(())
    }
}

/// Writes Megatron's `.idx` for sequences of `lengths` tokens of `width`, one document each.
fn write_megatron_index(path: &Path, lengths: &[i32], width: Width) -> anyhow::Result<()> {
    let mut w = BufWriter::new(std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?);
    let (code, size) = match width {
        Width::U16 => (MEGATRON_UINT16, 2i64),
        Width::U32 => (MEGATRON_INT32, 4i64),
    };
    w.write_all(b"MMIDIDX\x00\x00")?;
    w.write_all(&1u64.to_le_bytes())?;
    w.write_all(&[code])?;
    w.write_all(&(lengths.len() as u64).to_le_bytes())?;
    w.write_all(&(lengths.len() as u64 + 1).to_le_bytes())?;
    for l in lengths {
        w.write_all(&l.to_le_bytes())?;
    }
    let mut pointer = 0i64;
    for l in lengths {
        w.write_all(&pointer.to_le_bytes())?;
        pointer += i64::from(*l) * size;
    }
    for d in 0..=lengths.len() as i64 {
        w.write_all(&d.to_le_bytes())?;
    }
    w.flush()?;
    Ok(())
}

/// Runs `smelt export`.
///
/// # Errors
/// Unknown version, shards without `input_ids`, I/O failures.
pub async fn run(data_dir: &Path, args: &ExportArgs) -> anyhow::Result<()> {
    if args.pack == Some(0) {
        return Err(EngineError::User("--pack needs a positive sequence length".into()).into());
    }
    let (manifest, root) = {
        let c = Workspace::new(data_dir).open_catalog()?;
        let r: VersionRef = args.version.parse()?;
        let m = c.resolve(&r)?;
        let root = c.dataset(&m.dataset)?.map(|d| d.root_url).unwrap_or_default();
        (m, root)
    };
    if !manifest.schema.iter().any(|f| f.name == "input_ids") {
        return Err(EngineError::User(format!(
            "{}@{} has no `input_ids` column: add a `tokenize` stage to its pipeline",
            manifest.dataset, manifest.version
        ))
        .into());
    }
    let store = DatasetStore::open(&root)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let prefix = args.out.join(format!("{}-v{}", manifest.dataset, manifest.version));
    let with_ext = |ext: &str| PathBuf::from(format!("{}.{ext}", prefix.display()));

    let bar = progress(manifest.shards.iter().map(|s| s.bytes).sum(), !args.no_progress);
    // Buckets of about --shuffle-memory each: 4 bytes a token (plus ids), at most 4,096 files.
    let mut scatter = match args.shuffle {
        Shuffle::None => None,
        Shuffle::Global => {
            let size = (manifest.totals.tokens * 4 + manifest.totals.rows * 32).max(manifest.totals.bytes);
            let buckets = match args.shuffle_buckets {
                Some(n) => n.clamp(1, 4096),
                None => size.div_ceil((args.shuffle_memory << 20).max(1)).clamp(1, 4096) as usize,
            };
            Some(Scatter::new(args.seed, buckets, &args.out)?)
        }
    };
    let mut sink: Option<Sink> = None;
    let mut meta: std::collections::HashMap<String, String> = Default::default();
    let mut eos: Option<u32> = None;
    let mut pending: Vec<u32> = Vec::new();
    let mut rows = 0u64;
    for shard in &manifest.shards {
        let bytes = store.get(&shard.path).await?.ok_or_else(|| {
            EngineError::External(format!(
                "shard {} of {}@{} is missing",
                shard.path, manifest.dataset, manifest.version
            ))
        })?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes).with_context(|| format!("read {}", shard.path))?;
        if sink.is_none() {
            if let Some(kv) = builder.metadata().file_metadata().key_value_metadata() {
                meta = kv.iter().filter_map(|k| Some((k.key.clone(), k.value.clone()?))).collect();
            }
            let vocab: u64 = meta.get("smelt.vocab_size").and_then(|v| v.parse().ok()).unwrap_or(u64::from(u32::MAX));
            eos = meta.get("smelt.eos_id").and_then(|v| v.parse().ok());
            let width = match args.format {
                // Megatron picks uint16 below 65500 ids (DType.optimal_dtype), nanoGPT loaders below 65536.
                ExportFormat::Megatron if vocab < 65_500 => Width::U16,
                ExportFormat::Nanogpt if vocab <= 65_536 => Width::U16,
                _ => Width::U32,
            };
            let data_path = with_ext(if args.format == ExportFormat::Jsonl { "jsonl" } else { "bin" });
            let file = std::fs::File::create(&data_path).with_context(|| format!("create {}", data_path.display()))?;
            sink = Some(Sink {
                format: args.format,
                width,
                data: BufWriter::with_capacity(1 << 20, file),
                lengths: Vec::new(),
                tokens: 0,
                sequences: 0,
                buf: Vec::new(),
            });
        }
        let sink = sink.as_mut().expect("opened above");
        let schema = builder.parquet_schema();
        let wanted: Vec<usize> =
            ["id", "input_ids"].iter().filter_map(|name| builder.schema().index_of(name).ok()).collect();
        let mask = ProjectionMask::roots(schema, wanted);
        let reader = builder.with_projection(mask).with_batch_size(4096).build()?;
        for batch in reader {
            let batch = batch?;
            let ids = batch.column_by_name("input_ids").context("shard without input_ids")?.as_list::<i32>().clone();
            let doc_ids = batch.column_by_name("id").cloned();
            let values = ids.values().as_primitive::<UInt32Type>().values().clone();
            let offsets = ids.value_offsets();
            for r in 0..batch.num_rows() {
                rows += 1;
                let row = &values[offsets[r] as usize..offsets[r + 1] as usize];
                let mut out = |id: Option<&str>, ids: &[u32]| match &mut scatter {
                    Some(s) => s.push(id, ids),
                    None => sink.push(id, ids),
                };
                match args.pack {
                    None => {
                        let id = doc_ids.as_ref().and_then(|c| smelt_engine::str_at(c, r));
                        out(id, row)?;
                    }
                    Some(len) => {
                        // Rows carry the EOS the `tokenize` stage put at each document's end
                        // (split rows only on the last part), so the stream needs no more.
                        pending.extend_from_slice(row);
                        let full = pending.len() / len * len;
                        for chunk in pending[..full].chunks(len) {
                            out(None, chunk)?;
                        }
                        pending.drain(..full);
                    }
                }
            }
        }
        if let Some(b) = &bar {
            b.inc(shard.bytes);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let Some(mut sink) = sink else {
        return Err(
            EngineError::User(format!("{}@{} has no shards to export", manifest.dataset, manifest.version)).into()
        );
    };
    let buckets = match scatter {
        Some(s) => Some(s.drain(&mut sink)?),
        None => None,
    };
    sink.data.flush()?;
    let mut files = vec![with_ext(if args.format == ExportFormat::Jsonl { "jsonl" } else { "bin" })];
    if args.format == ExportFormat::Megatron {
        let idx = with_ext("idx");
        write_megatron_index(&idx, &sink.lengths, sink.width)?;
        files.push(idx);
    }
    let dtype = match (args.format, sink.width) {
        (ExportFormat::Jsonl, _) => "json",
        (_, Width::U16) => "uint16",
        (ExportFormat::Megatron, Width::U32) => "int32",
        (_, Width::U32) => "uint32",
    };
    let summary = serde_json::json!({
        "dataset": manifest.dataset,
        "version": manifest.version,
        "format": args.format.name(),
        "dtype": dtype,
        "tokenizer": meta.get("smelt.tokenizer"),
        "tokenizer_hash": meta.get("smelt.tokenizer_hash"),
        "vocab_size": meta.get("smelt.vocab_size").and_then(|v| v.parse::<u64>().ok()),
        "eos_id": eos,
        "rows": rows,
        "sequences": sink.sequences,
        "tokens": sink.tokens,
        "pack": args.pack,
        "dropped_tail_tokens": pending.len(),
        "shuffle": buckets.map(|b| serde_json::json!({"kind": "global", "seed": args.seed, "buckets": b})),
        "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
    });
    let meta_path = with_ext("json");
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("write {}", meta_path.display()))?;
    match args.summary {
        Format::Json => emit_json(&summary),
        Format::Table => {
            let rows_t = vec![
                vec!["version".into(), format!("{}@{}", manifest.dataset, manifest.version)],
                vec!["format".into(), format!("{} ({dtype})", args.format.name())],
                vec![
                    "tokenizer".into(),
                    format!(
                        "{} {}",
                        summary["tokenizer"].as_str().unwrap_or("-"),
                        summary["tokenizer_hash"].as_str().unwrap_or("")
                    ),
                ],
                vec!["rows".into(), rows.to_string()],
                vec!["sequences".into(), sink.sequences.to_string()],
                vec!["tokens".into(), sink.tokens.to_string()],
                vec![
                    "files".into(),
                    files.iter().chain([&meta_path]).map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
                ],
            ];
            emit(&table(&["", ""], &rows_t));
        }
    }
    Ok(())
}

fn progress(total: u64, enabled: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
