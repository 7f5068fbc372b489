//! When a pipeline runs (`schedule:`) and how hard the engine tries each
//! split (a stage's `retries`, `retry_backoff`, `timeout`).
//!
//! ```text
//! schedule: {cron, timezone, catchup, max_active_runs, start_date, retries, retry_backoff}
//!     ──parse (no I/O)──► Schedule ──cron fire times in the timezone──► t0 < t1 < t2 ...
//!                                                                 intervals [t_k, t_k+1) in UTC
//! an interval is due once its end has passed; `smelt scheduler` runs each due interval once
//!
//! schedule: {on_commit: DATASET@latest|DATASET@TAG, catchup, max_active_runs, retries, retry_backoff}
//!     ──► no intervals: `smelt scheduler` runs the pipeline once per commit of the upstream
//!         version it names (runner::scheduler::commit_triggers)
//! ```
//! Fire times are computed in the schedule's IANA time zone (croner resolves
//! wall-clock times across DST changes: a skipped local time fires at the
//! first instant after the gap, a repeated one fires once), then kept in UTC.

use crate::backoff::Backoff;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::diagnostic::closest;
use crate::yaml::{Node, PathSeg, Value};

/// Keys of a `schedule:` block.
pub const SCHEDULE_KEYS: &[&str] =
    &["cron", "on_commit", "timezone", "catchup", "max_active_runs", "start_date", "retries", "retry_backoff"];

/// Keys every stage accepts besides its own options (the engine's, not the stage's).
pub const STAGE_POLICY_KEYS: &[&str] = &["retries", "retry_backoff", "timeout"];

/// Default `schedule.retries`: a failed run is tried this many more times.
pub const DEFAULT_RUN_RETRIES: u32 = 2;
/// Default `schedule.retry_backoff`.
pub const DEFAULT_RUN_BACKOFF: Duration = Duration::from_secs(60);
/// Default `retry_backoff` of a stage.
pub const DEFAULT_STAGE_BACKOFF: Duration = Duration::from_secs(10);
/// No backoff grows past this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A parsed `schedule:` block.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The cron expression as written (5 fields, 6 with seconds first, or `@daily`-style); empty with `on_commit`.
    pub cron: String,
    /// Run after each commit of this upstream (`dataset@latest` or `dataset@tag`) instead of on a cron.
    pub on_commit: Option<OnCommit>,
    /// IANA time zone the cron is read in.
    pub timezone: String,
    /// Run every missed interval (true) or only the latest one (false).
    pub catchup: bool,
    /// Runs of this pipeline at once.
    pub max_active_runs: usize,
    /// No interval starts before this.
    pub start_date: Option<DateTime<Utc>>,
    /// A failed run is tried this many more times.
    pub retries: u32,
    /// Base of the exponential backoff between run attempts.
    pub retry_backoff: Duration,
    compiled: Option<croner::Cron>,
    tz: chrono_tz::Tz,
}

/// The upstream a `schedule: {on_commit: ...}` follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCommit {
    /// The upstream dataset.
    pub dataset: String,
    /// `latest` (every commit) or a tag (every version the tag moves to).
    pub selector: String,
}

impl std::fmt::Display for OnCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.dataset, self.selector)
    }
}

/// Parses `on_commit:`: `dataset`, `dataset@latest` or `dataset@tag` (a version number never commits again).
fn parse_on_commit(s: &str) -> Result<OnCommit, (String, String)> {
    let (dataset, selector) = s.rsplit_once('@').unwrap_or((s, "latest"));
    let ok_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok_name(dataset) || !ok_name(selector) {
        return Err((
            format!("`on_commit` must name an upstream dataset as `name@latest` or `name@tag`, found `{s}`"),
            "for example `on_commit: cc-news@latest` (every commit) or `on_commit: cc-news@prod` (every version `prod` moves to)".into(),
        ));
    }
    if selector.parse::<u64>().is_ok() {
        return Err((
            format!("`on_commit: {s}` names one fixed version, which never commits again"),
            format!("follow the dataset's commits with `{dataset}@latest`, or a tag such as `{dataset}@prod`"),
        ));
    }
    Ok(OnCommit { dataset: dataset.to_string(), selector: selector.to_string() })
}

