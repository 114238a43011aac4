//! Provider objects: files, batches, stored responses and Gemini operations exist only at
//! the provider and credential that created them. This module remembers, for each id the
//! gateway saw handed out, that provider, a fingerprint of the credential and the key that
//! asked, so every later call on the id goes back there, and only for that key.
//!
//! Recent ids are kept in memory (what this process handed out is found at once); every
//! id also goes to the store, written off the request path, so it survives restarts and
//! replicas sharing the store find each other's (read only when an id is not known here).

pub mod capture;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::keys::now_ms;
use crate::store::objects::{self as rows, StoredObject};
use crate::store::Store;

/// Ids kept in memory at most; past it the oldest are left to the store.
const MAX_RECENT: usize = 100_000;

/// The second look in the store for an id not found there.
const UNKNOWN_ID_RECHECK: Duration = Duration::from_millis(200);

/// How often (in ids remembered) expired rows are purged from the store.
const PURGE_EVERY: u64 = 512;

/// How long a deleted id stays unknown here whatever the store says: its row is deleted
/// off the request path, and until that write lands the store would still find it.
const DELETED_TTL_MS: i64 = 600_000;

/// Deleted ids kept at most; past it the oldest go (the store's delete has long landed).
const MAX_DELETED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    File,
    Batch,
    Response,
    Operation,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::Batch => "batch",
            ObjectKind::Response => "response",
            ObjectKind::Operation => "operation",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "file" => ObjectKind::File,
            "batch" => ObjectKind::Batch,
            "response" => ObjectKind::Response,
            "operation" => ObjectKind::Operation,
            _ => return None,
        })
    }
}

/// Where an object lives and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub kind: ObjectKind,
    pub provider: String,
    /// `Provider::credential_id` of the credential that created it.
    pub credential: String,
    /// The key that created it: no other key reaches it.
    pub key: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl Owner {
    fn row(&self, id: &str) -> StoredObject {
        StoredObject {
            id: id.to_string(),
            kind: self.kind.as_str().to_string(),
            provider: self.provider.clone(),
            credential: self.credential.clone(),
            key_name: self.key.clone(),
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
        }
    }

    fn from_row(r: StoredObject) -> Option<(String, Owner)> {
        let kind = ObjectKind::parse(&r.kind)?;
        Some((
            r.id,
            Owner {
                kind,
                provider: r.provider,
                credential: r.credential,
                key: r.key_name,
                created_ms: r.created_ms,
                expires_ms: r.expires_ms,
            },
        ))
    }
}

#[derive(Default)]
pub struct Objects {
    recent: DashMap<String, Owner>,
    /// Ids this process deleted, with when: unknown at once, not only once the store's
    /// delete lands.
    deleted: DashMap<String, i64>,
    remembered: AtomicU64,
}

impl Objects {
    /// Remembers ids handed out by `provider` (credential `credential`) to `key`, for
    /// `retention`. Never blocks: the store write is spawned on the store's runtime.
    pub fn remember(
        &self,
        found: Vec<capture::Found>,
        provider: &str,
        credential: &str,
        key: &str,
        retention: Duration,
        store: Option<Arc<Store>>,
    ) {
        if found.is_empty() {
            return;
        }
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        if self.recent.len() >= MAX_RECENT {
            // The store has them all; memory only speeds up what was made recently.
            self.recent
                .retain(|_, o| o.expires_ms > now && o.created_ms > now - 3_600_000);
            if self.recent.len() >= MAX_RECENT {
                self.recent.clear();
            }
        }
        let mut rows_out = Vec::with_capacity(found.len());
        for f in found {
            // A batch seen again keeps its owner; its output files are new ids.
            let owner = Owner {
                kind: f.kind,
                provider: provider.to_string(),
                credential: credential.to_string(),
                key: key.to_string(),
                created_ms: now,
                expires_ms: expires,
            };
            rows_out.push(owner.row(&f.id));
            self.deleted.remove(&f.id);
            self.recent.insert(f.id, owner);
        }
        let Some(store) = store else { return };
        let n = self.remembered.fetch_add(1, Ordering::Relaxed);
        let pool = store.pool();
        store.spawn(async move {
            if let Err(e) = rows::upsert(&pool, &rows_out).await {
                log::warn!(
                    "cannot remember {} provider object id(s) in the store: {e}",
                    rows_out.len()
                );
            }
            if n.is_multiple_of(PURGE_EVERY) {
                match rows::purge(&pool, now).await {
                    Ok(0) => {}
                    Ok(k) => log::debug!("forgot {k} expired provider object id(s)"),
                    Err(e) => log::warn!("cannot purge expired provider object ids: {e}"),
                }
            }
        });
    }

