//! Keys managed through the API: created, changed, rotated and revoked while the gateway
//! runs, kept in the store, and authenticated exactly like config keys (the same
//! `ClientKey`, built by the same validation).
//!
//! The store is the truth: every change is written there first (optimistically, so two
//! replicas or two admins cannot lose one another's change), then applied here. Each
//! process also polls the store for rows changed by others (`sync`), which is how a
//! revocation reaches every replica sharing a Postgres store.

pub mod cli;
pub mod sync;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use dashmap::DashMap;

use crate::auth::{self, ClientKey, MoreKeys, Unknown};
use crate::config::{self, Config, ConfigError, RawKey};
use crate::store::keys::{self as store_keys, StoredKey};
use crate::store::Store;

/// A secret that works, and until when (a secret replaced by a rotation, in its grace).
struct Slot {
    key: Arc<ClientKey>,
    until: Option<SystemTime>,
}

/// One API key as the store has it, with its runtime form.
#[derive(Clone)]
pub struct Entry {
    pub row: StoredKey,
    pub key: Arc<ClientKey>,
}

#[derive(Default)]
pub struct ApiKeys {
    /// What requests read: secret digest -> key. Sharded, so a management change never
    /// copies the table and readers never wait on a writer for long.
    by_digest: DashMap<[u8; 32], Slot>,
    /// Name -> entry: what the management API reads and changes. Never held across an
    /// await.
    entries: Mutex<HashMap<String, Entry>>,
    /// When the last successful read of the store began (ms, this clock); the poller
    /// reads the rows changed since a little before it.
    read_at: AtomicI64,
    /// Last-use times as last persisted, by key name (config keys too).
    persisted_use: Mutex<HashMap<String, i64>>,
}

/// Why a keys API call did not happen.
#[derive(Debug)]
pub enum KeyError {
    /// Bad fields, each named.
    Invalid(Vec<ConfigError>),
    /// The name is taken by a live API key.
    Exists,
    NotFound,
    /// The store could not be reached or refused.
    Store(String),
}

impl MoreKeys for ApiKeys {
    fn find_digest(&self, digest: &[u8; 32], now: SystemTime) -> Result<Arc<ClientKey>, Unknown> {
        let Some(slot) = self.by_digest.get(digest) else {
            return Err(Unknown::NoSuchKey);
        };
        match slot.until {
            Some(until) if now >= until => Err(Unknown::Rotated {
                name: slot.key.name.clone(),
            }),
            _ => Ok(slot.key.clone()),
        }
    }
}

/// How far before the last read the next one starts.
const LOOKBACK_MS: i64 = 10_000;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn time_of(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A new secret: `sk-mg-` and 32 random bytes from the OS, base64url without padding.
pub fn new_secret() -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| KeyError::Store(format!("no randomness for a new secret: {e}")))?;
    Ok(format!(
        "sk-mg-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut d).ok().map(|()| d)
}

/// A stored spec as the fields a config key has (the store holds what the API accepted).
fn fields_of(name: &str, spec: &str) -> Result<RawKey, String> {
    let bad = |e: serde_json::Error| format!("its stored fields do not parse: {e}");
    let mut v: serde_json::Value = serde_json::from_str(spec).map_err(bad)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("name".into(), serde_json::Value::String(name.to_string()));
    }
    serde_json::from_value(v).map_err(bad)
}

fn invalid(path: &str, message: impl Into<String>) -> KeyError {
    KeyError::Invalid(vec![ConfigError::at(path, message)])
}