/// One interval `[start, end)` of a schedule, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// Inclusive start (a cron fire time).
    pub start: DateTime<Utc>,
    /// Exclusive end (the next fire time).
    pub end: DateTime<Utc>,
}

impl Interval {
    /// `start` as RFC 3339 with a `Z`, to the second.
    pub fn start_str(&self) -> String {
        rfc3339(self.start)
    }

    /// `end` as RFC 3339 with a `Z`, to the second.
    pub fn end_str(&self) -> String {
        rfc3339(self.end)
    }
}

/// RFC 3339 in UTC, to the second (`2024-05-01T00:00:00Z`).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses a time given on the command line or in YAML: RFC 3339
/// (`2024-05-01T00:00:00Z`, `2024-05-01T02:00:00+02:00`), or a date or a
/// date and time without offset (`2024-05-01`, `2024-05-01T06:00`, read in `tz`).
///
/// # Errors
/// A message with the accepted forms.
pub fn parse_time(s: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")));
    match naive {
        Ok(n) => tz
            .from_local_datetime(&n)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("`{s}` does not exist in {tz} (a DST gap)")),
        Err(_) => Err(format!(
            "`{s}` is not a time: use RFC 3339 (`2024-05-01T00:00:00Z`), a date (`2024-05-01`) or a local date and time (`2024-05-01T06:00`)"
        )),
    }
}

/// Parses a duration: `500ms`, `30s`, `5m`, `2h`, `1d`, combinations (`1h30m`), or a bare number of seconds.
///
/// # Errors
/// A message with the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("`{s}` is not a duration: use a number with a unit, as in `500ms`, `30s`, `5m`, `2h`, `1d` or `1h30m`")
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    // Beyond Duration's range (about 584 billion years) is a mistake, not a panic.
    let too_long = || format!("`{s}` is too long a duration: give one shorter than a century");
    if let Ok(secs) = t.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(bad());
        }
        return Duration::try_from_secs_f64(secs).map_err(|_| too_long());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(n * unit).map_err(|_| too_long())?;
        total = total.checked_add(part).ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The backoff of a run or split attempt after `attempt` failures: the
/// [`Backoff`] from `base`, capped at [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempt: u32, jitter: f64) -> Duration {
    Backoff::new(base, MAX_BACKOFF).delay(attempt, jitter)
}

/// A problem in a `schedule:` block or a stage policy key: (path relative to
/// the block, whether it is about the key, message, help).
pub type Problem = (Vec<PathSeg>, bool, String, Option<String>);

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn duration_of(node: &Node, name: &str, problems: &mut Vec<Problem>) -> Option<Duration> {
    let parsed = match &node.value {
        Value::Str(s) => parse_duration(s),
        Value::Int(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
        // Beyond Duration's range (a number too long for an integer is read as a float) is a mistake, not a panic.
        Value::Float(f) if *f >= 0.0 && f.is_finite() => Duration::try_from_secs_f64(*f)
            .map_err(|_| format!("`{name}: {f}` is too long a duration: give one shorter than a century")),
        _ => Err(format!("`{name}` must be a duration such as `30s` or `5m`, found {}", node.kind())),
    };
    match parsed {
        Ok(d) => Some(d),
        Err(m) => {
            problems.push((vec![key(name)], false, m, Some(format!("for example `{name}: 30s`"))));
            None
        }
    }
}

fn count_of(node: &Node, name: &str, min: i64, problems: &mut Vec<Problem>) -> Option<i64> {
    match node.value {
        Value::Int(i) if i >= min && i <= 1000 => Some(i),
        _ => {
            problems.push((
                vec![key(name)],
                false,
                format!("`{name}` must be an integer from {min} to 1000, found {}", describe(node)),
                None,
            ));
            None
        }
    }
}

fn describe(node: &Node) -> String {
    match &node.value {
        Value::Int(i) => i.to_string(),
        Value::Str(s) => format!("`{s}`"),
        _ => node.kind().to_string(),
    }
}

/// Parses the cron expression of a schedule.
///
/// # Errors
/// croner's message and a fix.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, (String, String)> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err((
            format!("cron `{expr}` has {fields} field(s); smelt reads 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"),
            "for example `0 * * * *` (hourly), `0 3 * * *` (daily at 03:00), `0 0 1 * *` (monthly) or `@daily`".into(),
        ));
    }
    croner::Cron::from_str(expr).map_err(|e| {
        (
            format!("cron `{expr}` is not valid: {e}"),
            "fields are minute (0-59), hour (0-23), day of month (1-31, L), month (1-12, JAN-DEC), day of week (0-7, SUN-SAT, L, #); \
             e.g. `*/15 * * * *`, `0 6 * * MON-FRI`, `@hourly`"
                .into(),
        )
    })
}

