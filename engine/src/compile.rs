//! Pipeline YAML to a compiled DAG, in two phases with no I/O:
//!
//! ```text
//! text ──yaml::parse──► Node tree ──settings + stages──► StageConfigs ──edges──► petgraph DAG
//!                                                         ──cycles, kinds, schemas──► Pipeline
//! ```
//! Every problem found is reported at once as a [`Diagnostic`] with
//! file:line:column and the YAML path; the compiled [`Pipeline`] is a plain
//! value that `graph` prints and the executor runs.

use std::collections::{BTreeMap, HashMap};

use arrow::datatypes::SchemaRef;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::diagnostic::{closest, Diagnostic, Diagnostics};
use crate::stage::{ConfigureContext, SchemaError, StageConfig, StageKind, StageType};
use crate::yaml::{self, format_path, Node, PathSeg, Value};

/// Default rows per batch.
pub const DEFAULT_BATCH_ROWS: usize = 1024;
/// Default bound of each inter-stage channel, in bytes.
pub const DEFAULT_CHANNEL_BYTES: usize = 32 << 20;

/// Default memory budget of a barrier stage's global step, in bytes.
pub const DEFAULT_MEMORY_BUDGET: usize = 512 << 20;

/// Top-level keys of a pipeline file.
pub const SETTINGS: &[&str] = &[
    "dataset",
    "description",
    "output",
    "parallelism",
    "batch_rows",
    "channel_bytes",
    "memory_budget",
    "train",
    "schedule",
    "retention",
    "publish",
    "stages",
];

/// A stage of the compiled pipeline.
#[derive(Debug, Clone)]
pub struct StageNode {
    /// Name in the pipeline.
    pub name: String,
    /// `type:` name.
    pub type_name: String,
    /// Configured stage.
    pub config: StageConfig,
    /// Schema of its output (for a sink: of what it writes).
    pub schema: SchemaRef,
    /// Input stage names in the order given.
    pub inputs: Vec<String>,
    /// How the engine retries and times out this stage's work on a split.
    pub policy: crate::schedule::StagePolicy,
    /// Where the stage is defined in the pipeline file (its name's position).
    pub pos: crate::diagnostic::Pos,
}

/// A compiled pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it came from.
    pub file: String,
    /// xxh3-128 of the file's bytes, hex.
    pub hash: String,
    /// Dataset name.
    pub dataset: String,
    /// Dataset root location, if set in the file.
    pub output: Option<String>,
    /// Concurrent splits, if set in the file.
    pub parallelism: Option<usize>,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Bound of each inter-stage channel in bytes.
    pub channel_bytes: usize,
    /// Memory a barrier stage's global step may use, in bytes.
    pub memory_budget: usize,
    /// Command run (by `sh -c`) after a successful commit, with `SMELT_MANIFEST`,
    /// `SMELT_DATASET` and `SMELT_VERSION` in its environment.
    pub train: Option<String>,
    /// Phase of each node (by node index): the number of barriers upstream
    /// of it. A barrier observes in its inputs' phase and emits in the next.
    pub phases: Vec<u32>,
    /// When `smelt scheduler` runs it (`schedule:`), if set.
    pub schedule: Option<crate::schedule::Schedule>,
    /// Which versions stay after each commit (`retention:`); the others expire
    /// as `smelt catalog gc` expires them.
    pub retention: Option<smelt_catalog::gc::Retention>,
    /// Write-audit-publish (`publish:`): the tag moved to each committed
    /// version whose checks all hold.
    pub publish: Option<smelt_catalog::publish::Policy>,
    /// The DAG; edge weights are the input position at the consumer.
    pub graph: DiGraph<StageNode, usize>,
    /// Nodes in topological order, ties broken by file order.
    pub order: Vec<NodeIndex>,
    /// What the stages were configured with (pipeline and data directories).
    pub context: ConfigureContext,
}

impl Pipeline {
    /// The sink node.
    ///
    /// # Panics
    /// Never for a compiled pipeline (compilation requires exactly one sink).
    pub fn sink(&self) -> NodeIndex {
        *self
            .order
            .iter()
            .find(|&&n| self.graph[n].config.kind() == StageKind::Sink)
            .expect("a compiled pipeline has a sink")
    }

    /// `file:line:column` of stage `name`'s definition, if it is in the pipeline.
    pub fn locate(&self, name: &str) -> Option<String> {
        let n = self.order.iter().find(|&&n| self.graph[n].name == name)?;
        let pos = self.graph[*n].pos;
        Some(format!("{}:{}:{}", self.file, pos.line, pos.col))
    }

