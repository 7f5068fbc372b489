//! The Kubernetes executor (`smelt run P --executor k8s --ranks N`): the
//! same rank contract as Slurm, written as Kubernetes manifests (nothing is
//! applied; no cluster needed).
//!
//! ```text
//! <data dir>/k8s/<run id>/
//!   phase<k>.yaml   Indexed Job: completions N, rank = JOB_COMPLETION_INDEX,
//!                   `smelt run P --rank $JOB_COMPLETION_INDEX --world-size N --run-id X`
//!   commit.yaml     Job: `smelt commit X`
//!   apply.sh        kubectl apply + kubectl wait, phase by phase, then the commit
//!   state.json      for `smelt runs list|show`
//! ```
//!
//! Kubernetes has no dependencies between Jobs, so `apply.sh` waits for each
//! phase's Job to complete before applying the next. The data directory (and
//! dataset storage, unless it is an object store URL) must be on a volume
//! every pod mounts at the same path (`--pvc`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use smelt_engine::EngineError;

use super::{new_submission, sh_quote, ClusterRequest, Prepared};

/// A Kubernetes object name from a run id: lowercase letters, digits and `-`, at most 63 bytes.
pub fn k8s_name(parts: &[&str]) -> String {
    let raw = parts.join("-").to_ascii_lowercase();
    let mut s: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let mut s: String = s.chars().take(63).collect();
    while s.ends_with('-') {
        s.pop();
    }
    s
}

/// Slurm memory (`32G`, `4000M`, `4000` = MiB) as a Kubernetes quantity.
pub fn k8s_memory(mem: &str) -> String {
    let m = mem.trim();
    match m.char_indices().last() {
        Some((i, u)) if u.is_ascii_alphabetic() => {
            let unit = match u.to_ascii_uppercase() {
                'K' => "Ki",
                'M' => "Mi",
                'G' => "Gi",
                'T' => "Ti",
                _ => return m.to_string(),
            };
            format!("{}{unit}", &m[..i])
        }
        _ => format!("{m}Mi"),
    }
}

/// Block-style YAML for a JSON value (strings double-quoted, which YAML reads as JSON strings).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    write_yaml(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(serde_json::to_string(s).unwrap_or_default()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}

fn write_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, val) in o {
                match scalar(val) {
                    Some(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        write_yaml(val, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // The item's first line goes after the dash, the rest indented under it.
                        let mut inner = String::new();
                        write_yaml(item, indent + 2, &mut inner);
                        let inner = inner.strip_prefix(&" ".repeat(indent + 2)).unwrap_or(&inner).to_string();
                        out.push_str(&format!("{pad}- {inner}"));
                    }
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar(v).unwrap_or_default())),
    }
}

fn pod_spec(pre: &Prepared, c: &ClusterRequest, command: String, labels: &Value) -> Value {
    let env: Vec<Value> = pre.env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
    let mut container = json!({
        "name": "smelt",
        "image": c.image,
        "command": ["/bin/sh", "-c", command],
        "env": env,
    });
    let mut requests = serde_json::Map::new();
    if let Some(n) = c.cpus_per_rank {
        requests.insert("cpu".into(), json!(n.to_string()));
    }
    if let Some(m) = &c.mem {
        requests.insert("memory".into(), json!(k8s_memory(m)));
    }
    if !requests.is_empty() {
        let limits = requests.get("memory").map(|m| json!({"memory": m})).unwrap_or_else(|| json!({}));
        container["resources"] = json!({"requests": requests, "limits": limits});
    }
    let mut spec = json!({"restartPolicy": "Never"});
    if let Some(claim) = &c.pvc {
        container["volumeMounts"] = json!([{"name": "smelt-data", "mountPath": pre.data_dir.display().to_string()}]);
        spec["volumes"] = json!([{"name": "smelt-data", "persistentVolumeClaim": {"claimName": claim}}]);
    }
    spec["containers"] = json!([container]);
    json!({"metadata": {"labels": labels}, "spec": spec})
}

