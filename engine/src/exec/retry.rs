//! Retries of a split whose attempt failed in a stage with `retries:`.
//!
//! ```text
//! attempt ──ok──► done
//!    └─err: a stage's external fault, attempts left ──► backoff with jitter (by run and split) ──► attempt
//!    └─err: a user fault, a bug, storage, cancellation, or no attempts left ──► the run fails
//! ```

use crate::compile::Pipeline;
use crate::error::{EngineError, Fault, Result};

use super::RetryNote;

/// Runs `attempt` for split `split` until it succeeds, or until the stage it
/// fails in has used its `retries`; waits an exponential backoff with jitter
/// between attempts. Only a stage's external faults are retried ([`Fault`]:
/// not user mistakes or bugs, not catalog errors, not cancellation). A failed attempt leaves nothing
/// behind that a later attempt would read: shards are rewritten under the
/// same names and the split's completion record is written last.
pub(super) async fn with_retries<T, F, Fut>(
    p: &Pipeline,
    run_id: &str,
    split: u32,
    notes: &std::sync::Mutex<Vec<RetryNote>>,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut failures = 0u32;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(EngineError::Stage { stage, fault: Fault::External, message, at }) => {
                let policy = p
                    .order
                    .iter()
                    .map(|&n| &p.graph[n])
                    .find(|s| s.name == stage)
                    .map(|s| s.policy.clone())
                    .unwrap_or_default();
                if failures >= policy.retries {
                    let message = if failures > 0 {
                        format!("{message} (split {split}, attempt {} of {})", failures + 1, failures + 1)
                    } else {
                        message
                    };
                    return Err(EngineError::Stage { stage, fault: Fault::External, message, at });
                }
                failures += 1;
                let wait = crate::schedule::backoff(
                    policy.retry_backoff,
                    failures,
                    crate::backoff::jitter(&format!("{run_id}/{split}")),
                );
                tracing::warn!(
                    "split {split}: stage `{stage}` failed on attempt {failures} of {}: {message}; retrying in {:.1}s",
                    policy.retries + 1,
                    wait.as_secs_f64()
                );
                notes.lock().expect("retry notes").push(RetryNote {
                    split,
                    stage,
                    attempt: failures,
                    error: message,
                    backoff_s: wait.as_secs_f64(),
                });
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}