    /// Source nodes in file order.
    pub fn sources(&self) -> Vec<NodeIndex> {
        self.order.iter().copied().filter(|&n| self.graph[n].config.kind() == StageKind::Source).collect()
    }

    /// Barrier nodes, in the order their phases run.
    pub fn barriers(&self) -> Vec<NodeIndex> {
        let mut b: Vec<NodeIndex> =
            self.order.iter().copied().filter(|&n| self.graph[n].config.kind() == StageKind::Barrier).collect();
        b.sort_by_key(|n| self.phases[n.index()]);
        b
    }

    /// Inputs of `n`, ordered by input position.
    pub fn inputs_of(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut e: Vec<_> =
            self.graph.edges_directed(n, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
        e.sort();
        e.into_iter().map(|(_, s)| s).collect()
    }

    /// Every stage's resolved configuration (what lineage records and ranks compare).
    pub fn resolved_config(&self) -> serde_json::Value {
        let stages: Vec<serde_json::Value> = self
            .order
            .iter()
            .map(|&n| {
                let s = &self.graph[n];
                serde_json::json!({
                    "name": s.name,
                    "type": s.type_name,
                    "inputs": s.inputs,
                    "options": s.config.resolved(),
                })
            })
            .collect();
        serde_json::json!({
            "dataset": self.dataset,
            "output": self.output,
            "batch_rows": self.batch_rows,
            "stages": stages,
        })
    }
}

struct Ctx<'a> {
    file: &'a str,
    root: &'a Node,
    out: Vec<Diagnostic>,
    /// Handed to every stage factory.
    configure: &'a ConfigureContext,
}

impl Ctx<'_> {
    fn at(&mut self, path: &[PathSeg], at_key: bool, message: String, help: Option<String>) {
        let pos = self.root.locate(path, at_key);
        self.out.push(Diagnostic { file: self.file.to_string(), pos, path: format_path(path), message, help });
    }
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn positive_int(ctx: &mut Ctx<'_>, node: &Node, name: &str) -> Option<usize> {
    match node.value {
        Value::Int(i) if i >= 1 => Some(i as usize),
        _ => {
            ctx.at(&[key(name)], false, format!("`{name}` must be a positive integer, found {}", node.kind()), None);
            None
        }
    }
}

/// Keys of `publish:`.
pub const PUBLISH_KEYS: &[&str] = &["tag", "require"];

/// `publish: {tag: prod, require: [audit, "diff: docs_removed<5%"]}`.
fn parse_publish(node: &Node) -> Result<smelt_catalog::publish::Policy, Vec<crate::schedule::Problem>> {
    let example = Some("for example\npublish:\n  tag: prod\n  require: [audit, \"diff: docs_removed<5%\"]".to_string());
    let Some(entries) = node.as_map() else {
        return Err(vec![(Vec::new(), false, format!("`publish` must be a mapping, found {}", node.kind()), example)]);
    };
    let (mut tag, mut require, mut problems) = (None, Vec::new(), Vec::new());
    for (k, v) in entries {
        let name = k.as_str().unwrap_or_default();
        match name {
            "tag" => match v.as_str() {
                Some(t) if smelt_catalog::index::valid_tag(t) => tag = Some(t.to_string()),
                _ => problems.push((
                    vec![key("tag")],
                    false,
                    "`tag` must be a tag name: letters, digits, `-`, `_`, `.`, not a number, not `latest`".to_string(),
                    None,
                )),
            },
            "require" => match &v.value {
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let parsed = match item.as_str() {
                            Some(text) => smelt_catalog::publish::Requirement::parse(text).map_err(|e| e.to_string()),
                            None => Err(format!("a check is a string, found {}", item.kind())),
                        };
                        match parsed {
                            Ok(r) => require.push(r),
                            Err(m) => problems.push((vec![key("require"), PathSeg::Index(i)], false, m, None)),
                        }
                    }
                }
                _ => problems.push((
                    vec![key("require")],
                    false,
                    format!("`require` must be a list of checks, found {}", v.kind()),
                    None,
                )),
            },
            other => problems.push((
                vec![key(other)],
                true,
                format!("unknown publish setting `{other}`; settings are: {}", PUBLISH_KEYS.join(", ")),
                closest(other, PUBLISH_KEYS.iter().copied()).map(|c| format!("did you mean `{c}`?")),
            )),
        }
    }
    if tag.is_none() && problems.is_empty() {
        problems.push((
            Vec::new(),
            false,
            "`publish` needs `tag`: the tag a version gets when its checks hold".into(),
            example,
        ));
    }
    match tag {
        Some(tag) if problems.is_empty() => Ok(smelt_catalog::publish::Policy { tag, require }),
        _ => Err(problems),
    }
}

