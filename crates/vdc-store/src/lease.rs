//! Leadership among servers sharing one store: a lease kept under one key of
//! the Meta bucket and written only with compare-and-set.
//!
//! The decision is a pure function, [`decide`]: from the time, who asks and
//! the lease as read, what to do. [`Leadership`] is the thin shell around it:
//! every `ttl / 3` it reads the lease, decides, and writes with
//! [`Store::cas`] on the revision it read, so of two contenders reading the
//! same revision only one can win (the other gets [`StoreError::Conflict`]).
//!
//! **Fencing.** The term grows by one on every change of holder, so a term
//! names one leadership period of one holder. A leader that has not renewed
//! for `ttl × 2/3` (the store is unreachable, a write conflicted) stops
//! leading at once; the others take over only once `renewed_at + ttl` has
//! passed. The `ttl / 3` between the two is the margin for delays and for
//! clock differences.
//!
//! **Clocks.** `renewed_at_ms` is the holder's wall clock and expiry is
//! judged on the reader's wall clock: the servers' clocks must agree to well
//! under `ttl / 3` (NTP keeps them within milliseconds). The holder's own
//! step-down uses its monotonic clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{Bucket, Store, StoreError};

/// The key of the lease in [`Bucket::Meta`].
pub const LEADER_KEY: &str = "leader";

/// The lease as stored (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Who leads, e.g. `node-a/1234` (node name and pid).
    pub holder: String,
    /// Grows by one on every change of holder.
    pub term: u64,
    /// The holder's wall clock (ms since the epoch) at its last renewal.
    pub renewed_at_ms: u64,
    /// How long the lease holds after a renewal.
    pub ttl_ms: u64,
}

impl LeaseRecord {
    /// The wall-clock time (ms) from which others may take the lease.
    pub fn expires_at_ms(&self) -> u64 {
        self.renewed_at_ms.saturating_add(self.ttl_ms)
    }
}

/// What a contender does with the lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    /// Nobody holds a live lease: take it with this term.
    Acquire { term: u64 },
    /// This contender holds a live lease: write it again, same term.
    Renew { term: u64 },
    /// Someone else holds the lease, until `until_ms` unless renewed.
    Wait { holder: String, until_ms: u64 },
}

/// What `me` does at wall-clock `now_ms` with the lease `current` (as read).
/// Pure: the caller writes the outcome with compare-and-set on the revision
/// it read.
pub fn decide(now_ms: u64, me: &str, current: Option<&LeaseRecord>) -> LeaseStep {
    let Some(lease) = current else {
        return LeaseStep::Acquire { term: 1 };
    };
    let live = now_ms < lease.expires_at_ms();
    match (lease.holder == me, live) {
        (true, true) => LeaseStep::Renew { term: lease.term },
        // Our own lease lapsed: we stopped leading then, so leading again
        // is a new term.
        (_, false) => LeaseStep::Acquire {
            term: lease.term + 1,
        },
        (false, true) => LeaseStep::Wait {
            holder: lease.holder.clone(),
            until_ms: lease.expires_at_ms(),
        },
    }
}

/// The wall clock in ms since the epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Gives the lease up at once, if `me` holds it: it is written as expired,
/// keeping its term, so the next holder takes term + 1 without waiting out
/// the ttl (a clean stop hands over at once). Call it only once this process
/// has stopped acting as leader. True when it released the lease.
pub async fn release(store: &dyn Store, me: &str) -> Result<bool, StoreError> {
    let Some(entry) = store.get(Bucket::Meta, LEADER_KEY).await? else {
        return Ok(false);
    };
    let decode = |source| StoreError::Decode {
        bucket: Bucket::Meta.as_str(),
        key: LEADER_KEY.to_owned(),
        source,
    };
    let mut lease: LeaseRecord = serde_json::from_slice(&entry.value).map_err(decode)?;
    if lease.holder != me {
        return Ok(false);
    }
    lease.renewed_at_ms = 0;
    let bytes = serde_json::to_vec(&lease).map_err(decode)?;
    store
        .cas(Bucket::Meta, LEADER_KEY, bytes, Some(entry.revision))
        .await?;
    Ok(true)
}

/// How often a follower reads the lease, at most.
const FOLLOWER_POLL: Duration = Duration::from_secs(1);

/// The outcome of one round.
#[derive(Debug)]
enum Round {
    /// This process leads (acquired or renewed) with this term.
    Leads(u64),
    /// Another holder leads.
    Follows { holder: String },
}