    /// Where `id` lives: from memory, else from the store (another replica's, or from
    /// before a restart). `Err`: the store could not be read.
    pub async fn find(&self, id: &str, store: Option<Arc<Store>>) -> Result<Option<Owner>, String> {
        let now = now_ms();
        if let Some(o) = self.recent.get(id).filter(|o| o.expires_ms > now) {
            return Ok(Some(o.clone()));
        }
        if self.was_deleted(id, now) {
            return Ok(None);
        }
        let Some(store) = store else { return Ok(None) };
        let pool = store.pool();
        let key = id.to_string();
        let row = store
            .run(async move {
                let first = rows::get(&pool, &key, now).await?;
                if first.is_some() {
                    return Ok(first);
                }
                // Another replica may have handed it out an instant ago, its write still
                // on the way: one more look before the id is unknown.
                tokio::time::sleep(UNKNOWN_ID_RECHECK).await;
                rows::get(&pool, &key, now).await
            })
            .await?
            .map_err(|e| e.to_string())?;
        let Some((id, owner)) = row.and_then(Owner::from_row) else {
            return Ok(None);
        };
        if self.was_deleted(&id, now_ms()) {
            // Deleted here while the store was being read.
            return Ok(None);
        }
        self.recent.insert(id, owner.clone());
        Ok(Some(owner))
    }

    /// Forgets `id` after the client deleted it.
    pub fn forget(&self, id: &str, store: Option<Arc<Store>>) {
        self.recent.remove(id);
        let now = now_ms();
        if self.deleted.len() >= MAX_DELETED {
            self.deleted.retain(|_, at| now - *at < DELETED_TTL_MS);
            if self.deleted.len() >= MAX_DELETED {
                self.deleted.clear();
            }
        }
        self.deleted.insert(id.to_string(), now);
        if let Some(store) = store {
            let (pool, id) = (store.pool(), id.to_string());
            store.spawn(async move {
                if let Err(e) = rows::delete(&pool, &id).await {
                    log::warn!("cannot forget a deleted provider object in the store: {e}");
                }
            });
        }
    }

    fn was_deleted(&self, id: &str, now: i64) -> bool {
        self.deleted
            .get(id)
            .is_some_and(|at| now.saturating_sub(*at) < DELETED_TTL_MS)
    }

    /// The ids of `kind` that `key` made on `provider`: what a list may show that key.
    pub async fn ids_of(
        &self,
        key: &str,
        kind: ObjectKind,
        provider: &str,
        store: Option<Arc<Store>>,
    ) -> Result<HashSet<String>, String> {
        let now = now_ms();
        let mut ids: HashSet<String> = self
            .recent
            .iter()
            .filter(|e| {
                let o = e.value();
                o.kind == kind && o.key == key && o.provider == provider && o.expires_ms > now
            })
            .map(|e| e.key().clone())
            .collect();
        if let Some(store) = store {
            let pool = store.pool();
            let (key, provider) = (key.to_string(), provider.to_string());
            let stored = store
                .run(async move { rows::ids_of(&pool, &key, kind.as_str(), &provider, now).await })
                .await?
                .map_err(|e| e.to_string())?;
            ids.extend(stored.into_iter().filter(|id| !self.was_deleted(id, now)));
        }
        Ok(ids)
    }
}