/// Keys of `retention:`.
pub const RETENTION_KEYS: &[&str] = &["keep_last", "keep_days", "keep_tagged", "keep_trained"];

/// `retention: {keep_last: N, keep_days: D, keep_tagged: bool, keep_trained: bool}`; at least one
/// of `keep_last` and `keep_days` (the others only keep more).
fn parse_retention(node: &Node) -> Result<smelt_catalog::gc::Retention, Vec<crate::schedule::Problem>> {
    let example = Some("for example\nretention:\n  keep_last: 10\n  keep_tagged: true".to_string());
    let Some(entries) = node.as_map() else {
        return Err(vec![(
            Vec::new(),
            false,
            format!("`retention` must be a mapping, found {}", node.kind()),
            example,
        )]);
    };
    let mut r = smelt_catalog::gc::Retention::default();
    let mut problems = Vec::new();
    for (k, v) in entries {
        let name = k.as_str().unwrap_or_default();
        let bad = |what: &str| (vec![key(name)], false, format!("`{name}` must be {what}, found {}", v.kind()), None);
        match (name, &v.value) {
            ("keep_last", Value::Int(i)) if *i >= 1 => r.keep_last = Some(*i as usize),
            ("keep_last", _) => problems.push(bad("a positive integer (the latest version always stays)")),
            ("keep_days", Value::Int(i)) if *i > 0 => r.keep_days = Some(*i as f64),
            ("keep_days", Value::Float(f)) if *f > 0.0 => r.keep_days = Some(*f),
            ("keep_days", _) => problems.push(bad("a positive number of days")),
            ("keep_tagged", Value::Bool(b)) => r.keep_tagged = *b,
            ("keep_trained", Value::Bool(b)) => r.keep_trained = *b,
            ("keep_tagged" | "keep_trained", _) => problems.push(bad("true or false")),
            (other, _) => problems.push((
                vec![key(other)],
                true,
                format!("unknown retention setting `{other}`; settings are: {}", RETENTION_KEYS.join(", ")),
                closest(other, RETENTION_KEYS.iter().copied()).map(|c| format!("did you mean `{c}`?")),
            )),
        }
    }
    if problems.is_empty() && !r.expires() {
        problems.push((
            Vec::new(),
            false,
            "`retention` needs `keep_last` or `keep_days`: without them no version expires".into(),
            example,
        ));
    }
    if problems.is_empty() {
        Ok(r)
    } else {
        Err(problems)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !s.starts_with('.')
}

/// Compiles a pipeline file's text; `context` is handed to every stage
/// factory and kept in the [`Pipeline`].
///
/// # Errors
/// Every problem found, each with its position.
pub fn compile(
    file: &str,
    text: &str,
    registry: &[StageType],
    context: &ConfigureContext,
) -> Result<Pipeline, Diagnostics> {
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic {
                file: file.to_string(),
                pos: e.pos,
                path: String::new(),
                message: format!("invalid YAML: {}", e.message),
                help: None,
            }]))
        }
    };
    let mut ctx = Ctx { file, root: &root, out: Vec::new(), configure: context };
    let Some(top) = root.as_map() else {
        ctx.at(
            &[],
            false,
            format!("a pipeline is a mapping with `dataset:` and `stages:`, found {}", root.kind()),
            None,
        );
        return Err(Diagnostics(ctx.out));
    };

    let mut dataset = None;
    let mut output = None;
    let mut parallelism = None;
    let mut batch_rows = DEFAULT_BATCH_ROWS;
    let mut channel_bytes = DEFAULT_CHANNEL_BYTES;
    let mut memory_budget = DEFAULT_MEMORY_BUDGET;
    let mut train = None;
    let mut schedule = None;
    let mut retention = None;
    let mut publish = None;
    let mut stages_node = None;
    for (k, v) in top {
        let name = k.as_str().unwrap_or_default();
        match name {
            "dataset" => match v.as_str() {
                Some(s) if valid_name(s) => dataset = Some(s.to_string()),
                _ => ctx.at(
                    &[key("dataset")],
                    false,
                    "`dataset` must be a name of letters, digits, `_`, `-` or `.`".into(),
                    Some("for example `dataset: cc-news`".into()),
                ),
            },
            "description" => {}
            "output" => match v.as_str() {
                Some(s) if !s.is_empty() => output = Some(s.to_string()),
                _ => ctx.at(&[key("output")], false, "`output` must be a path or object store URL".into(), None),
            },
            "parallelism" => parallelism = positive_int(&mut ctx, v, "parallelism"),
            "batch_rows" => batch_rows = positive_int(&mut ctx, v, "batch_rows").unwrap_or(batch_rows),
            "channel_bytes" => channel_bytes = positive_int(&mut ctx, v, "channel_bytes").unwrap_or(channel_bytes),
            "memory_budget" => memory_budget = positive_int(&mut ctx, v, "memory_budget").unwrap_or(memory_budget),
            "train" => match v.as_str() {
                Some(s) if !s.trim().is_empty() => train = Some(s.to_string()),
                _ => {
                    ctx.at(&[key("train")], false, "`train` must be a command line, run after each commit".into(), None)
                }
            },
            "schedule" => match crate::schedule::parse_schedule(v) {
                Ok(s) => schedule = Some(s),
                Err(problems) => {
                    for (path, at_key, message, help) in problems {
                        let mut p = vec![key("schedule")];
                        p.extend(path);
                        ctx.at(&p, at_key, message, help);
                    }
                }
            },
            "retention" => match parse_retention(v) {
                Ok(r) => retention = Some(r),
                Err(problems) => {
                    for (path, at_key, message, help) in problems {
                        let mut p = vec![key("retention")];
                        p.extend(path);
                        ctx.at(&p, at_key, message, help);
                    }
                }
            },
            "publish" => match parse_publish(v) {
                Ok(r) => publish = Some(r),
                Err(problems) => {
                    for (path, at_key, message, help) in problems {
                        let mut p = vec![key("publish")];
                        p.extend(path);
                        ctx.at(&p, at_key, message, help);
                    }
                }
            },
            "stages" => stages_node = Some(v),
            other => {
                let help = closest(other, SETTINGS.iter().copied()).map(|c| format!("did you mean `{c}`?"));
                ctx.at(
                    &[key(other)],
                    true,
                    format!("unknown pipeline setting `{other}`; settings are: {}", SETTINGS.join(", ")),
                    help,
                );
            }
        }
    }
    if dataset.is_none() && !top.iter().any(|(k, _)| k.as_str() == Some("dataset")) {
        ctx.at(&[], false, "missing `dataset:` (the name of the dataset this pipeline writes)".into(), None);
    }

    // Stages.
    let mut graph: DiGraph<StageNode, usize> = DiGraph::new();
    let mut index: HashMap<String, NodeIndex> = HashMap::new();
    let mut file_order: Vec<(NodeIndex, Vec<(String, Vec<PathSeg>)>)> = Vec::new();
    let mut all_names: Vec<String> = Vec::new();
    // Stages whose own definition failed: their inputs are still checked.
    let mut broken: Vec<(String, InputRefs)> = Vec::new();
    match stages_node.map(|n| (n, n.as_map())) {
        None => ctx.at(&[], false, "missing `stages:` (a mapping of stage name to stage)".into(), None),
        Some((n, None)) => ctx.at(
            &[key("stages")],
            false,
            format!("`stages` must be a mapping of stage name to stage, found {}", n.kind()),
            None,
        ),
        Some((_, Some(stages))) => {
            all_names = stages.iter().filter_map(|(k, _)| k.as_str().map(str::to_string)).collect();
            for (k, v) in stages {
                let name = k.as_str().unwrap_or_default().to_string();
                let base = vec![key("stages"), key(&name)];
                if !valid_name(&name) {
                    ctx.at(&base, true, format!("stage name `{name}` must be letters, digits, `_`, `-` or `.`"), None);
                }
                let (node, inputs) = compile_stage(&mut ctx, registry, &name, v, &base);
                match node {
                    Some(node) => {
                        let idx = graph.add_node(node);
                        index.insert(name.clone(), idx);
                        file_order.push((idx, inputs));
                    }
                    None => broken.push((name.clone(), inputs)),
                }
            }
        }
    }

    // Edges.
    let named: Vec<(Option<NodeIndex>, String, &InputRefs)> = file_order
        .iter()
        .map(|(idx, inputs)| (Some(*idx), graph[*idx].name.clone(), inputs))
        .chain(broken.iter().map(|(name, inputs)| (None, name.clone(), inputs)))
        .collect();
    for (idx, name, inputs) in named {
        for (pos, (input, path)) in inputs.iter().enumerate() {
            match (index.get(input), idx) {
                (Some(&src), Some(idx)) => {
                    graph.add_edge(src, idx, pos);
                }
                (Some(_), None) => {}
                (None, _) if all_names.iter().any(|n| n == input) => {} // that stage has its own error
                (None, _) => {
                    let help = closest(input, all_names.iter().map(String::as_str).filter(|n| *n != name))
                        .map(|c| format!("did you mean `{c}`?"))
                        .or_else(|| Some(format!("stages are: {}", all_names.join(", "))));
                    ctx.at(path, false, format!("stage `{name}` reads from `{input}`, which is not a stage"), help);
                }
            }
        }
    }

    let order = match topo_order(&graph, &file_order.iter().map(|(i, _)| *i).collect::<Vec<_>>()) {
        Ok(order) => order,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&n| graph[n].name.as_str()).collect();
            let first = names[0].to_string();
            ctx.at(
                &[key("stages"), key(&first), key("inputs")],
                false,
                format!("the stages form a cycle: {}", names.join(" -> ")),
                Some("a pipeline is a DAG: remove one of these inputs".into()),
            );
            return Err(finish(ctx));
        }
    };

    // Kinds, sinks and schemas, in topological order.
    let sinks: Vec<NodeIndex> = order.iter().copied().filter(|&n| graph[n].config.kind() == StageKind::Sink).collect();
    if !file_order.is_empty() || stages_node.is_some() {
        if sinks.is_empty() && ctx.out.is_empty() {
            ctx.at(&[key("stages")], false, "the pipeline has no sink: add a stage with `type: parquet`".into(), None);
        }
        if order.iter().all(|&n| graph[n].config.kind() != StageKind::Source) && ctx.out.is_empty() {
            ctx.at(
                &[key("stages")],
                false,
                "the pipeline has no source: add a stage such as `type: warc`".into(),
                None,
            );
        }
    }
    for &extra in sinks.iter().skip(1) {
        let name = graph[extra].name.clone();
        ctx.at(
            &[key("stages"), key(&name)],
            true,
            format!("a pipeline writes one dataset through one sink; `{}` is a second sink", name),
            Some(format!("remove `{name}` or write a second pipeline for the other dataset")),
        );
    }
    let mut schemas: HashMap<NodeIndex, SchemaRef> = HashMap::new();
    for &n in &order {
        let inputs: Vec<NodeIndex> = {
            let mut e: Vec<_> =
                graph.edges_directed(n, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
            e.sort();
            e.into_iter().map(|(_, s)| s).collect()
        };
        let name = graph[n].name.clone();
        let base = vec![key("stages"), key(&name)];
        let consumers = graph.edges_directed(n, Direction::Outgoing).count();
        match graph[n].config.kind() {
            StageKind::Sink if consumers > 0 => {
                ctx.at(&base, true, format!("`{name}` is a sink; no stage can read from it"), None)
            }
            StageKind::Source | StageKind::Transform | StageKind::Barrier
                if consumers == 0 && !sinks.is_empty() && broken.is_empty() && ctx.out.is_empty() =>
            {
                ctx.at(
                    &base,
                    true,
                    format!("stage `{name}` feeds nothing"),
                    Some(format!("list `{name}` in the `inputs:` of a later stage, or remove it")),
                )
            }
            _ => {}
        }
        let in_schemas: Vec<SchemaRef> = inputs.iter().filter_map(|i| schemas.get(i).cloned()).collect();
        if in_schemas.len() != inputs.len() {
            continue; // an input already failed; do not pile up follow-on errors
        }
        if in_schemas.len() > 1 {
            let first = &in_schemas[0];
            if let Some(k) = in_schemas.iter().position(|s| !same_fields(s, first)) {
                ctx.at(
                    &[key("stages"), key(&name), key("inputs")],
                    false,
                    format!(
                        "the inputs of `{name}` have different columns: `{}` has [{}], `{}` has [{}]",
                        graph[inputs[0]].name,
                        describe(first),
                        graph[inputs[k]].name,
                        describe(&in_schemas[k])
                    ),
                    Some("stages that share a consumer must produce the same columns".into()),
                );
                continue;
            }
        }
        let result = match &graph[n].config {
            StageConfig::Source(c) => Ok(c.schema()),
            StageConfig::Transform(c) => match in_schemas.first() {
                Some(s) => c.output_schema(s),
                None => continue,
            },
            StageConfig::Barrier(c) => match in_schemas.first() {
                Some(s) => c.output_schema(s),
                None => continue,
            },
            StageConfig::Sink(c) => match in_schemas.first() {
                Some(s) => c.check_input(s).map(|()| s.clone()),
                None => continue,
            },
        };
        match result {
            Ok(s) => {
                graph[n].schema = s.clone();
                schemas.insert(n, s);
            }
            Err(SchemaError(message, Some((option, help)))) => {
                let mut path = vec![key("stages"), key(&name)];
                path.extend(option);
                ctx.at(&path, false, format!("stage `{name}` ({}): {message}", graph[n].type_name), help);
            }
            Err(e) => {
                let from: Vec<&str> = inputs.iter().map(|&i| graph[i].name.as_str()).collect();
                ctx.at(
                    &[key("stages"), key(&name), key("inputs")],
                    false,
                    format!("stage `{name}` ({}) {} (input: {})", graph[n].type_name, e.0, from.join(", ")),
                    Some("add a stage before it that produces the column".into()),
                );
            }
        }
    }

    let phases = if ctx.out.is_empty() { phases_of(&graph, &order, &mut ctx) } else { Vec::new() };
    if ctx.out.is_empty() {
        check_appending(&graph, &order, &mut ctx);
    }
    if !ctx.out.is_empty() {
        return Err(finish(ctx));
    }
    let Some(dataset) = dataset else { return Err(finish(ctx)) };
    Ok(Pipeline {
        file: file.to_string(),
        hash: format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes())),
        dataset,
        output,
        parallelism,
        batch_rows,
        channel_bytes,
        memory_budget,
        train,
        schedule,
        retention,
        publish,
        phases,
        graph,
        order,
        context: context.clone(),
    })
}