impl ApiKeys {
    pub fn len(&self) -> usize {
        self.lock_entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Entry> {
        self.lock_entries().get(name).cloned()
    }

    /// Every live API key, by name.
    pub fn all(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.lock_entries().values().cloned().collect();
        v.sort_by(|a, b| a.row.name.cmp(&b.row.name));
        v
    }

    /// Makes the runtime match one stored row (a newer one replaces, a deleted one
    /// removes). Rows that did not change are skipped, so polling the same rows is cheap.
    pub fn apply(&self, row: StoredKey) {
        let mut entries = self.lock_entries();
        let prev = entries.get(&row.name);
        if prev.is_some_and(|p| p.row == row) {
            return;
        }
        if prev.is_none() && row.deleted_ms.is_some() {
            return;
        }
        let last_used = prev
            .map(|p| p.key.last_used_ms.load(Ordering::Relaxed))
            .unwrap_or(0);
        if let Some(prev) = entries.remove(&row.name) {
            for d in [
                Some(prev.row.digest.as_str()),
                prev.row.old_digest.as_deref(),
            ]
            .into_iter()
            .flatten()
            .filter_map(parse_digest)
            {
                self.by_digest.remove_if(&d, |_, s| s.key.name == row.name);
            }
        }
        if row.deleted_ms.is_some() {
            return;
        }
        let built = parse_digest(&row.digest)
            .ok_or_else(|| "its stored digest is not 64 hex characters".to_string())
            .and_then(|d| fields_of(&row.name, &row.spec).map(|raw| (d, raw)))
            .and_then(|(d, raw)| {
                config::api_key(raw, d, row.hint.clone(), row.created_ms).map_err(|errors| {
                    let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    list.join("; ")
                })
            });
        let key = match built {
            Ok((key, _warnings)) => Arc::new(key),
            Err(e) => {
                log::error!("API key {:?} is not usable: {e}", row.name);
                return;
            }
        };
        let persisted = self
            .persisted_use
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&row.name)
            .copied()
            .unwrap_or(0);
        key.last_used_ms
            .store(last_used.max(persisted), Ordering::Relaxed);
        self.by_digest.insert(
            key.digest,
            Slot {
                key: key.clone(),
                until: None,
            },
        );
        if let (Some(old), Some(until)) = (
            row.old_digest.as_deref().and_then(parse_digest),
            row.old_until_ms,
        ) {
            self.by_digest.insert(
                old,
                Slot {
                    key: key.clone(),
                    until: Some(time_of(until)),
                },
            );
        }
        entries.insert(row.name.clone(), Entry { row, key });
    }

    /// Where the poller reads from: 10 s before the last read began, so a change
    /// committed late, or stamped by a replica whose clock is a little behind, is not
    /// missed (rows already applied are skipped), while rows changed long ago are not
    /// read again and again.
    pub fn poll_from(&self) -> i64 {
        self.read_at
            .load(Ordering::Relaxed)
            .saturating_sub(LOOKBACK_MS)
    }

    /// Reads every key and last-use time from the store (start, and the store opening
    /// late under `-d`).
    pub async fn load(&self, store: &Store) -> Result<usize, String> {
        let started = now_ms();
        let pool = store.pool();
        let (rows, used) = store
            .run(async move {
                let rows = store_keys::changed_since(&pool, i64::MIN).await?;
                let used = store_keys::activity(&pool).await?;
                Ok::<_, sqlx::Error>((rows, used))
            })
            .await?
            .map_err(|e| format!("cannot read the API keys from the store: {e}"))?;
        {
            let mut persisted = self.persisted_use.lock().unwrap_or_else(|p| p.into_inner());
            persisted.extend(used);
        }
        for row in rows {
            self.apply(row);
        }
        self.read_at.store(started, Ordering::Relaxed);
        Ok(self.len())
    }

    /// Applies what other processes changed since the last poll.
    pub async fn poll(&self, store: &Store) -> Result<(), String> {
        let started = now_ms();
        let pool = store.pool();
        let since = self.poll_from();
        let rows = store
            .run(async move { store_keys::changed_since(&pool, since).await })
            .await?
            .map_err(|e| e.to_string())?;
        for row in rows {
            self.apply(row);
        }
        // Only a read that worked moves the window: after an outage the next one reads
        // everything changed since the last good one.
        self.read_at.store(started, Ordering::Relaxed);
        Ok(())
    }

    /// Config keys start with the last use persisted or seen under the previous config.
    pub fn adopt_config(&self, new: &Config, old: Option<&Config>) {
        {
            let entries = self.lock_entries();
            for k in new.keys.iter().filter(|k| entries.contains_key(&k.name)) {
                log::warn!(
                    "config key {:?} has the name of an API key: both work, but they share its budgets and metrics; rename one",
                    k.name
                );
            }
        }
        let persisted = self.persisted_use.lock().unwrap_or_else(|p| p.into_inner());
        for k in new.keys.iter() {
            let before = old
                .and_then(|o| o.keys.get_by_name(&k.name))
                .map(|o| o.last_used_ms.load(Ordering::Relaxed))
                .unwrap_or(0);
            let at = before.max(persisted.get(&k.name).copied().unwrap_or(0));
            k.last_used_ms.fetch_max(at, Ordering::Relaxed);
        }
    }

