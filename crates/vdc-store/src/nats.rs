//! The state store in a NATS JetStream key-value bucket.
//!
//! Every [`Bucket`] lives in ONE key-value bucket (by default `vdc-state`), as
//! a key prefix: `apps.shop`, `instances.shop/web/0`. One bucket is one
//! stream, so revisions (stream sequences) increase across the whole store,
//! as [`Store`] promises.
//!
//! NATS keys allow only `-/_=.a-zA-Z0-9`, and a dot separates subject
//! tokens. A vdc key is stored as one token: every byte outside
//! `-/_a-zA-Z0-9` is written as `=` and two upper-case hex digits (`:` is
//! `=3A`, `.` is `=2E`, `=` itself is `=3D`), so `shop/lb:gateway` is stored
//! as `links.shop/lb=3Agateway`. Decoding is unambiguous because a stored
//! `=` always starts an escape.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    kv::{self, CreateErrorKind, Operation, UpdateErrorKind},
    stream::StorageType,
};
use async_trait::async_trait;
use futures_util::StreamExt;

use crate::{Bucket, Entry, Store, StoreError, Watch};

/// How long connecting to the server may take before opening fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long listing a bucket may take as a whole.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Store`] kept in a NATS JetStream key-value bucket.
#[derive(Clone)]
pub struct NatsStore {
    kv: kv::Store,
    client: async_nats::Client,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore").finish_non_exhaustive()
    }
}

impl NatsStore {
    /// Connects to the server at `url` and opens the key-value bucket
    /// `bucket`, creating it (file storage, one replica) if it does not exist.
    /// The connection to NATS, for the subjects beside the bucket (the
    /// telemetry and event bus of a cluster).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub async fn connect(url: &str, bucket: &str) -> Result<NatsStore, StoreError> {
        Self::connect_with_replicas(url, bucket, 1).await
    }

    /// Like [`NatsStore::connect`]; a bucket created here gets `replicas`
    /// copies (a cluster uses 3). An existing bucket is used as it is.
    pub async fn connect_with_replicas(
        url: &str,
        bucket: &str,
        replicas: usize,
    ) -> Result<NatsStore, StoreError> {
        let open_err = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: format!("{url} (key-value bucket {bucket})"),
            source: format!("{what}: {e}").into(),
        };
        let options = async_nats::ConnectOptions::new()
            .name("vdc-server")
            .connection_timeout(CONNECT_TIMEOUT);
        // The client's own timeout covers one attempt; this one also covers
        // name resolution and the handshake.
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(url))
            .await
            .map_err(|_| open_err("cannot connect", "timed out".into()))?
            .map_err(|e| open_err("cannot connect", e.into()))?;
        let js = jetstream::new(client.clone());
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(get_err) => js
                .create_key_value(kv::Config {
                    bucket: bucket.to_owned(),
                    description: "vdc control-plane state".to_owned(),
                    history: 1,
                    storage: StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    open_err(
                        "cannot open or create the bucket",
                        format!("{e} (opening it failed with: {get_err})").into(),
                    )
                })?,
        };
        Ok(NatsStore { kv, client })
    }

    fn backend(
        op: &'static str,
        bucket: Bucket,
        key: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Backend {
            op,
            bucket: bucket.as_str(),
            key: key.to_owned(),
            source: source.into(),
        }
    }

    /// The NATS key of `key` in `bucket`.
    fn nats_key(op: &'static str, bucket: Bucket, key: &str) -> Result<String, StoreError> {
        if key.is_empty() {
            return Err(Self::backend(
                op,
                bucket,
                key,
                "an empty key cannot be stored in NATS",
            ));
        }
        Ok(format!("{}.{}", bucket.as_str(), encode_key(key)))
    }

    /// The live entry under a NATS key; `None` when absent or deleted.
    async fn entry(
        &self,
        op: &'static str,
        bucket: Bucket,
        key: &str,
        nats_key: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let entry = self
            .kv
            .entry(nats_key)
            .await
            .map_err(|e| Self::backend(op, bucket, key, e))?;
        Ok(entry.and_then(live))
    }

    /// The conflict a failed compare-and-set reports, with the revision
    /// found now (best effort: `None` if it cannot be read).
    async fn conflict(
        &self,
        bucket: Bucket,
        key: &str,
        nats_key: &str,
        expected: Option<u64>,
    ) -> StoreError {
        let found = self
            .entry("cas", bucket, key, nats_key)
            .await
            .ok()
            .flatten()
            .map(|e| e.revision);
        StoreError::Conflict {
            bucket: bucket.as_str(),
            key: key.to_owned(),
            expected,
            found,
        }
    }
}

