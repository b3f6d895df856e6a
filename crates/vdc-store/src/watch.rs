//! Notices of changes to a bucket, so control loops wake when the state
//! they follow changes instead of polling it.
//!
//! A notice names the key written or deleted; it carries no value. Loops
//! read the state again on each notice (level-triggered), so notices may
//! coalesce: a watcher that falls behind gets fewer of them, but never
//! none after a change.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Bucket;

/// Notices a watcher keeps before further ones coalesce.
const NOTICES: usize = 64;

/// The receiving end of one watch. Dropping it stops watching.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<String>,
    /// The task that follows a remote store's changes, if any.
    task: Option<JoinHandle<()>>,
}

impl Watch {
    /// A watch and the sender its backend notifies through.
    pub(crate) fn channel() -> (Watch, mpsc::Sender<String>) {
        let (tx, rx) = mpsc::channel(NOTICES);
        (Watch { rx, task: None }, tx)
    }

    /// Ends the watch with `task`, which feeds it.
    pub(crate) fn with_task(mut self, task: JoinHandle<()>) -> Watch {
        self.task = Some(task);
        self
    }

    /// The key of the next change; `None` once the store stopped watching
    /// (its connection ended): the caller should watch again.
    pub async fn changed(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    /// Discards the notices already queued; returns how many there were.
    pub fn drain(&mut self) -> usize {
        std::iter::from_fn(|| self.rx.try_recv().ok()).count()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One watcher of an embedded store: its bucket and where notices go.
type Watcher = (Bucket, mpsc::Sender<String>);

/// The watchers of an embedded store, notified after each write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Watchers {
    inner: Arc<Mutex<Vec<Watcher>>>,
}

impl Watchers {
    pub(crate) fn watch(&self, bucket: Bucket) -> Watch {
        let (watch, tx) = Watch::channel();
        self.lock().push((bucket, tx));
        watch
    }

    /// Tells the watchers of `bucket` that `key` changed. Never waits: a
    /// full watcher already has a notice to wake on.
    pub(crate) fn notify(&self, bucket: Bucket, key: &str) {
        self.lock().retain(|(b, tx)| {
            if *b != bucket {
                return !tx.is_closed();
            }
            !matches!(
                tx.try_send(key.to_owned()),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Watches several buckets at once for a loop that wakes on any change:
/// a watch that ends (a lost connection) is opened again on the next wait.
pub struct Changes {
    store: Arc<dyn crate::Store>,
    watches: Vec<(Bucket, Option<Watch>)>,
}

impl Changes {
    /// Watches `buckets` of `store`; a bucket that cannot be watched now is
    /// tried again on each [`Changes::next`].
    pub async fn new(store: Arc<dyn crate::Store>, buckets: &[Bucket]) -> Changes {
        let mut changes = Changes {
            store,
            watches: buckets.iter().map(|b| (*b, None)).collect(),
        };
        changes.rewatch().await;
        changes
    }

    async fn rewatch(&mut self) {
        for (bucket, watch) in &mut self.watches {
            if watch.is_none() {
                match self.store.watch(*bucket).await {
                    Ok(w) => *watch = Some(w),
                    Err(e) => tracing::warn!("cannot watch {}: {e}", bucket.as_str()),
                }
            }
        }
    }

    /// Returns at the next change in any watched bucket. Never returns
    /// while no bucket can be watched: callers keep a slower timer.
    pub async fn next(&mut self) {
        loop {
            self.rewatch().await;
            let waiting: Vec<_> = self
                .watches
                .iter_mut()
                .filter_map(|(_, w)| w.as_mut())
                .map(|w| Box::pin(w.changed()))
                .collect();
            if waiting.is_empty() {
                std::future::pending::<()>().await;
            }
            let (changed, index, _) = futures_util::future::select_all(waiting).await;
            if changed.is_some() {
                return;
            }
            // That watch ended: open it again (after a pause, so a store
            // that is down is not hammered).
            if let Some((_, watch)) = self
                .watches
                .iter_mut()
                .filter(|(_, w)| w.is_some())
                .nth(index)
            {
                *watch = None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Discards the notices already queued (the caller is about to read
    /// the state anyway).
    pub fn drain(&mut self) {
        for watch in self.watches.iter_mut().filter_map(|(_, w)| w.as_mut()) {
            watch.drain();
        }
    }
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field(
                "buckets",
                &self
                    .watches
                    .iter()
                    .map(|(b, w)| (b.as_str(), w.is_some()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
