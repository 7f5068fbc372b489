//! Request concurrency per S3 bucket, adjusted AIMD (additive increase,
//! multiplicative decrease) on throttling.
//!
//! Every HTTP request object_store sends to a bucket (first tries and its own
//! retries alike) takes a permit of the bucket's [`Aimd`] limiter. A
//! throttling answer (`503 SlowDown`, `503 Service Unavailable`, `429 Too
//! Many Requests`) halves the bucket's limit (once per round: answers to
//! requests sent before the last cut do not cut again) and is counted;
//! object_store then retries the request with its exponential backoff. Each
//! run of `limit` answers without throttling raises the limit by one, up to
//! the maximum ([`MAX_REQUESTS_ENV`], default [`DEFAULT_MAX_REQUESTS`]).
//!
//! ```text
//! object_store (retries, backoff) ──► ThrottledService: permit ──► reqwest ──► S3
//!                                            ▲                                  │
//!                                            └── 503/429: limit/2, counted ◄─────┘
//!                                                 else: +1 per `limit` answers
//! ```
//! A permit is held until the response's headers arrive: the limit bounds
//! requests the server is working on, not bodies a caller reads slowly (which
//! could otherwise starve other requests of the same caller).
//!
//! Limiters live for the process, one per bucket, shared by every store
//! opened on it, so a run's shard uploads, document indexes and commit all
//! back off together.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::ClientOptions;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default most requests in flight to one bucket.
pub const DEFAULT_MAX_REQUESTS: usize = 64;

/// The environment variable that sets the most requests in flight to one
/// bucket (a positive number).
pub const MAX_REQUESTS_ENV: &str = "SMELT_S3_MAX_REQUESTS";

/// Throttling seen on one bucket by this process.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ThrottleStats {
    /// The bucket (`s3://NAME`, or host and bucket of an S3 `https://` URL).
    pub bucket: String,
    /// Throttling answers (503, 429) received; object_store retried each.
    pub throttled: u64,
    /// Requests allowed in flight now.
    pub limit: usize,
    /// The lowest the limit went.
    pub lowest_limit: usize,
    /// The most requests allowed in flight.
    pub max: usize,
}

#[derive(Debug)]
struct State {
    limit: usize,
    lowest: usize,
    /// Permits to take out of circulation as requests finish (a cut larger
    /// than the permits free at the time).
    debt: usize,
    /// Answers without throttling since the last change of the limit.
    calm: usize,
    /// Bumped at every cut; a request remembers the round it was sent in.
    round: u64,
}

/// The concurrency limiter of one bucket.
#[derive(Debug)]
pub struct Aimd {
    bucket: String,
    sem: Arc<Semaphore>,
    state: Mutex<State>,
    throttled: AtomicU64,
    max: usize,
}

/// One request's permit.
struct Ticket {
    aimd: Arc<Aimd>,
    permit: Option<OwnedSemaphorePermit>,
    round: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut st = self.aimd.state.lock().expect("aimd state");
        if let Some(p) = self.permit.take() {
            if st.debt > 0 {
                st.debt -= 1;
                p.forget();
            }
        }
    }
}

impl Aimd {
    /// A limiter of `bucket` allowing `max` (at least 1) requests in flight, starting there.
    pub fn new(bucket: &str, max: usize) -> Arc<Aimd> {
        let max = max.max(1);
        Arc::new(Aimd {
            bucket: bucket.to_string(),
            sem: Arc::new(Semaphore::new(max)),
            state: Mutex::new(State { limit: max, lowest: max, debt: 0, calm: 0, round: 0 }),
            throttled: AtomicU64::new(0),
            max,
        })
    }

    /// What the limiter has seen so far.
    pub fn stats(&self) -> ThrottleStats {
        let st = self.state.lock().expect("aimd state");
        ThrottleStats {
            bucket: self.bucket.clone(),
            throttled: self.throttled.load(Ordering::Relaxed),
            limit: st.limit,
            lowest_limit: st.lowest,
            max: self.max,
        }
    }

    async fn acquire(self: &Arc<Self>) -> Ticket {
        let permit = self.sem.clone().acquire_owned().await.expect("the semaphore is never closed");
        let round = self.state.lock().expect("aimd state").round;
        Ticket { aimd: self.clone(), permit: Some(permit), round }
    }