    /// Writes the last-use times that moved since the last write (a batch every few
    /// seconds, never one write per request).
    pub async fn persist_activity(&self, store: &Store, config: &Config) -> Result<(), String> {
        let changed: Vec<(String, i64)> = {
            let persisted = self.persisted_use.lock().unwrap_or_else(|p| p.into_inner());
            let entries = self.lock_entries();
            config
                .keys
                .iter()
                .chain(entries.values().map(|e| &e.key))
                .map(|k| (k.name.clone(), k.last_used_ms.load(Ordering::Relaxed)))
                .filter(|(n, t)| *t > persisted.get(n).copied().unwrap_or(0))
                .collect()
        };
        if changed.is_empty() {
            return Ok(());
        }
        let pool = store.pool();
        let rows = changed.clone();
        store
            .run(async move { store_keys::write_activity(&pool, &rows).await })
            .await?
            .map_err(|e| format!("cannot record when keys were last used: {e}"))?;
        let mut persisted = self.persisted_use.lock().unwrap_or_else(|p| p.into_inner());
        persisted.extend(changed);
        Ok(())
    }

    /// Creates a key from the API's fields. The answer carries the only copy of the
    /// secret; the store keeps its SHA-256.
    pub async fn create(
        &self,
        store: &Store,
        raw: RawKey,
    ) -> Result<(Entry, String, Vec<String>), KeyError> {
        let secret = new_secret()?;
        let digest = auth::digest(&secret);
        let hint = auth::last4(&secret).to_string();
        let now = now_ms();
        let (key, warnings) =
            config::api_key(raw, digest, hint.clone(), now).map_err(KeyError::Invalid)?;
        let spec = serde_json::to_string(&key.fields)
            .map_err(|e| KeyError::Store(format!("cannot encode the key: {e}")))?;
        let row = StoredKey {
            name: key.name.clone(),
            digest: hex::encode(digest),
            hint,
            spec,
            created_ms: now,
            updated_ms: now,
            old_digest: None,
            old_until_ms: None,
            deleted_ms: None,
        };
        let pool = store.pool();
        let insert = row.clone();
        let created = store
            .run(async move { store_keys::create(&pool, &insert).await })
            .await
            .map_err(KeyError::Store)?
            .map_err(|e| KeyError::Store(e.to_string()))?;
        if !created {
            return Err(KeyError::Exists);
        }
        self.apply(row);
        let entry = self.get(&key.name).ok_or(KeyError::NotFound)?;
        Ok((entry, secret, warnings))
    }

    /// Reads `name` from the store, lets `change` make the new row, and writes it if
    /// nobody changed the row meanwhile (else reads again, a few times).
    async fn change(
        &self,
        store: &Store,
        name: &str,
        mut change: impl FnMut(StoredKey) -> Result<StoredKey, KeyError>,
    ) -> Result<StoredKey, KeyError> {
        for _ in 0..5 {
            let pool = store.pool();
            let owned = name.to_string();
            let current = store
                .run(async move { store_keys::get(&pool, &owned).await })
                .await
                .map_err(KeyError::Store)?
                .map_err(|e| KeyError::Store(e.to_string()))?;
            let Some(current) = current.filter(|r| r.deleted_ms.is_none()) else {
                return Err(KeyError::NotFound);
            };
            let seen = current.updated_ms;
            let mut next = change(current)?;
            next.updated_ms = now_ms().max(seen.saturating_add(1));
            let pool = store.pool();
            let write = next.clone();
            let done = store
                .run(async move { store_keys::replace(&pool, &write, seen).await })
                .await
                .map_err(KeyError::Store)?
                .map_err(|e| KeyError::Store(e.to_string()))?;
            if done {
                self.apply(next.clone());
                return Ok(next);
            }
        }
        Err(KeyError::Store(
            "the key kept changing under this update; try again".into(),
        ))
    }

    /// A partial update: each field in `patch` replaces the stored one (`null` resets it).
    pub async fn update(
        &self,
        store: &Store,
        name: &str,
        patch: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(Entry, Vec<String>), KeyError> {
        if patch.contains_key("name") {
            return Err(invalid(
                "name",
                "cannot be changed; create a key with the new name and revoke this one",
            ));
        }
        let mut warnings = Vec::new();
        self.change(store, name, |mut row| {
            let mut spec: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&row.spec).unwrap_or_default();
            for (k, v) in &patch {
                if v.is_null() {
                    spec.remove(k);
                } else {
                    spec.insert(k.clone(), v.clone());
                }
            }
            spec.insert("name".into(), serde_json::Value::String(row.name.clone()));
            let raw = parse_fields(serde_json::Value::Object(spec))?;
            let digest = parse_digest(&row.digest).unwrap_or_default();
            let (key, w) = config::api_key(raw, digest, row.hint.clone(), row.created_ms)
                .map_err(KeyError::Invalid)?;
            warnings = w;
            row.spec = serde_json::to_string(&key.fields)
                .map_err(|e| KeyError::Store(format!("cannot encode the key: {e}")))?;
            Ok(row)
        })
        .await?;
        let entry = self.get(name).ok_or(KeyError::NotFound)?;
        Ok((entry, warnings))
    }