/// A source that appends to the latest version (`incremental: true`) must
/// be the only source, and no stage may compare documents across the whole
/// input: it would see only the new ones, and the result would differ from a
/// build from scratch.
fn check_appending(graph: &DiGraph<StageNode, usize>, order: &[NodeIndex], ctx: &mut Ctx<'_>) {
    let appends = |n: &NodeIndex| matches!(&graph[*n].config, StageConfig::Source(c) if c.appends());
    let Some(&source) = order.iter().find(|n| appends(n)) else { return };
    let name = graph[source].name.clone();
    let at = vec![key("stages"), key(&name), key("incremental")];
    for &n in order {
        let other = &graph[n];
        let (why, help) = match &other.config {
            StageConfig::Source(_) if n != source => (
                format!(
                    "`{}` is another source: an incremental read appends to the latest version, so the pipeline may \
                     have only this source",
                    other.name
                ),
                "read each upstream in its own pipeline, or set `incremental: false`",
            ),
            StageConfig::Barrier(_) => (
                format!(
                    "`{}` ({}) compares documents across the whole input, and an incremental run reads only the new \
                     ones",
                    other.name, other.type_name
                ),
                "deduplicate in the upstream pipeline, or read with `incremental: false`",
            ),
            _ => continue,
        };
        ctx.at(&at, true, format!("`{name}` has `incremental: true`, but {why}"), Some(help.into()));
        return;
    }
}