/// Seconds, from Slurm's `[D-]HH:MM:SS`, `MM:SS` or minutes.
pub fn slurm_time_secs(t: &str) -> Option<u64> {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, t),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse::<u64>().ok()).collect::<Option<_>>()?;
    let secs = match (t.contains('-'), parts.as_slice()) {
        (_, [h, m, s]) => h * 3600 + m * 60 + s,
        (true, [h, m]) => h * 3600 + m * 60,
        (true, [h]) => h * 3600,
        (false, [m, s]) => m * 60 + s,
        (false, [m]) => m * 60,
        _ => return None,
    };
    Some(days * 86400 + secs)
}

/// The manifests: one Indexed Job per phase, then the commit Job.
///
/// # Errors
/// A `--time` that is not Slurm syntax.
pub fn manifests(pre: &Prepared, c: &ClusterRequest) -> Result<Vec<(String, Value)>, EngineError> {
    let w = pre.world_size;
    let phases = pre.state.barriers.len() as u32 + 1;
    let deadline = match &c.time {
        Some(t) => Some(slurm_time_secs(t).ok_or_else(|| EngineError::User(format!("--time {t}: not [D-]HH:MM:SS")))?),
        None => None,
    };
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let mut out = Vec::new();
    for k in 0..phases {
        let name = k8s_name(&["smelt", &pre.run_id, &format!("phase{k}")]);
        let labels = json!({"app.kubernetes.io/name": "smelt", "smelt/run-id": k8s_name(&[&pre.run_id]), "smelt/phase": k.to_string()});
        let mut cmd = format!(
            "exec smelt --data-dir {} run {} --rank \"$JOB_COMPLETION_INDEX\" --world-size {w} --run-id {}",
            q(&pre.data_dir),
            q(&pre.pipeline),
            sh_quote(&pre.run_id)
        );
        for a in &pre.rank_args {
            cmd.push(' ');
            cmd.push_str(&sh_quote(a));
        }
        let mut spec = json!({
            "completionMode": "Indexed",
            "completions": w,
            "parallelism": c.array_concurrency.unwrap_or(w).min(w),
            "backoffLimit": w.saturating_mul(2),
            "template": pod_spec(pre, c, cmd, &labels),
        });
        if let Some(d) = deadline {
            spec["activeDeadlineSeconds"] = json!(d);
        }
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels}, "spec": spec});
        out.push((format!("phase{k}.yaml"), job));
    }
    let labels =
        json!({"app.kubernetes.io/name": "smelt", "smelt/run-id": k8s_name(&[&pre.run_id]), "smelt/phase": "commit"});
    let cmd = format!("exec smelt --data-dir {} commit {}", q(&pre.data_dir), sh_quote(&pre.run_id));
    let commit = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": k8s_name(&["smelt", &pre.run_id, "commit"]), "labels": labels},
        "spec": {"completions": 1, "backoffLimit": 3, "template": pod_spec(pre, c, cmd, &labels)},
    });
    out.push(("commit.yaml".into(), commit));
    Ok(out)
}

/// A run's manifests as YAML files, and the `apply.sh` that applies them in order.
#[derive(Debug, Clone)]
pub struct Manifests {
    /// (file name, YAML): the phases' Jobs, then the commit Job.
    pub files: Vec<(String, String)>,
    /// The `apply.sh` script.
    pub apply: String,
}

/// The manifests of a prepared run and its `apply.sh`.
///
/// # Errors
/// A `--time` that is not Slurm syntax.
pub fn plan(pre: &Prepared, c: &ClusterRequest) -> Result<Manifests, EngineError> {
    let jobs = manifests(pre, c)?;
    let mut apply = String::from("#!/bin/sh\n# Applies the run's Jobs phase by phase (Kubernetes has no dependencies between Jobs).\nset -eu\ncd \"$(dirname \"$0\")\"\n");
    for (file, job) in &jobs {
        let name = job["metadata"]["name"].as_str().unwrap_or_default();
        apply.push_str(&format!(
            "kubectl apply -f {file}\nkubectl wait --for=condition=complete --timeout=-1s job/{name}\n"
        ));
    }
    Ok(Manifests { files: jobs.into_iter().map(|(f, j)| (f, to_yaml(&j))).collect(), apply })
}

