//! OpenLineage run events for `smelt run`: START when a run starts, COMPLETE
//! with the committed version (or FAIL with the error), so a lineage server
//! (Marquez, DataHub, OpenMetadata, ...) sees smelt's datasets beside the jobs
//! around it.
//!
//! ```text
//! --openlineage URL | file:PATH   (else OPENLINEAGE_URL [+ OPENLINEAGE_ENDPOINT, OPENLINEAGE_API_KEY])
//!   START    job {namespace, name: dataset}, run {runId: UUID of the smelt run id, facets.smelt: run id, pipeline}
//!   COMPLETE inputs: the version's input splits (file, URL), outputs: dataset with facets.version = version number
//!   FAIL     run facets.errorMessage
//!   ──► POST {url}{endpoint} (JSON, 10 s timeout) | one JSON line appended to PATH
//! ```
//! Events follow the OpenLineage 2-0-2 RunEvent schema. Sending never fails
//! or delays a run beyond the timeout: an unreachable server is a warning.

use std::io::Write as _;
use std::path::PathBuf;

use serde_json::{json, Value};

const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const ERROR_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const VERSION_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet";

fn producer() -> String {
    format!("https://github.com/smelt-data/smelt/tree/v{}", env!("CARGO_PKG_VERSION"))
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// POST to `url` + `endpoint`, with a bearer token if given.
    Http {
        /// Server base URL.
        url: String,
        /// Path of the lineage endpoint (`/api/v1/lineage`).
        endpoint: String,
        /// `OPENLINEAGE_API_KEY`.
        api_key: Option<String>,
    },
    /// Append one JSON line per event.
    File(PathBuf),
}

impl Target {
    /// `URL` or `file:PATH`.
    ///
    /// # Errors
    /// Anything else (the message says what to write).
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Some(p) = s.strip_prefix("file:") {
            return Ok(Target::File(PathBuf::from(p.strip_prefix("//").unwrap_or(p))));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Target::Http {
                url: s.trim_end_matches('/').to_string(),
                endpoint: endpoint_env(),
                api_key: None,
            });
        }
        Err(format!("OpenLineage target `{s}`: give an http(s):// URL of the lineage server or file:PATH"))
    }

    /// The standard client variables: `OPENLINEAGE_URL` (+ `OPENLINEAGE_ENDPOINT`, `OPENLINEAGE_API_KEY`).
    pub fn from_env() -> Option<Target> {
        let url = std::env::var("OPENLINEAGE_URL").ok().filter(|u| !u.trim().is_empty())?;
        let mut t = Target::parse(url.trim()).ok()?;
        if let Target::Http { api_key, .. } = &mut t {
            *api_key = std::env::var("OPENLINEAGE_API_KEY").ok().filter(|k| !k.is_empty());
        }
        Some(t)
    }
}

fn endpoint_env() -> String {
    let e = std::env::var("OPENLINEAGE_ENDPOINT").unwrap_or_else(|_| "api/v1/lineage".into());
    format!("/{}", e.trim_start_matches('/'))
}

/// Emits the events of one run.
#[derive(Debug, Clone)]
pub struct Emitter {
    target: Target,
    namespace: String,
    job: String,
    run_id: String,
    pipeline: String,
}