/// Each node's phase (see [`Pipeline::phases`]). A stage whose inputs lie on
/// different sides of a barrier, or two barriers in one phase, are errors:
/// the executor runs one barrier at a time, each split in order.
fn phases_of(graph: &DiGraph<StageNode, usize>, order: &[NodeIndex], ctx: &mut Ctx<'_>) -> Vec<u32> {
    let mut phase = vec![0u32; graph.node_count()];
    let mut barrier_in_phase: BTreeMap<u32, NodeIndex> = BTreeMap::new();
    for &n in order {
        let ins: Vec<(u32, NodeIndex)> = graph
            .edges_directed(n, Direction::Incoming)
            .map(|e| {
                let i = e.source();
                (phase[i.index()] + u32::from(graph[i].config.kind() == StageKind::Barrier), i)
            })
            .collect();
        let p = ins.iter().map(|(p, _)| *p).max().unwrap_or(0);
        let name = &graph[n].name;
        if let Some((q, before)) = ins.iter().find(|(q, _)| *q != p) {
            let (_, after) = ins.iter().find(|(q, _)| *q == p).expect("the max is an input");
            ctx.at(
                &[key("stages"), key(name), key("inputs")],
                false,
                format!(
                    "`{name}` reads from both sides of a barrier stage: `{}` is behind {q} barrier(s), `{}` behind {p}",
                    graph[*before].name, graph[*after].name
                ),
                Some("every input of a stage must pass through the same barrier stages (dedup, shuffles)".into()),
            );
        }
        phase[n.index()] = p;
        if graph[n].config.kind() == StageKind::Barrier {
            if let Some(first) = barrier_in_phase.insert(p, n) {
                ctx.at(
                    &[key("stages"), key(name)],
                    true,
                    format!(
                        "barrier stages `{}` and `{name}` run side by side; smelt runs one barrier at a time",
                        graph[first].name
                    ),
                    Some(format!("chain them: make `{name}` read (through its inputs) from `{}`", graph[first].name)),
                );
            }
        }
    }
    phase
}