/// Writes the manifests, `apply.sh` (executable) and the run's state to the
/// run's directory; returns the path of `apply.sh`.
///
/// # Errors
/// An unwritable data directory.
pub fn write(pre: &Prepared, m: &Manifests) -> Result<PathBuf, EngineError> {
    let io = |what: &Path, e: std::io::Error| EngineError::External(format!("cannot write {}: {e}", what.display()));
    std::fs::create_dir_all(&pre.dir)
        .map_err(|e| EngineError::External(format!("cannot create {}: {e}", pre.dir.display())))?;
    for (file, yaml) in &m.files {
        let path = pre.dir.join(file);
        std::fs::write(&path, yaml).map_err(|e| io(&path, e))?;
    }
    let apply_path = pre.dir.join("apply.sh");
    std::fs::write(&apply_path, &m.apply).map_err(|e| io(&apply_path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&apply_path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io(&apply_path, e))?;
    }
    let mut state = pre.state.clone();
    state.submissions.push(new_submission());
    let state_path = pre.dir.join("state.json");
    let bytes = serde_json::to_vec_pretty(&state).map_err(|e| EngineError::Internal(e.to_string()))?;
    std::fs::write(&state_path, bytes).map_err(|e| io(&state_path, e))?;
    Ok(apply_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_kubernetes_names() {
        assert_eq!(k8s_name(&["smelt", "20250101T000000Z-1a2b", "phase0"]), "smelt-20250101t000000z-1a2b-phase0");
        assert_eq!(k8s_name(&["smelt", "My_Run..x", "commit"]), "smelt-my-run-x-commit");
        let long = "a".repeat(100);
        assert!(k8s_name(&["smelt", &long]).len() <= 63);
    }

    #[test]
    fn memory_and_time_convert() {
        assert_eq!(k8s_memory("32G"), "32Gi");
        assert_eq!(k8s_memory("4000"), "4000Mi");
        assert_eq!(k8s_memory("512m"), "512Mi");
        assert_eq!(slurm_time_secs("10:00:00"), Some(36000));
        assert_eq!(slurm_time_secs("2-00:00:00"), Some(172_800));
        assert_eq!(slurm_time_secs("30"), Some(1800));
        assert_eq!(slurm_time_secs("1:30"), Some(90));
        assert_eq!(slurm_time_secs("soon"), None);
    }

    #[test]
    fn yaml_round_trips_through_the_pipeline_parser() {
        let v = json!({
            "apiVersion": "batch/v1",
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "smelt"}},
            "spec": {"completions": 4, "template": {"spec": {"containers": [
                {"name": "c", "command": ["/bin/sh", "-c", "exec smelt --rank \"$JOB_COMPLETION_INDEX\" 'a b'"], "env": []}
            ]}}},
            "empty": {},
            "flag": true,
        });
        let text = to_yaml(&v);
        let back = smelt_engine::yaml::parse(&text).unwrap().to_json();
        assert_eq!(back, v, "{text}");
    }

    #[test]
    fn a_phase_job_runs_every_rank_with_the_runs_resources() {
        let pre = super::super::tests::prepared(3, 5, &["dedup"]);
        let c = ClusterRequest {
            cpus_per_rank: Some(2),
            mem: Some("4G".into()),
            time: Some("1:00:00".into()),
            array_concurrency: Some(2),
            pvc: Some("claim".into()),
            ..ClusterRequest::default()
        };
        let m = plan(&pre, &c).unwrap();
        let names: Vec<&str> = m.files.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names, ["phase0.yaml", "phase1.yaml", "commit.yaml"]);
        let job = smelt_engine::yaml::parse(&m.files[1].1).unwrap().to_json();
        assert_eq!(job["spec"]["completions"], 3);
        assert_eq!(job["spec"]["parallelism"], 2);
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 3600);
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["resources"]["requests"]["memory"], "4Gi");
        assert_eq!(container["volumeMounts"][0]["mountPath"], "/data/smelt");
        let cmd = container["command"][2].as_str().unwrap();
        assert!(cmd.contains("--rank \"$JOB_COMPLETION_INDEX\" --world-size 3 --run-id r1 --no-progress"), "{cmd}");
        assert!(m.apply.contains(
            "kubectl apply -f phase1.yaml\nkubectl wait --for=condition=complete --timeout=-1s job/smelt-r1-phase1\n"
        ));
        let bad = ClusterRequest { time: Some("soon".into()), ..c };
        assert_eq!(plan(&pre, &bad).unwrap_err().to_string(), "--time soon: not [D-]HH:MM:SS");
    }
}