/// Takes part in the election for the lease under [`LEADER_KEY`].
pub struct Leadership {
    store: Arc<dyn Store>,
    me: String,
    ttl: Duration,
    tx: watch::Sender<Option<u64>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("me", &self.me)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// A contender named `me` (unique among the servers: node name and
    /// pid). The receiver holds `Some(term)` while this process leads.
    pub fn new(
        store: Arc<dyn Store>,
        me: impl Into<String>,
        ttl: Duration,
    ) -> (Leadership, watch::Receiver<Option<u64>>) {
        let (tx, rx) = watch::channel(None);
        let ttl = ttl.max(Duration::from_millis(30));
        (
            Leadership {
                store,
                me: me.into(),
                ttl,
                tx,
            },
            rx,
        )
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// Runs until the task is dropped or aborted. Renews every `ttl / 3`;
    /// stops leading at once on a conflict, and `ttl × 2/3` after the last
    /// successful renewal when the store does not answer.
    pub async fn run(self) {
        let period = self.ttl / 3;
        let margin = self.ttl * 2 / 3;
        // When the last successful round (as leader) started.
        let mut renewed: Option<Instant> = None;
        let mut last_holder: Option<String> = None;
        loop {
            let start = Instant::now();
            // A round as leader must end before the step-down deadline.
            let limit = match renewed {
                Some(at) => (start + period).min(at + margin),
                None => start + period,
            };
            match tokio::time::timeout_at(limit, self.round(wall_ms())).await {
                Ok(Ok(Round::Leads(term))) => {
                    renewed = Some(start);
                    if *self.tx.borrow() != Some(term) {
                        tracing::info!(holder = %self.me, term, "this server leads (term {term})");
                    }
                    self.tx.send_replace(Some(term));
                }
                Ok(Ok(Round::Follows { holder })) => {
                    renewed = None;
                    self.step_down("another server holds the lease");
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(%holder, "{holder} leads");
                        last_holder = Some(holder);
                    }
                }
                Ok(Err(e @ StoreError::Conflict { .. })) => {
                    renewed = None;
                    self.step_down(&format!("another server wrote the lease first: {e}"));
                }
                Ok(Err(e)) => tracing::warn!("cannot renew the leader lease: {e}"),
                Err(_) => tracing::warn!("the leader lease round timed out"),
            }
            let wake = match renewed {
                Some(at) => (start + period).min(at + margin),
                // A follower looks more often (a read is cheap), so a
                // released lease is taken within a second.
                None => start + period.min(FOLLOWER_POLL),
            };
            tokio::time::sleep_until(wake).await;
            if renewed.is_some_and(|at| Instant::now() >= at + margin) {
                renewed = None;
                self.step_down("the lease could not be renewed in time");
            }
        }
    }