fn finish(ctx: Ctx<'_>) -> Diagnostics {
    let mut out = ctx.out;
    out.sort_by(|a, b| a.pos.cmp(&b.pos));
    out.dedup();
    Diagnostics(out)
}

fn same_fields(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

fn describe(s: &SchemaRef) -> String {
    s.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

type InputRefs = Vec<(String, Vec<PathSeg>)>;

fn compile_stage(
    ctx: &mut Ctx<'_>,
    registry: &[StageType],
    name: &str,
    node: &Node,
    base: &[PathSeg],
) -> (Option<StageNode>, InputRefs) {
    let Some(entries) = node.as_map() else {
        ctx.at(base, false, format!("stage `{name}` must be a mapping with `type:`, found {}", node.kind()), None);
        return (None, Vec::new());
    };
    let with = |k: &str| -> Vec<PathSeg> {
        let mut p = base.to_vec();
        p.push(key(k));
        p
    };
    let mut type_name = None;
    let mut inputs: InputRefs = Vec::new();
    let mut has_inputs = false;
    let mut options = serde_json::Map::new();
    let mut policy = crate::schedule::StagePolicy::default();
    // `mode: annotate | drop` (the engine's); another `mode` value is the stage's own option (python's).
    let mut mode: Option<(&crate::yaml::Node, Vec<PathSeg>)> = None;
    for (k, v) in entries {
        let k = k.as_str().unwrap_or_default();
        match k {
            "mode" => mode = Some((v, with("mode"))),
            "type" => match v.as_str() {
                Some(t) => type_name = Some(t.to_string()),
                None => {
                    ctx.at(&with("type"), false, format!("`type` must be a stage type name, found {}", v.kind()), None)
                }
            },
            "inputs" => {
                has_inputs = true;
                match &v.value {
                    Value::Str(s) => inputs.push((s.clone(), with("inputs"))),
                    Value::Seq(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let mut p = with("inputs");
                            p.push(PathSeg::Index(i));
                            match item.as_str() {
                                Some(s) => inputs.push((s.to_string(), p)),
                                None => {
                                    ctx.at(&p, false, format!("an input is a stage name, found {}", item.kind()), None)
                                }
                            }
                        }
                    }
                    _ => ctx.at(
                        &with("inputs"),
                        false,
                        format!("`inputs` is a stage name or a list of them, found {}", v.kind()),
                        None,
                    ),
                }
            }
            "description" => {}
            k if crate::schedule::STAGE_POLICY_KEYS.contains(&k) => {
                let mut problems = Vec::new();
                crate::schedule::stage_policy_key(&mut policy, k, v, &mut problems);
                for (path, at_key, message, help) in problems {
                    let mut p = base.to_vec();
                    p.extend(path);
                    ctx.at(&p, at_key, format!("stage `{name}`: {message}"), help);
                }
            }
            _ => {
                options.insert(k.to_string(), v.to_json());
            }
        }
    }
    let Some(type_name) = type_name else {
        ctx.at(
            base,
            true,
            format!("stage `{name}` has no `type:`"),
            Some(format!("stage types are: {}", type_names(registry))),
        );
        return (None, inputs);
    };
    let Some(st) = registry.iter().find(|t| t.name == type_name) else {
        let help = closest(&type_name, registry.iter().map(|t| t.name))
            .map(|c| format!("did you mean `{c}`?"))
            .or_else(|| Some(format!("stage types are: {}", type_names(registry))));
        ctx.at(&with("type"), false, format!("unknown stage type `{type_name}`"), help);
        return (None, inputs);
    };
    let mut annotate = false;
    if let Some((v, path)) = mode {
        match v.as_str() {
            Some("annotate") => annotate = true,
            Some("drop") => {}
            _ if stage_has_option(st, "mode") => {
                options.insert("mode".to_string(), v.to_json());
            }
            _ => ctx.at(
                &path,
                false,
                format!("`mode` is `drop` (the default) or `annotate`, found {}", v.to_json()),
                Some("annotate keeps every row and lists the reasons it would be dropped for in `would_drop`".into()),
            ),
        }
        if annotate && matches!(st.kind, StageKind::Source | StageKind::Sink) {
            ctx.at(
                &path,
                false,
                format!(
                    "`{name}` is a {} and drops nothing: `mode: annotate` is for transforms and barriers",
                    if st.kind == StageKind::Source { "source" } else { "sink" }
                ),
                None,
            );
            annotate = false;
        }
    }
    let mut seen = BTreeMap::new();
    for (input, path) in &inputs {
        if input == name {
            ctx.at(path, false, format!("stage `{name}` reads from itself"), None);
        } else if seen.insert(input.clone(), ()).is_some() {
            ctx.at(path, false, format!("`{input}` is listed twice in the inputs of `{name}`"), None);
        }
    }
    match (st.kind, has_inputs) {
        (StageKind::Source, true) => ctx.at(
            &with("inputs"),
            true,
            format!("`{name}` is a source (type `{type_name}`) and takes no `inputs`"),
            None,
        ),
        (StageKind::Transform | StageKind::Barrier | StageKind::Sink, false) => ctx.at(
            base,
            true,
            format!("stage `{name}` (type `{type_name}`) needs `inputs:`, the stages it reads from"),
            None,
        ),
        _ => {}
    }
    let configure = if annotate {
        std::borrow::Cow::Owned(crate::ConfigureContext { annotate: true, ..ctx.configure.clone() })
    } else {
        std::borrow::Cow::Borrowed(ctx.configure)
    };
    let config = match (st.configure)(serde_json::Value::Object(options), &configure) {
        Ok(c) if annotate => crate::annotate::wrap(c).expect("a transform or barrier"),
        Ok(c) => c,
        Err(e) => {
            let mut p = base.to_vec();
            p.extend(e.path.iter().cloned());
            let help = if e.at_key {
                let field = e.message.split('`').nth(1).unwrap_or_default().to_string();
                let expected: Vec<&str> = e.message.split("expected one of ").nth(1).map_or(Vec::new(), |rest| {
                    rest.split(',').map(|s| s.trim().trim_matches('`')).filter(|s| !s.is_empty()).collect()
                });
                closest(&field, expected.iter().copied())
                    .map(|c| format!("did you mean `{c}`?"))
                    .or_else(|| Some(format!("see `smelt stages {type_name}` for its options")))
            } else {
                None
            };
            ctx.at(&p, e.at_key, format!("stage `{name}` (type `{type_name}`): {}", e.message), help);
            return (None, inputs);
        }
    };
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::empty());
    let node = StageNode {
        name: name.to_string(),
        type_name,
        config,
        schema,
        inputs: inputs.iter().map(|(n, _)| n.clone()).collect(),
        policy,
        pos: ctx.root.locate(base, true),
    };
    (Some(node), inputs)
}