    /// Records the answer to a request sent in `round`.
    fn answered(&self, round: u64, throttled: bool) {
        let mut st = self.state.lock().expect("aimd state");
        if throttled {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            if round != st.round {
                return; // sent before the last cut, which already answered for it
            }
            let new = (st.limit / 2).max(1);
            let cut = st.limit - new;
            st.limit = new;
            st.lowest = st.lowest.min(new);
            st.round += 1;
            st.calm = 0;
            let forgotten = self.sem.forget_permits(cut);
            st.debt += cut - forgotten;
            tracing::debug!(limit = new, "S3 throttling: request concurrency lowered");
        } else {
            st.calm += 1;
            if st.calm >= st.limit && st.limit < self.max {
                st.calm = 0;
                st.limit += 1;
                if st.debt > 0 {
                    st.debt -= 1;
                } else {
                    self.sem.add_permits(1);
                }
            }
        }
    }
}

/// Whether an HTTP status is S3 asking the client to slow down.
fn is_throttling(status: u16) -> bool {
    status == 503 || status == 429
}

static LIMITERS: OnceLock<Mutex<BTreeMap<String, Arc<Aimd>>>> = OnceLock::new();

/// The limiter of the bucket `key` (created at `max` the first time).
pub(crate) fn limiter(key: &str, max: usize) -> Arc<Aimd> {
    let mut all = LIMITERS.get_or_init(Default::default).lock().expect("limiters");
    all.entry(key.to_string()).or_insert_with(|| Aimd::new(key, max)).clone()
}

/// Throttling of every S3 bucket this process opened, by bucket name: what
/// `smelt run` reports as `s3_throttled` and `s3`.
pub fn all_stats() -> Vec<ThrottleStats> {
    LIMITERS.get().map_or_else(Vec::new, |all| all.lock().expect("limiters").values().map(|a| a.stats()).collect())
}

/// The most requests in flight per bucket, from [`MAX_REQUESTS_ENV`].
///
/// # Errors
/// A value that is not a positive number.
pub(crate) fn max_requests_from_env() -> Result<usize, String> {
    match std::env::var(MAX_REQUESTS_ENV) {
        Err(_) => Ok(DEFAULT_MAX_REQUESTS),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{MAX_REQUESTS_ENV}={v:?} is not a positive number of requests")),
        },
    }
}

/// An object_store HTTP connector whose clients go through a bucket's [`Aimd`].
#[derive(Debug)]
pub(crate) struct ThrottledConnector(pub Arc<Aimd>);

impl HttpConnector for ThrottledConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(ThrottledService { inner, aimd: self.0.clone() }))
    }
}

#[derive(Debug)]
struct ThrottledService {
    inner: HttpClient,
    aimd: Arc<Aimd>,
}

#[async_trait::async_trait]
impl HttpService for ThrottledService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let ticket = self.aimd.acquire().await;
        let res = self.inner.execute(req).await;
        if let Ok(r) = &res {
            self.aimd.answered(ticket.round, is_throttling(r.status().as_u16()));
        }
        drop(ticket);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn halves_once_per_round_and_climbs_back_one_at_a_time() {
        let aimd = Aimd::new("s3://test", 8);
        // 8 requests in flight, all throttled: one cut (to 4), not eight.
        let tickets: Vec<Ticket> = futures::future::join_all((0..8).map(|_| aimd.acquire())).await;
        for t in &tickets {
            aimd.answered(t.round, true);
        }
        assert_eq!(
            aimd.stats(),
            ThrottleStats { bucket: "s3://test".into(), throttled: 8, limit: 4, lowest_limit: 4, max: 8 }
        );
        drop(tickets);
        assert_eq!(aimd.sem.available_permits(), 4, "the cut took permits out as requests finished");
        // A request of the new round throttled again: 2.
        let t = aimd.acquire().await;
        aimd.answered(t.round, true);
        drop(t);
        assert_eq!(aimd.stats().limit, 2);
        assert_eq!(aimd.sem.available_permits(), 2);
        // Additive increase: +1 after `limit` calm answers.
        for want in [3, 4, 5] {
            for _ in 0..want - 1 {
                let t = aimd.acquire().await;
                aimd.answered(t.round, false);
            }
            assert_eq!(aimd.stats().limit, want);
            assert_eq!(aimd.sem.available_permits(), want);
        }
        assert_eq!(aimd.stats().lowest_limit, 2);
    }

    #[tokio::test]
    async fn never_below_one_request_nor_above_the_maximum() {
        let aimd = Aimd::new("s3://test", 2);
        for _ in 0..5 {
            let t = aimd.acquire().await;
            aimd.answered(t.round, true);
        }
        assert_eq!(aimd.stats().limit, 1);
        assert_eq!(aimd.sem.available_permits(), 1);
        for _ in 0..100 {
            let t = aimd.acquire().await;
            aimd.answered(t.round, false);
        }
        assert_eq!(aimd.stats().limit, 2);
        assert_eq!(aimd.sem.available_permits(), 2);
    }
}