/// Parses an IANA time zone name.
///
/// # Errors
/// A message, with the closest known name as help.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, (String, String)> {
    chrono_tz::Tz::from_str(name).map_err(|_| {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
        let help = match closest(name, names) {
            Some(c) => format!("did you mean `{c}`?"),
            None => "use an IANA name such as `UTC`, `Europe/Paris` or `America/New_York`".into(),
        };
        (format!("unknown time zone `{name}`"), help)
    })
}

/// Parses a `schedule:` block; problems carry paths relative to it.
///
/// # Errors
/// Every problem found.
pub fn parse_schedule(node: &Node) -> Result<Schedule, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(entries) = node.as_map() else {
        return Err(vec![(
            Vec::new(),
            false,
            format!("`schedule` must be a mapping with `cron:`, found {}", node.kind()),
            Some("for example\nschedule:\n  cron: \"0 * * * *\"\n  timezone: UTC".into()),
        )]);
    };
    let mut cron = None;
    let mut on_commit = None;
    let mut timezone = ("UTC".to_string(), None);
    let mut catchup = false;
    let mut max_active_runs = 1;
    let mut start_date: Option<(String, Vec<PathSeg>)> = None;
    let mut retries = DEFAULT_RUN_RETRIES;
    let mut retry_backoff = DEFAULT_RUN_BACKOFF;
    for (k, v) in entries {
        let name = k.as_str().unwrap_or_default();
        match name {
            "cron" => match v.as_str() {
                Some(s) => match parse_cron(s) {
                    Ok(c) => cron = Some((s.to_string(), c)),
                    Err((m, help)) => problems.push((vec![key("cron")], false, m, Some(help))),
                },
                None => problems.push((
                    vec![key("cron")],
                    false,
                    format!("`cron` must be a cron expression in quotes, found {}", v.kind()),
                    Some("for example `cron: \"0 * * * *\"`".into()),
                )),
            },
            "on_commit" => match v.as_str() {
                Some(s) => match parse_on_commit(s) {
                    Ok(o) => on_commit = Some(o),
                    Err((m, help)) => problems.push((vec![key("on_commit")], false, m, Some(help))),
                },
                None => problems.push((
                    vec![key("on_commit")],
                    false,
                    format!("`on_commit` must be an upstream version such as `cc-news@latest`, found {}", v.kind()),
                    None,
                )),
            },
            "timezone" => match v.as_str() {
                Some(s) => match parse_timezone(s) {
                    Ok(tz) => timezone = (s.to_string(), Some(tz)),
                    Err((m, help)) => {
                        timezone.0 = s.to_string();
                        problems.push((vec![key("timezone")], false, m, Some(help)));
                    }
                },
                None => problems.push((
                    vec![key("timezone")],
                    false,
                    format!("`timezone` must be an IANA name, found {}", v.kind()),
                    None,
                )),
            },
            "catchup" => match v.value {
                Value::Bool(b) => catchup = b,
                _ => problems.push((
                    vec![key("catchup")],
                    false,
                    format!("`catchup` must be true or false, found {}", v.kind()),
                    None,
                )),
            },
            "max_active_runs" => max_active_runs = count_of(v, name, 1, &mut problems).map_or(1, |n| n as usize),
            "retries" => retries = count_of(v, name, 0, &mut problems).map_or(retries, |n| n as u32),
            "retry_backoff" => retry_backoff = duration_of(v, name, &mut problems).unwrap_or(retry_backoff),
            "start_date" => match &v.value {
                Value::Str(s) => start_date = Some((s.clone(), vec![key("start_date")])),
                _ => problems.push((
                    vec![key("start_date")],
                    false,
                    format!("`start_date` must be a date or time such as `2024-05-01`, found {}", v.kind()),
                    None,
                )),
            },
            other => {
                let help = closest(other, SCHEDULE_KEYS.iter().copied()).map(|c| format!("did you mean `{c}`?"));
                problems.push((
                    vec![key(other)],
                    true,
                    format!("unknown schedule setting `{other}`; settings are: {}", SCHEDULE_KEYS.join(", ")),
                    help,
                ));
            }
        }
    }
    let tz = timezone.1.unwrap_or(chrono_tz::UTC);
    let start = match start_date {
        Some((s, path)) => match parse_time(&s, tz) {
            Ok(t) => Some(t),
            Err(m) => {
                problems.push((path, false, m, None));
                None
            }
        },
        None => None,
    };
    let has = |k: &str| entries.iter().any(|(e, _)| e.as_str() == Some(k));
    if !has("cron") && !has("on_commit") {
        problems.push((
            Vec::new(),
            false,
            "`schedule` needs `cron:` or `on_commit:`".into(),
            Some("for example `cron: \"0 * * * *\"` (hourly), or `on_commit: cc-news@latest` (after each commit of cc-news)".into()),
        ));
    }
    if has("cron") && has("on_commit") {
        problems.push((
            vec![key("on_commit")],
            false,
            "a schedule runs on a `cron` or `on_commit`, not both".into(),
            Some(
                "keep one; a pipeline that must run on both can be two pipeline files writing the same dataset".into(),
            ),
        ));
    }
    if has("on_commit") && has("start_date") {
        problems.push((
            vec![key("start_date")],
            false,
            "`start_date` is for `cron` schedules; an `on_commit` schedule starts with the upstream's newest version"
                .into(),
            None,
        ));
    }
    if catchup && !has("on_commit") && start.is_none() && !has("start_date") {
        problems.push((
            vec![key("catchup")],
            false,
            "`catchup: true` runs every interval since `start_date`, which is missing".into(),
            Some("add `start_date: 2024-05-01` (in the schedule's timezone), or set `catchup: false`".into()),
        ));
    }
    let (expr, compiled) = match cron {
        Some((expr, compiled)) => (expr, Some(compiled)),
        None => (String::new(), None),
    };
    match (compiled.is_some() || on_commit.is_some()) && problems.is_empty() {
        true => Ok(Schedule {
            cron: expr,
            on_commit,
            timezone: timezone.0,
            catchup,
            max_active_runs,
            start_date: start,
            retries,
            retry_backoff,
            compiled,
            tz,
        }),
        false => Err(problems),
    }
}