    /// The store the lease lives in, for [`release`] at shutdown.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn step_down(&self, why: &str) {
        if self.tx.borrow().is_some() {
            tracing::warn!(holder = %self.me, "this server stops leading: {why}");
        }
        self.tx.send_replace(None);
    }

    /// Reads the lease, decides, writes.
    async fn round(&self, now_ms: u64) -> Result<Round, StoreError> {
        let entry = self.store.get(Bucket::Meta, LEADER_KEY).await?;
        let current = match &entry {
            Some(e) => Some((
                serde_json::from_slice::<LeaseRecord>(&e.value).map_err(|source| {
                    StoreError::Decode {
                        bucket: Bucket::Meta.as_str(),
                        key: LEADER_KEY.to_owned(),
                        source,
                    }
                })?,
                e.revision,
            )),
            None => None,
        };
        let term = match decide(now_ms, &self.me, current.as_ref().map(|(l, _)| l)) {
            LeaseStep::Acquire { term } | LeaseStep::Renew { term } => term,
            LeaseStep::Wait { holder, .. } => return Ok(Round::Follows { holder }),
        };
        let record = LeaseRecord {
            holder: self.me.clone(),
            term,
            renewed_at_ms: now_ms,
            ttl_ms: self.ttl.as_millis() as u64,
        };
        let bytes = serde_json::to_vec(&record).map_err(|source| StoreError::Decode {
            bucket: Bucket::Meta.as_str(),
            key: LEADER_KEY.to_owned(),
            source,
        })?;
        self.store
            .cas(Bucket::Meta, LEADER_KEY, bytes, current.map(|(_, rev)| rev))
            .await?;
        Ok(Round::Leads(term))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use proptest::prelude::*;

    fn lease(holder: &str, term: u64, renewed_at_ms: u64) -> LeaseRecord {
        LeaseRecord {
            holder: holder.to_owned(),
            term,
            renewed_at_ms,
            ttl_ms: 6000,
        }
    }

    #[test]
    fn nobody_holds_it_so_it_is_taken_with_term_one() {
        assert_eq!(decide(5, "a", None), LeaseStep::Acquire { term: 1 });
    }

    #[test]
    fn the_holder_renews_before_expiry_with_the_same_term() {
        let l = lease("a", 4, 1000);
        assert_eq!(decide(1000, "a", Some(&l)), LeaseStep::Renew { term: 4 });
        assert_eq!(decide(6999, "a", Some(&l)), LeaseStep::Renew { term: 4 });
    }

    #[test]
    fn others_wait_until_expiry_then_take_it_with_the_next_term() {
        let l = lease("a", 4, 1000);
        assert_eq!(
            decide(6999, "b", Some(&l)),
            LeaseStep::Wait {
                holder: "a".to_owned(),
                until_ms: 7000
            }
        );
        assert_eq!(decide(7000, "b", Some(&l)), LeaseStep::Acquire { term: 5 });
    }

    #[test]
    fn a_holder_whose_lease_lapsed_starts_a_new_term() {
        let l = lease("a", 4, 1000);
        assert_eq!(decide(9000, "a", Some(&l)), LeaseStep::Acquire { term: 5 });
    }

    /// A model of the store: the lease and its revision, compare-and-set.
    #[derive(Default)]
    struct Model {
        lease: Option<(LeaseRecord, u64)>,
        revision: u64,
    }

    proptest! {
        /// Contenders read (possibly stale) and write with compare-and-set
        /// in any interleaving, at times that only move forward: a term is
        /// never held by two holders, terms never go down, and whoever
        /// writes a lease holds it until it expires.
        #[test]
        fn never_two_holders_for_one_term(
            steps in prop::collection::vec((0usize..3, 0u64..4000, any::<bool>()), 1..60)
        ) {
            let names = ["a", "b", "c"];
            let mut model = Model::default();
            let mut holders: std::collections::BTreeMap<u64, String> = Default::default();
            let mut now = 0u64;
            // What each contender read last (stale reads are allowed).
            let mut seen: [Option<(LeaseRecord, u64)>; 3] = Default::default();
            for (who, advance, reread) in steps {
                now += advance;
                if reread || seen[who].is_none() {
                    seen[who] = model.lease.clone();
                }
                let me = names[who];
                let read = seen[who].clone();
                let step = decide(now, me, read.as_ref().map(|(l, _)| l));
                let term = match step {
                    LeaseStep::Acquire { term } | LeaseStep::Renew { term } => term,
                    LeaseStep::Wait { until_ms, .. } => {
                        prop_assert!(until_ms > now);
                        continue;
                    }
                };
                // Compare-and-set on the revision read.
                if model.lease.as_ref().map(|(_, r)| *r) != read.as_ref().map(|(_, r)| *r) {
                    seen[who] = None;
                    continue;
                }
                if let Some((old, _)) = &model.lease {
                    prop_assert!(term >= old.term);
                    // Taking over from someone else only after expiry.
                    if old.holder != me {
                        prop_assert!(now >= old.expires_at_ms());
                        prop_assert!(term > old.term);
                    }
                }
                if let Some(h) = holders.get(&term) {
                    prop_assert_eq!(h, me, "term {} held by two", term);
                }
                holders.insert(term, me.to_owned());
                model.revision += 1;
                let record = LeaseRecord {
                    holder: me.to_owned(),
                    term,
                    renewed_at_ms: now,
                    ttl_ms: 6000,
                };
                model.lease = Some((record, model.revision));
                seen[who] = model.lease.clone();
            }
        }

        /// Whatever the lease, the answer is one of: renew our own live
        /// lease, wait for another's live one, or take a dead one with a
        /// larger term.
        #[test]
        fn decide_is_consistent(
            holder in 0usize..2, term in 1u64..100, renewed in 0u64..10_000, now in 0u64..20_000
        ) {
            let l = lease(["a", "b"][holder], term, renewed);
            match decide(now, "a", Some(&l)) {
                LeaseStep::Renew { term: t } => {
                    prop_assert!(holder == 0 && now < l.expires_at_ms() && t == term);
                }
                LeaseStep::Wait { until_ms, .. } => {
                    prop_assert!(holder == 1 && now < until_ms);
                }
                LeaseStep::Acquire { term: t } => {
                    prop_assert!(now >= l.expires_at_ms() && t == term + 1);
                }
            }
        }
    }

    fn leader_of(rx: &[&watch::Receiver<Option<u64>>]) -> Vec<Option<u64>> {
        rx.iter().map(|r| *r.borrow()).collect()
    }

    #[tokio::test]
    async fn one_of_two_leads_and_the_other_takes_over_when_it_dies() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let ttl = Duration::from_millis(300);
        let (a, mut rx_a) = Leadership::new(store.clone(), "a/1", ttl);
        let (b, mut rx_b) = Leadership::new(store.clone(), "b/2", ttl);
        let task_a = tokio::spawn(a.run());
        rx_a.wait_for(Option::is_some).await.unwrap();
        let task_b = tokio::spawn(b.run());
        // Several periods: a keeps leading, b never does.
        tokio::time::sleep(ttl * 2).await;
        assert_eq!(leader_of(&[&rx_a, &rx_b]), vec![Some(1), None]);

        task_a.abort();
        let died = std::time::Instant::now();
        tokio::time::timeout(ttl * 4, rx_b.wait_for(|t| *t == Some(2)))
            .await
            .expect("b takes over")
            .unwrap();
        // Not before the lease expired.
        assert!(died.elapsed() >= ttl * 2 / 3, "{:?}", died.elapsed());
        let stored: LeaseRecord = serde_json::from_slice(
            &store
                .get(Bucket::Meta, LEADER_KEY)
                .await
                .unwrap()
                .unwrap()
                .value,
        )
        .unwrap();
        assert_eq!((stored.holder.as_str(), stored.term), ("b/2", 2));
        task_b.abort();
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_over_at_once_with_the_next_term() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let ttl = Duration::from_secs(30);
        let (a, mut rx_a) = Leadership::new(store.clone(), "a/1", ttl);
        let task_a = tokio::spawn(a.run());
        rx_a.wait_for(Option::is_some).await.unwrap();
        task_a.abort();
        // Someone else's lease is not released.
        assert!(!release(store.as_ref(), "b/2").await.unwrap());
        assert!(release(store.as_ref(), "a/1").await.unwrap());
        let (b, mut rx_b) = Leadership::new(store.clone(), "b/2", ttl);
        let task_b = tokio::spawn(b.run());
        // Far sooner than the 30 s ttl.
        tokio::time::timeout(Duration::from_secs(5), rx_b.wait_for(|t| *t == Some(2)))
            .await
            .expect("b takes over at once")
            .unwrap();
        task_b.abort();
    }

    /// A store that stops answering: the leader must step down within
    /// `ttl × 2/3`, before anyone else could take over at `ttl`.
    #[tokio::test]
    async fn a_leader_cut_off_from_the_store_steps_down_before_expiry() {
        struct Flaky {
            inner: MemStore,
            down: std::sync::atomic::AtomicBool,
        }
        #[async_trait::async_trait]
        impl Store for Flaky {
            async fn get(&self, b: Bucket, k: &str) -> Result<Option<crate::Entry>, StoreError> {
                if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                self.inner.get(b, k).await
            }
            async fn put(&self, b: Bucket, k: &str, v: Vec<u8>) -> Result<u64, StoreError> {
                self.inner.put(b, k, v).await
            }
            async fn cas(
                &self,
                b: Bucket,
                k: &str,
                v: Vec<u8>,
                e: Option<u64>,
            ) -> Result<u64, StoreError> {
                self.inner.cas(b, k, v, e).await
            }
            async fn delete(&self, b: Bucket, k: &str) -> Result<bool, StoreError> {
                self.inner.delete(b, k).await
            }
            async fn list(&self, b: Bucket) -> Result<Vec<(String, crate::Entry)>, StoreError> {
                self.inner.list(b).await
            }
            async fn watch(&self, b: Bucket) -> Result<crate::Watch, StoreError> {
                self.inner.watch(b).await
            }
        }
        let flaky = Arc::new(Flaky {
            inner: MemStore::new(),
            down: Default::default(),
        });
        let ttl = Duration::from_millis(600);
        let (a, mut rx) = Leadership::new(flaky.clone(), "a/1", ttl);
        let task = tokio::spawn(a.run());
        rx.wait_for(Option::is_some).await.unwrap();
        let lease: LeaseRecord = serde_json::from_slice(
            &flaky
                .inner
                .get(Bucket::Meta, LEADER_KEY)
                .await
                .unwrap()
                .unwrap()
                .value,
        )
        .unwrap();
        flaky.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let cut = wall_ms();
        tokio::time::timeout(ttl * 2, rx.wait_for(Option::is_none))
            .await
            .expect("steps down")
            .unwrap();
        let stepped_down = wall_ms();
        assert!(cut >= lease.renewed_at_ms);
        // Before anyone else may take the lease over.
        assert!(
            stepped_down < lease.expires_at_ms(),
            "stepped down at {stepped_down}, the lease expires at {}",
            lease.expires_at_ms()
        );
        task.abort();
    }
}