    /// Revokes `name`: its secrets stop working here at once, and on other replicas at
    /// their next poll.
    pub async fn delete(&self, store: &Store, name: &str) -> Result<(), KeyError> {
        self.change(store, name, |mut row| {
            row.deleted_ms = Some(now_ms());
            row.digest = String::new();
            row.old_digest = None;
            row.old_until_ms = None;
            Ok(row)
        })
        .await
        .map(|_| ())
    }

    /// A new secret for `name`; the old one keeps working for `grace`.
    pub async fn rotate(
        &self,
        store: &Store,
        name: &str,
        grace: Duration,
    ) -> Result<(Entry, String), KeyError> {
        let secret = new_secret()?;
        let digest = hex::encode(auth::digest(&secret));
        let hint = auth::last4(&secret).to_string();
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.change(store, name, |mut row| {
            let old = std::mem::replace(&mut row.digest, digest.clone());
            row.hint = hint.clone();
            if grace_ms > 0 {
                row.old_digest = Some(old);
                row.old_until_ms = Some(now_ms().saturating_add(grace_ms));
            } else {
                row.old_digest = None;
                row.old_until_ms = None;
            }
            Ok(row)
        })
        .await?;
        let entry = self.get(name).ok_or(KeyError::NotFound)?;
        Ok((entry, secret))
    }
}

/// The API's JSON as a key's fields; a wrong type or unknown field names its path.
pub fn parse_fields(v: serde_json::Value) -> Result<RawKey, KeyError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        invalid(&path, e.inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_url_safe() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sk-mg-"));
        // 32 bytes in unpadded base64url.
        assert_eq!(a.len(), 6 + 43);
        assert!(a[6..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    fn row(name: &str, secret: &str, updated: i64) -> StoredKey {
        StoredKey {
            name: name.into(),
            digest: hex::encode(auth::digest(secret)),
            hint: auth::last4(secret).into(),
            spec: r#"{"models":["gpt-*"],"metadata":{"owner":"ana"}}"#.into(),
            created_ms: 1,
            updated_ms: updated,
            old_digest: None,
            old_until_ms: None,
            deleted_ms: None,
        }
    }

    #[test]
    fn apply_adds_rotates_and_revokes() {
        let keys = ApiKeys::default();
        let now = SystemTime::now();
        keys.apply(row("a", "sk-mg-first-secret-0001", 10));
        let k = keys
            .find_digest(&auth::digest("sk-mg-first-secret-0001"), now)
            .ok()
            .unwrap();
        assert_eq!(k.name, "a");
        assert!(k.allows_model(&["gpt-4o"]) && !k.allows_model(&["claude"]));
        assert_eq!(
            k.fields.metadata.get("owner").map(String::as_str),
            Some("ana")
        );

        // Rotated with a grace that is already over: the old secret says so.
        let mut r = row("a", "sk-mg-second-secret-002", 20);
        r.old_digest = Some(hex::encode(auth::digest("sk-mg-first-secret-0001")));
        r.old_until_ms = Some(now_ms() - 1);
        keys.apply(r.clone());
        assert!(matches!(
            keys.find_digest(&auth::digest("sk-mg-first-secret-0001"), SystemTime::now()),
            Err(Unknown::Rotated { .. })
        ));
        assert!(keys
            .find_digest(&auth::digest("sk-mg-second-secret-002"), now)
            .is_ok());

        // Revoked: neither secret works, and the name is gone.
        r.deleted_ms = Some(30);
        r.updated_ms = 30;
        keys.apply(r);
        assert!(keys
            .find_digest(&auth::digest("sk-mg-second-secret-002"), now)
            .is_err());
        assert!(keys.get("a").is_none());
        assert_eq!(keys.poll_from(), -LOOKBACK_MS, "never read: from the start");
    }

    #[test]
    fn bad_fields_name_their_path() {
        let e = parse_fields(serde_json::json!({"name": "x", "limits": {"rpm": "many"}}));
        let Err(KeyError::Invalid(errors)) = e else {
            panic!("expected invalid")
        };
        assert_eq!(errors[0].path, "limits.rpm");
        let e = parse_fields(serde_json::json!({"name": "x", "colour": 1}));
        let Err(KeyError::Invalid(errors)) = e else {
            panic!("expected invalid")
        };
        assert!(errors[0].message.contains("colour"), "{errors:?}");
    }
}