/// How the engine retries a stage's failures on a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePolicy {
    /// A split whose attempt fails in this stage is run again up to this many times.
    pub retries: u32,
    /// Base of the exponential backoff between attempts.
    pub retry_backoff: Duration,
    /// A split's attempt fails when this stage takes longer on it.
    pub timeout: Option<Duration>,
}

impl Default for StagePolicy {
    fn default() -> Self {
        StagePolicy { retries: 0, retry_backoff: DEFAULT_STAGE_BACKOFF, timeout: None }
    }
}

/// Reads a stage's policy keys (`retries`, `retry_backoff`, `timeout`) into `policy`.
pub fn stage_policy_key(policy: &mut StagePolicy, name: &str, node: &Node, problems: &mut Vec<Problem>) {
    match name {
        "retries" => policy.retries = count_of(node, name, 0, problems).map_or(0, |n| n as u32),
        "retry_backoff" => policy.retry_backoff = duration_of(node, name, problems).unwrap_or(policy.retry_backoff),
        "timeout" => {
            policy.timeout = duration_of(node, name, problems);
            if policy.timeout == Some(Duration::ZERO) {
                problems.push((vec![key(name)], false, "`timeout` must be more than zero".into(), None));
            }
        }
        _ => {}
    }
}

impl Schedule {
    /// The time zone.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.tz
    }

    /// The first fire time strictly after `t` (`inclusive`: at or after); none for `on_commit`.
    pub fn next_fire(&self, t: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.compiled.as_ref()?.find_next_occurrence(&local, inclusive).ok().map(|n| n.with_timezone(&Utc))
    }

    /// The last fire time at or before `t`; none for `on_commit`.
    pub fn prev_fire(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.compiled.as_ref()?.find_previous_occurrence(&local, true).ok().map(|n| n.with_timezone(&Utc))
    }

    /// The interval that starts at `start`.
    ///
    /// # Errors
    /// `start` is not a fire time of the cron (with the nearest ones).
    pub fn interval_at(&self, start: DateTime<Utc>) -> Result<Interval, String> {
        if let Some(o) = &self.on_commit {
            return Err(format!(
                "the schedule runs after each commit of {o}, not on intervals; run one by hand with `smelt run PIPELINE --upstream {}@VERSION`",
                o.dataset
            ));
        }
        let first = self.next_fire(start, true);
        match first {
            Some(s) if s == start => {
                let end = self
                    .next_fire(start, false)
                    .ok_or_else(|| format!("cron `{}` never fires after {}", self.cron, rfc3339(start)))?;
                Ok(Interval { start, end })
            }
            _ => {
                let before = self.prev_fire(start).map(rfc3339).unwrap_or_else(|| "-".into());
                let after = first.map(rfc3339).unwrap_or_else(|| "-".into());
                Err(format!(
                    "{} is not the start of an interval of cron `{}` ({}); the nearest are {before} and {after}",
                    rfc3339(start),
                    self.cron,
                    self.timezone
                ))
            }
        }
    }

    /// Every interval with `from <= start` and `end <= to`, oldest first (at most `limit`).
    pub fn intervals(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<Interval> {
        let mut out = Vec::new();
        let Some(mut start) = self.next_fire(from, true) else { return out };
        while out.len() < limit {
            let Some(end) = self.next_fire(start, false) else { break };
            if end > to {
                break;
            }
            out.push(Interval { start, end });
            start = end;
        }
        out
    }

    /// The intervals due at `now`: with catch-up, every interval since
    /// `start_date` that has ended (at most `limit`, oldest first); without,
    /// only the latest one that has ended (and starts at or after `start_date`).
    pub fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<Interval> {
        if self.catchup {
            let from = self.start_date.unwrap_or(now);
            // The most recent ones matter when there are more than `limit`.
            let all = self.intervals(from, now, 100_000);
            let skip = all.len().saturating_sub(limit);
            return all[skip..].to_vec();
        }
        let Some(end) = self.prev_fire(now) else { return Vec::new() };
        let Some(start) = self.prev_fire(end - chrono::Duration::seconds(1)) else { return Vec::new() };
        let interval = Interval { start, end };
        if self.start_date.is_some_and(|s| start < s) {
            return Vec::new();
        }
        vec![interval]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_beyond_range_are_errors_not_panics() {
        // Found by the pipeline_yaml fuzzer (fuzz/regressions/pipeline_yaml/duration-overflow).
        for s in ["1e300", "99999999999999999999999d", "9999999999999999999h9999999999999999999h"] {
            assert!(parse_duration(s).unwrap_err().contains("too long a duration"), "{s}");
        }
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    }
    use chrono::TimeZone;

    #[test]
    fn on_commit_schedules_have_no_intervals() {
        let s = sched("on_commit: cc-news@prod\ncatchup: true\n");
        assert_eq!(s.on_commit, Some(OnCommit { dataset: "cc-news".into(), selector: "prod".into() }));
        assert_eq!(sched("on_commit: cc-news\n").on_commit.unwrap().to_string(), "cc-news@latest");
        let now = t("2024-05-01T00:00:00Z");
        assert!(s.due(now, 100).is_empty());
        assert!(s.next_fire(now, true).is_none());
        assert!(s.interval_at(now).unwrap_err().contains("--upstream cc-news@VERSION"));
    }

    fn sched(yaml: &str) -> Schedule {
        parse_schedule(&crate::yaml::parse(yaml).unwrap()).unwrap_or_else(|p| panic!("{p:?}"))
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m5").is_err());
    }

    #[test]
    fn run_backoff_is_capped_at_an_hour() {
        assert_eq!(backoff(Duration::from_secs(10), 30, 0.0), MAX_BACKOFF / 2);
    }

    #[test]
    fn hourly_intervals_and_catchup() {
        let s = sched("cron: '0 * * * *'\ncatchup: true\nstart_date: 2024-01-01T00:00:00Z\n");
        let due = s.due(t("2024-01-01T03:30:00Z"), 100);
        assert_eq!(due.len(), 3);
        assert_eq!(due[0], Interval { start: t("2024-01-01T00:00:00Z"), end: t("2024-01-01T01:00:00Z") });
        assert_eq!(due[2].end, t("2024-01-01T03:00:00Z"));
        let s = sched("cron: '@hourly'\n");
        assert_eq!(
            s.due(t("2024-01-01T03:30:00Z"), 100),
            vec![Interval { start: t("2024-01-01T02:00:00Z"), end: t("2024-01-01T03:00:00Z") }]
        );
        assert!(s
            .interval_at(t("2024-01-01T02:30:00Z"))
            .unwrap_err()
            .contains("nearest are 2024-01-01T02:00:00Z and 2024-01-01T03:00:00Z"));
    }

    #[test]
    fn daily_in_a_timezone_across_dst() {
        // Paris: summer time starts 2024-03-31 (02:00 -> 03:00).
        let s = sched("cron: '@daily'\ntimezone: Europe/Paris\ncatchup: true\nstart_date: 2024-03-30\n");
        let due = s.due(t("2024-04-01T12:00:00Z"), 100);
        assert_eq!(due[0].start, t("2024-03-29T23:00:00Z"));
        assert_eq!(due[0].end, t("2024-03-30T23:00:00Z"));
        assert_eq!(due[1].end, t("2024-03-31T22:00:00Z"), "the DST day is 23 hours long");
        // 02:30 does not exist on that day: it fires once, at the end of the gap.
        let s = sched("cron: '30 2 * * *'\ntimezone: Europe/Paris\n");
        let fire = s.next_fire(t("2024-03-30T12:00:00Z"), false).unwrap();
        assert_eq!(fire, chrono_tz::Europe::Paris.with_ymd_and_hms(2024, 3, 31, 3, 0, 0).unwrap().with_timezone(&Utc));
    }

    #[test]
    fn problems_name_the_fix() {
        let p = parse_schedule(
            &crate::yaml::parse("cron: '61 * * * *'\ntimezone: Europe/Pariss\ncatchup: true\nmax_active: 2\n").unwrap(),
        )
        .unwrap_err();
        let msgs: Vec<String> = p.iter().map(|(_, _, m, h)| format!("{m} / {h:?}")).collect();
        assert!(msgs.iter().any(|m| m.contains("cron `61 * * * *` is not valid")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("unknown time zone") && m.contains("Europe/Paris")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("max_active_runs")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("start_date")), "{msgs:?}");
        let p = parse_schedule(&crate::yaml::parse("cron: '* * *'\n").unwrap()).unwrap_err();
        assert!(p[0].2.contains("has 3 field(s)"), "{p:?}");
    }
}