/// A put entry as an [`Entry`]; deletes and purges (tombstones) are `None`.
fn live(entry: kv::Entry) -> Option<Entry> {
    match entry.operation {
        Operation::Put => Some(Entry {
            value: entry.value.to_vec(),
            revision: entry.revision,
        }),
        Operation::Delete | Operation::Purge => None,
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_')
}

/// A vdc key as one valid NATS key token (see the module documentation).
pub(crate) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The vdc key an [`encode_key`] result stands for; `None` when `encoded`
/// was not written by [`encode_key`].
pub(crate) fn decode_key(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' => {
                let hex = encoded.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
                {
                    return None;
                }
                let b = u8::from_str_radix(hex, 16).ok()?;
                if is_plain(b) {
                    // Never written escaped: a different spelling of a key.
                    return None;
                }
                out.push(b);
                i += 3;
            }
            b if is_plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[async_trait]
impl Store for NatsStore {
    async fn get(&self, bucket: Bucket, key: &str) -> Result<Option<Entry>, StoreError> {
        let nats_key = Self::nats_key("get", bucket, key)?;
        self.entry("get", bucket, key, &nats_key).await
    }

    async fn put(&self, bucket: Bucket, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        let nats_key = Self::nats_key("put", bucket, key)?;
        self.kv
            .put(&nats_key, value.into())
            .await
            .map_err(|e| Self::backend("put", bucket, key, e))
    }

    async fn cas(
        &self,
        bucket: Bucket,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let nats_key = Self::nats_key("cas", bucket, key)?;
        match expected {
            // `create` also succeeds on a key whose last write is a delete.
            None => match self.kv.create(&nats_key, value.into()).await {
                Ok(rev) => Ok(rev),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    Err(self.conflict(bucket, key, &nats_key, expected).await)
                }
                Err(e) => Err(Self::backend("cas", bucket, key, e)),
            },
            Some(rev) => match self.kv.update(&nats_key, value.into(), rev).await {
                Ok(rev) => Ok(rev),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    Err(self.conflict(bucket, key, &nats_key, expected).await)
                }
                Err(e) => Err(Self::backend("cas", bucket, key, e)),
            },
        }
    }

    /// Reads, then deletes. A writer racing between the two can make the
    /// answer stale (the key is deleted either way); callers only use the
    /// answer for reporting.
    async fn delete(&self, bucket: Bucket, key: &str) -> Result<bool, StoreError> {
        let nats_key = Self::nats_key("delete", bucket, key)?;
        if self
            .entry("delete", bucket, key, &nats_key)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        self.kv
            .delete(&nats_key)
            .await
            .map_err(|e| Self::backend("delete", bucket, key, e))?;
        Ok(true)
    }

    /// Follows the bucket's prefix with an ordered consumer that delivers
    /// only new writes and deletes.
    async fn watch(&self, bucket: Bucket) -> Result<Watch, StoreError> {
        let prefix = format!("{}.", bucket.as_str());
        let mut changes = self
            .kv
            .watch(format!("{prefix}*"))
            .await
            .map_err(|e| Self::backend("watch", bucket, "*", e))?;
        let (watch, tx) = Watch::channel();
        let task = tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(change) = changes.next().await {
                let Ok(entry) = change else {
                    // The consumer is gone (the connection ended): closing
                    // the watch tells the caller to watch again.
                    return;
                };
                let encoded = entry.key.strip_prefix(&prefix).unwrap_or(&entry.key);
                let key = decode_key(encoded).unwrap_or_else(|| encoded.to_owned());
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(key) {
                    return;
                }
            }
        });
        Ok(watch.with_task(task))
    }

    /// The last write of every key under the bucket's prefix, read with one
    /// consumer (last message per subject).
    ///
    /// The read ends when every subject the stream held before the consumer
    /// was made has been delivered. The consumer's own "pending" count is not
    /// trusted for that: servers of the 2.9 line sometimes never report 0 for
    /// a wildcard filter while keys are written (the list then waited for its
    /// timeout), and later ones can report 0 too early under concurrent writes.
    async fn list(&self, bucket: Bucket) -> Result<Vec<(String, Entry)>, StoreError> {
        let err =
            |e: Box<dyn std::error::Error + Send + Sync>| Self::backend("list", bucket, "*", e);
        let prefix = format!("{}.", bucket.as_str());
        let read = async {
            let filter = format!("{}{prefix}*", self.kv.prefix);
            let mut expected = std::collections::HashSet::new();
            let mut subjects = self
                .kv
                .stream
                .info_with_subjects(&filter)
                .await
                .map_err(|e| err(e.into()))?;
            while let Some(subject) = subjects.next().await {
                let (subject, _count) = subject.map_err(|e| err(e.into()))?;
                expected.insert(subject);
            }
            if expected.is_empty() {
                return Ok(Vec::new());
            }
            let mut watch = self
                .kv
                .watch_with_history(format!("{prefix}*"))
                .await
                .map_err(|e| err(e.into()))?;
            let mut out = std::collections::BTreeMap::new();
            while let Some(entry) = watch.next().await {
                let entry = entry.map_err(|e| err(e.into()))?;
                expected.remove(&format!("{}{}", self.kv.prefix, entry.key));
                let encoded = entry.key.strip_prefix(&prefix).unwrap_or(&entry.key);
                let key = decode_key(encoded).ok_or_else(|| {
                    err(format!("the bucket holds a key vdc did not write: {}", entry.key).into())
                })?;
                // Writes made after the consumer started arrive too, a key
                // again: the later one wins.
                match live(entry) {
                    Some(e) => out.insert(key, e),
                    None => out.remove(&key),
                };
                if expected.is_empty() {
                    break;
                }
            }
            Ok::<_, StoreError>(out.into_iter().collect::<Vec<_>>())
        };
        let out = tokio::time::timeout(LIST_TIMEOUT, read)
            .await
            .map_err(|_| err("timed out".into()))??;
        Ok(out)
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;
    use proptest::prelude::*;

    fn valid_nats_key(k: &str) -> bool {
        !k.is_empty()
            && !k.starts_with('.')
            && !k.ends_with('.')
            && !k.split('.').any(str::is_empty)
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    #[test]
    fn every_vdc_key_shape_is_a_valid_nats_key_and_round_trips() {
        let keys = [
            "shop",
            "shop/web/0",
            "shop/web.db",
            "shop/lb:gateway",
            "acme/shop/web/000000028391234",
            "admin-token",
            "metering-checkpoint",
            "a=b",
            "=3A",
            ".lead",
            "trail.",
            "a..b",
            "ünïcode ✓",
        ];
        for key in keys {
            let encoded = encode_key(key);
            for bucket in Bucket::ALL {
                let full = format!("{}.{encoded}", bucket.as_str());
                assert!(valid_nats_key(&full), "{key} -> {full}");
            }
            assert_eq!(decode_key(&encoded).as_deref(), Some(key), "{encoded}");
        }
        assert_eq!(encode_key("shop/lb:gateway"), "shop/lb=3Agateway");
        assert_eq!(encode_key("shop/web.db"), "shop/web=2Edb");
        assert_eq!(encode_key("a=b"), "a=3Db");
    }

    #[test]
    fn foreign_spellings_do_not_decode() {
        for bad in ["a=", "a=3", "=3a", "=41", "a.b", "a:b", "=FF"] {
            assert_eq!(decode_key(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_string_round_trips(key in "\\PC{1,40}") {
            let encoded = encode_key(&key);
            let full = format!("apps.{encoded}");
            prop_assert!(valid_nats_key(&full), "{}", full);
            prop_assert_eq!(decode_key(&encoded), Some(key));
        }

        #[test]
        fn encoding_keeps_distinct_keys_distinct(a in "[a-z:.=/]{1,8}", b in "[a-z:.=/]{1,8}") {
            prop_assert_eq!(a == b, encode_key(&a) == encode_key(&b));
        }
    }
}
