//! A channel bounded in bytes, not messages: a sender waits until the
//! receiver has released enough of the budget, so a slow stage slows its
//! producers and memory stays flat whatever the input size.
//!
//! ```text
//! send(batch) ── acquire min(size, budget) permits ──► queue ──► recv() ──► Msg (holds the permits)
//!                                                                 drop(Msg) releases them
//! ```

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// A batch in flight, holding its share of the channel's byte budget until dropped.
#[derive(Debug)]
pub struct Msg {
    /// The batch.
    pub batch: RecordBatch,
    _permit: OwnedSemaphorePermit,
}

/// Sending half.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Msg>,
    budget: Arc<Semaphore>,
    capacity: u32,
}

/// Receiving half.
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Msg>,
}

/// A channel holding at most `capacity_bytes` of batches (a single batch larger
/// than the budget takes all of it and passes alone).
pub fn channel(capacity_bytes: usize) -> (Sender, Receiver) {
    let capacity = capacity_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
    let (tx, rx) = mpsc::unbounded_channel();
    (Sender { tx, budget: Arc::new(Semaphore::new(capacity as usize)), capacity }, Receiver { rx })
}

impl Sender {
    /// Sends, waiting for budget. Returns false when the receiver is gone.
    pub async fn send(&self, batch: RecordBatch) -> bool {
        let size = batch.get_array_memory_size().clamp(1, self.capacity as usize) as u32;
        let Ok(permit) = self.budget.clone().acquire_many_owned(size).await else { return false };
        self.tx.send(Msg { batch, _permit: permit }).is_ok()
    }
}

impl Receiver {
    /// The next batch, `None` once every sender is dropped and the queue is empty.
    pub async fn recv(&mut self) -> Option<Msg> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array};
    use std::time::Duration;

    fn batch(n: usize) -> RecordBatch {
        let a: ArrayRef = Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>()));
        RecordBatch::try_from_iter([("x", a)]).unwrap()
    }

    #[tokio::test]
    async fn senders_wait_for_budget() {
        let one = batch(1000).get_array_memory_size();
        let (tx, mut rx) = channel(one * 2);
        assert!(tx.send(batch(1000)).await);
        assert!(tx.send(batch(1000)).await);
        // A third batch does not fit until one is received and dropped.
        let third = tokio::time::timeout(Duration::from_millis(50), tx.send(batch(1000))).await;
        assert!(third.is_err(), "third send should block on the byte budget");
        let m = rx.recv().await.unwrap();
        drop(m);
        assert!(tokio::time::timeout(Duration::from_secs(5), tx.send(batch(1000))).await.unwrap());
        // An oversized batch still passes alone.
        let (tx, mut rx) = channel(16);
        assert!(tx.send(batch(10_000)).await);
        assert_eq!(rx.recv().await.unwrap().batch.num_rows(), 10_000);
        drop(tx);
        assert!(rx.recv().await.is_none());
    }
}
