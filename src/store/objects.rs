//! The `provider_objects` table: which provider, credential and key each provider-side
//! object (file, batch, stored response, operation) belongs to. Written off the request
//! path, read when a client names an id this process has not seen.

use super::{on_pool, Pool};

/// One row. `credential` is a fingerprint of the provider credential, not the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub id: String,
    pub kind: String,
    pub provider: String,
    pub credential: String,
    pub key_name: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

type Row = (String, String, String, String, String, i64, i64);

const COLUMNS: &str = "id, kind, provider, credential, key_name, created_ms, expires_ms";

fn from_row(r: Row) -> StoredObject {
    StoredObject {
        id: r.0,
        kind: r.1,
        provider: r.2,
        credential: r.3,
        key_name: r.4,
        created_ms: r.5,
        expires_ms: r.6,
    }
}

/// Inserts or refreshes rows (a batch seen again extends its output files' lifetime).
pub async fn upsert(pool: &Pool, rows: &[StoredObject]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO provider_objects ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET expires_ms = excluded.expires_ms"
    );
    on_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        for r in rows {
            sqlx::query(&sql)
                .bind(&r.id)
                .bind(&r.kind)
                .bind(&r.provider)
                .bind(&r.credential)
                .bind(&r.key_name)
                .bind(r.created_ms)
                .bind(r.expires_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    })
}

/// The row for `id`, unless it expired before `now_ms`.
pub async fn get(pool: &Pool, id: &str, now_ms: i64) -> Result<Option<StoredObject>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM provider_objects WHERE id = $1 AND expires_ms > $2");
    on_pool!(pool, |p| {
        let row: Option<Row> = sqlx::query_as(&sql)
            .bind(id)
            .bind(now_ms)
            .fetch_optional(p)
            .await?;
        Ok(row.map(from_row))
    })
}

/// The ids of `kind` that `key_name` made on `provider` and that are still remembered.
pub async fn ids_of(
    pool: &Pool,
    key_name: &str,
    kind: &str,
    provider: &str,
    now_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = "SELECT id FROM provider_objects
               WHERE key_name = $1 AND kind = $2 AND provider = $3 AND expires_ms > $4";
    on_pool!(pool, |p| {
        sqlx::query_scalar(sql)
            .bind(key_name)
            .bind(kind)
            .bind(provider)
            .bind(now_ms)
            .fetch_all(p)
            .await
    })
}

/// Forgets `id` (the client deleted it at the provider).
pub async fn delete(pool: &Pool, id: &str) -> Result<(), sqlx::Error> {
    on_pool!(pool, |p| {
        sqlx::query("DELETE FROM provider_objects WHERE id = $1")
            .bind(id)
            .execute(p)
            .await?;
        Ok(())
    })
}

/// Drops the rows that expired before `now_ms`.
pub async fn purge(pool: &Pool, now_ms: i64) -> Result<u64, sqlx::Error> {
    on_pool!(pool, |p| {
        let done = sqlx::query("DELETE FROM provider_objects WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(p)
            .await?;
        Ok(done.rows_affected())
    })
}
