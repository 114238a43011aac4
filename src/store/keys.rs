//! The tables behind API-managed keys and the audit log: `api_keys` (one row per name; a
//! revoked key keeps its row, marked deleted, so every replica's poll sees the revocation),
//! `key_activity` (when each key was last used, written in batches, never per request) and
//! `audit_log`. Low volume: `$N` placeholders, which both dialects accept.

use super::{on_pool, Pool};

/// One `api_keys` row. `spec` is the key's fields as JSON (the body the API accepted).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub digest: String,
    pub hint: String,
    pub spec: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The secret replaced by a rotation, valid until `old_until_ms`.
    pub old_digest: Option<String>,
    pub old_until_ms: Option<i64>,
    pub deleted_ms: Option<i64>,
}

type Row = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

const COLUMNS: &str =
    "name, digest, key_hint, spec, created_ms, updated_ms, old_digest, old_until_ms, deleted_ms";

fn from_row(r: Row) -> StoredKey {
    StoredKey {
        name: r.0,
        digest: r.1,
        hint: r.2,
        spec: r.3,
        created_ms: r.4,
        updated_ms: r.5,
        old_digest: r.6,
        old_until_ms: r.7,
        deleted_ms: r.8,
    }
}

/// Inserts a new key; a deleted row of the same name is replaced. `false`: the name is
/// taken by a live key.
pub async fn create(pool: &Pool, k: &StoredKey) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, NULL)
         ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, key_hint = excluded.key_hint,
           spec = excluded.spec, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms,
           old_digest = NULL, old_until_ms = NULL, deleted_ms = NULL
         WHERE api_keys.deleted_ms IS NOT NULL"
    );
    on_pool!(pool, |p| {
        let done = sqlx::query(&sql)
            .bind(&k.name)
            .bind(&k.digest)
            .bind(&k.hint)
            .bind(&k.spec)
            .bind(k.created_ms)
            .bind(k.updated_ms)
            .execute(p)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// One live or deleted key by name.
pub async fn get(pool: &Pool, name: &str) -> Result<Option<StoredKey>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE name = $1");
    on_pool!(pool, |p| {
        let row: Option<Row> = sqlx::query_as(&sql).bind(name).fetch_optional(p).await?;
        Ok(row.map(from_row))
    })
}

/// Writes `k` over the live row of its name if that row is still at `seen_updated_ms`
/// (optimistic: two concurrent changes cannot lose one another). `false`: it changed or
/// is gone; read it again.
pub async fn replace(
    pool: &Pool,
    k: &StoredKey,
    seen_updated_ms: i64,
) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE api_keys SET digest = $1, key_hint = $2, spec = $3, updated_ms = $4,
               old_digest = $5, old_until_ms = $6, deleted_ms = $7
               WHERE name = $8 AND updated_ms = $9 AND deleted_ms IS NULL";
    on_pool!(pool, |p| {
        let done = sqlx::query(sql)
            .bind(&k.digest)
            .bind(&k.hint)
            .bind(&k.spec)
            .bind(k.updated_ms)
            .bind(&k.old_digest)
            .bind(k.old_until_ms)
            .bind(k.deleted_ms)
            .bind(&k.name)
            .bind(seen_updated_ms)
            .execute(p)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Every row changed at or after `since_ms` (deleted ones included), oldest change first.
pub async fn changed_since(pool: &Pool, since_ms: i64) -> Result<Vec<StoredKey>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE updated_ms >= $1 ORDER BY updated_ms");
    on_pool!(pool, |p| {
        let rows: Vec<Row> = sqlx::query_as(&sql).bind(since_ms).fetch_all(p).await?;
        Ok(rows.into_iter().map(from_row).collect())
    })
}

/// When each key was last used, as persisted.
pub async fn activity(pool: &Pool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    on_pool!(pool, |p| {
        sqlx::query_as("SELECT key_name, last_used_ms FROM key_activity")
            .fetch_all(p)
            .await
    })
}

/// Records newer last-use times (never moves one back: replicas write the same rows).
pub async fn write_activity(pool: &Pool, rows: &[(String, i64)]) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO key_activity (key_name, last_used_ms) VALUES ($1, $2)
               ON CONFLICT (key_name) DO UPDATE SET last_used_ms = excluded.last_used_ms
               WHERE key_activity.last_used_ms < excluded.last_used_ms";
    on_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        for (name, ms) in rows {
            sqlx::query(sql)
                .bind(name)
                .bind(*ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    })
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Microseconds since the epoch (orders entries of the same millisecond).
    #[serde(skip)]
    pub time_us: i64,
    pub action: String,
    pub target: String,
    pub client_ip: Option<String>,
    /// Who acted: `management` (the API's secret), `signal` (SIGHUP), `cli`.
    pub actor: String,
    /// `ok`, or the error code.
    pub result: String,
    /// What changed or why it failed, never a secret.
    pub detail: Option<String>,
}

pub async fn audit(pool: &Pool, e: &AuditEntry) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO audit_log (time_us, action, target, client_ip, actor, result, detail)
               VALUES ($1, $2, $3, $4, $5, $6, $7)";
    on_pool!(pool, |p| {
        sqlx::query(sql)
            .bind(e.time_us)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.client_ip)
            .bind(&e.actor)
            .bind(&e.result)
            .bind(&e.detail)
            .execute(p)
            .await
            .map(|_| ())
    })
}

type AuditRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
);

/// The newest `limit` entries, newest first; `action` filters by action when given.
pub async fn audit_log(
    pool: &Pool,
    limit: i64,
    action: Option<&str>,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let base = "SELECT time_us, action, target, client_ip, actor, result, detail FROM audit_log";
    on_pool!(pool, |p| {
        let rows: Vec<AuditRow> = match action {
            Some(a) => {
                let sql = format!("{base} WHERE action = $1 ORDER BY time_us DESC LIMIT $2");
                sqlx::query_as(&sql)
                    .bind(a)
                    .bind(limit)
                    .fetch_all(p)
                    .await?
            }
            None => {
                let sql = format!("{base} ORDER BY time_us DESC LIMIT $1");
                sqlx::query_as(&sql).bind(limit).fetch_all(p).await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                time_us: r.0,
                action: r.1,
                target: r.2,
                client_ip: r.3,
                actor: r.4,
                result: r.5,
                detail: r.6,
            })
            .collect())
    })
}