/// The UUID OpenLineage wants for a smelt run id: its xxh3-128 with the
/// version nibble 8 (custom) and the RFC 4122 variant; the same id gives the
/// same UUID, so START and COMPLETE (and a resumed run) match.
pub fn run_uuid(run_id: &str) -> String {
    let mut b = xxhash_rust::xxh3::xxh3_128(run_id.as_bytes()).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl Emitter {
    /// Events of run `run_id` of the pipeline making `dataset`, in job namespace
    /// `OPENLINEAGE_NAMESPACE` (default `smelt`).
    pub fn new(target: Target, dataset: &str, run_id: &str, pipeline: &str) -> Self {
        let namespace =
            std::env::var("OPENLINEAGE_NAMESPACE").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| "smelt".into());
        Emitter {
            target,
            namespace,
            job: dataset.to_string(),
            run_id: run_id.to_string(),
            pipeline: pipeline.to_string(),
        }
    }

    fn event(&self, kind: &str, run_facets: Value, inputs: Value, outputs: Value) -> Value {
        let mut facets = json!({"smelt": {"_producer": producer(), "_schemaURL": format!("{}#smelt", producer()),
            "runId": self.run_id, "pipeline": self.pipeline}});
        if let (Some(f), Some(extra)) = (facets.as_object_mut(), run_facets.as_object()) {
            f.extend(extra.clone());
        }
        json!({
            "eventType": kind,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "producer": producer(),
            "schemaURL": SCHEMA_URL,
            "run": {"runId": run_uuid(&self.run_id), "facets": facets},
            "job": {"namespace": self.namespace, "name": self.job, "facets": {}},
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    /// START.
    pub async fn start(&self) {
        self.send(self.event("START", json!({}), json!([]), json!([]))).await;
    }

    /// COMPLETE with the committed version: its input splits and the dataset at that version.
    pub async fn complete(&self, manifest: &smelt_catalog::VersionManifest, root_url: &str) {
        let inputs: Vec<Value> = manifest.lineage.inputs.iter().map(|s| input_dataset(&s.id)).collect();
        let output = json!({
            "namespace": root_url,
            "name": manifest.dataset,
            "facets": {"version": {"_producer": producer(), "_schemaURL": VERSION_FACET,
                "datasetVersion": manifest.version.to_string()}},
            "outputFacets": {},
        });
        let facets = json!({"smelt_version": {"_producer": producer(), "_schemaURL": format!("{}#smelt_version", producer()),
            "dataset": manifest.dataset, "version": manifest.version, "digest": manifest.digest, "rows": manifest.totals.rows}});
        self.send(self.event("COMPLETE", facets, Value::Array(inputs), json!([output]))).await;
    }

    /// FAIL with the error's message.
    pub async fn fail(&self, message: &str) {
        let facets = json!({"errorMessage": {"_producer": producer(), "_schemaURL": ERROR_FACET,
            "message": message, "programmingLanguage": "rust"}});
        self.send(self.event("FAIL", facets, json!([]), json!([]))).await;
    }

    async fn send(&self, event: Value) {
        let kind = event["eventType"].as_str().unwrap_or("").to_string();
        let result: Result<(), String> = match &self.target {
            Target::File(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(format!("{event}\n").as_bytes()))
                .map_err(|e| format!("cannot append to {}: {e}", path.display())),
            Target::Http { url, endpoint, api_key } => {
                post(&format!("{url}{endpoint}"), api_key.as_deref(), &event).await
            }
        };
        if let Err(e) = result {
            tracing::warn!("OpenLineage {kind} event of run {} not delivered: {e}", self.run_id);
            eprintln!("warning: OpenLineage {kind} event of run {} not delivered: {e}", self.run_id);
        }
    }
}

/// An input split as an OpenLineage dataset: namespace = scheme and authority, name = path.
fn input_dataset(id: &str) -> Value {
    let id = id.split(" [").next().unwrap_or(id); // "path [range]" -> path
    match id.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            json!({"namespace": format!("{scheme}://{authority}"), "name": format!("/{path}"), "facets": {}})
        }
        None => json!({"namespace": "file", "name": id, "facets": {}}),
    }
}

/// POSTs the event as JSON; a 2xx answer is delivery.
async fn post(url: &str, api_key: Option<&str>, body: &Value) -> Result<(), String> {
    let client =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let mut req = client.post(url).header("Content-Type", "application/json").body(body.to_string());
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| format!("cannot reach {url}: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_map_to_stable_version_8_uuids() {
        let u = run_uuid("20261206T043227Z-6139");
        assert_eq!(u, run_uuid("20261206T043227Z-6139"));
        assert_ne!(u, run_uuid("other"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("file:/tmp/ol.jsonl").unwrap(), Target::File("/tmp/ol.jsonl".into()));
        assert!(
            matches!(Target::parse("http://127.0.0.1:5000/").unwrap(), Target::Http { url, .. } if url == "http://127.0.0.1:5000")
        );
        assert!(Target::parse("marquez:5000").unwrap_err().contains("file:PATH"));
    }

    #[test]
    fn input_splits_become_namespaced_datasets() {
        assert_eq!(input_dataset("s3://bucket/a/b.warc.gz")["namespace"], "s3://bucket");
        assert_eq!(input_dataset("s3://bucket/a/b.warc.gz")["name"], "/a/b.warc.gz");
        assert_eq!(input_dataset("/data/x.jsonl")["namespace"], "file");
    }
}