/// Whether the stage type's options have a property `option`.
fn stage_has_option(st: &StageType, option: &str) -> bool {
    let mut generator = schemars::SchemaGenerator::default();
    let schema = (st.options)(&mut generator);
    schema.as_value().get("properties").and_then(|p| p.get(option)).is_some()
}

fn type_names(registry: &[StageType]) -> String {
    registry.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

/// Topological order preferring file order; on a cycle, the cycle as a path
/// that starts and ends at the same node.
fn topo_order(graph: &DiGraph<StageNode, usize>, file_order: &[NodeIndex]) -> Result<Vec<NodeIndex>, Vec<NodeIndex>> {
    let mut indegree: HashMap<NodeIndex, usize> =
        file_order.iter().map(|&n| (n, graph.edges_directed(n, Direction::Incoming).count())).collect();
    let mut order = Vec::with_capacity(file_order.len());
    let mut done = vec![false; graph.node_count()];
    loop {
        let Some(&next) = file_order.iter().find(|&&n| !done[n.index()] && indegree[&n] == 0) else { break };
        done[next.index()] = true;
        order.push(next);
        for e in graph.edges_directed(next, Direction::Outgoing) {
            if let Some(d) = indegree.get_mut(&e.target()) {
                *d -= 1;
            }
        }
    }
    if order.len() == file_order.len() {
        return Ok(order);
    }
    // Walk backwards along incoming edges among the remaining nodes until a node repeats.
    let start = *file_order.iter().find(|&&n| !done[n.index()]).expect("a remaining node");
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let prev = graph
            .edges_directed(cur, Direction::Incoming)
            .map(|e| e.source())
            .filter(|s| !done[s.index()])
            .min_by_key(|s| file_order.iter().position(|f| f == s))
            .expect("a node left in a cycle has a remaining input");
        if let Some(at) = path.iter().position(|&p| p == prev) {
            let mut cycle: Vec<NodeIndex> = path[at..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(prev);
        cur = prev;
    }
}
