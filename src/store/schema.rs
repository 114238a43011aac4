//! The schema, created and migrated on start: numbered steps in SQL that SQLite and
//! Postgres both accept, applied in order, each once (the version is kept in the store).

use super::{on_pool, Pool};

/// One step per schema version; a released step is never edited, only followed.
const STEPS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS usage_records (
        time_ms BIGINT NOT NULL,
        request_id TEXT NOT NULL,
        key_name TEXT NOT NULL,
        team TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        target_model TEXT NOT NULL,
        status BIGINT NOT NULL,
        error_code TEXT,
        attempts BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cache_write_tokens BIGINT NOT NULL,
        reasoning_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL,
        ttfb_ms DOUBLE PRECISION,
        stream BOOLEAN NOT NULL
    )",
        "CREATE INDEX IF NOT EXISTS usage_records_time ON usage_records (time_ms)",
        "CREATE INDEX IF NOT EXISTS usage_records_key_time ON usage_records (key_name, time_ms)",
        "CREATE INDEX IF NOT EXISTS usage_records_request ON usage_records (request_id)",
        // The rollup tables themselves are made by `rollup_table` before these.
        "CREATE INDEX IF NOT EXISTS usage_hourly_key ON usage_hourly (key_name, bucket)",
        "CREATE INDEX IF NOT EXISTS usage_daily_key ON usage_daily (key_name, bucket)",
        "CREATE INDEX IF NOT EXISTS usage_hourly_team ON usage_hourly (team, bucket)",
        // Spend since the beginning, for `period: total` budgets (kept beyond rollup retention).
        "CREATE TABLE IF NOT EXISTS usage_totals (
        key_name TEXT NOT NULL,
        team TEXT NOT NULL,
        model TEXT NOT NULL,
        requests BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (key_name, team, model)
    )",
    ],
    &[
        // API-managed keys: the secret only as its SHA-256 (hex); `spec` the key's fields as
        // JSON; a revoked key keeps its row (deleted_ms set) so replicas polling see it.
        "CREATE TABLE IF NOT EXISTS api_keys (
        name TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        key_hint TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        old_digest TEXT,
        old_until_ms BIGINT,
        deleted_ms BIGINT
    )",
        "CREATE INDEX IF NOT EXISTS api_keys_updated ON api_keys (updated_ms)",
        "CREATE TABLE IF NOT EXISTS key_activity (
        key_name TEXT PRIMARY KEY,
        last_used_ms BIGINT NOT NULL
    )",
        "CREATE TABLE IF NOT EXISTS audit_log (
        time_us BIGINT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        client_ip TEXT,
        actor TEXT NOT NULL,
        result TEXT NOT NULL,
        detail TEXT
    )",
        "CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time_us)",
    ],
    &[
        // Where each file, batch, stored response and Gemini operation lives: the
        // provider, its credential's fingerprint (never the credential) and the key that
        // made it, until `expires_ms`.
        "CREATE TABLE IF NOT EXISTS provider_objects (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        provider TEXT NOT NULL,
        credential TEXT NOT NULL,
        key_name TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    )",
        "CREATE INDEX IF NOT EXISTS provider_objects_key ON provider_objects (key_name, kind)",
        "CREATE INDEX IF NOT EXISTS provider_objects_expires ON provider_objects (expires_ms)",
    ],
];

/// The rollup tables of step 1, created before its statements: one row per bucket ×
/// key × team × model × provider × status, `bucket` being the UTC start of the hour
/// (hourly) or day (daily) in unix seconds.
const ROLLUP_TABLES: &[&str] = &["usage_hourly", "usage_daily"];

/// `clustered`: SQLite stores the rows in primary-key order (`WITHOUT ROWID`), so a
/// range of buckets is read in one pass instead of one lookup per row.
fn rollup_table(name: &str, clustered: bool) -> String {
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {name} (
        bucket BIGINT NOT NULL,
        key_name TEXT NOT NULL,
        team TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        status BIGINT NOT NULL,
        requests BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (bucket, key_name, team, model, provider, status)
    )"
    );
    if clustered {
        sql.push_str(" WITHOUT ROWID");
    }
    sql
}

pub async fn migrate(pool: Pool) -> Result<(), String> {
    let fail = |e: sqlx::Error| format!("cannot create the store's schema: {e}");
    let sqlite = matches!(pool, Pool::Sqlite(_));
    on_pool!(&pool, |p| {
        use sqlx::Connection;
        // One connection throughout: on Postgres it holds the advisory lock that keeps
        // replicas starting at once from migrating the same schema twice (released when
        // the connection closes, should anything here fail).
        let mut conn = p.acquire().await.map_err(fail)?;
        if !sqlite {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(fail)?;
        }
        let result: Result<(), String> = async {
        sqlx::query("CREATE TABLE IF NOT EXISTS modelgate_schema (version BIGINT NOT NULL)")
            .execute(&mut *conn)
            .await
            .map_err(fail)?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM modelgate_schema")
            .fetch_one(&mut *conn)
            .await
            .map_err(fail)?;
        let current = current.unwrap_or(0);
        let known = STEPS.len() as i64;
        if current > known {
            return Err(format!(
                "the store's schema is version {current}, newer than this modelgate knows ({known}); run the newer modelgate or another store"
            ));
        }
        for (i, step) in STEPS.iter().enumerate().skip(current as usize) {
            let mut tx = conn.begin().await.map_err(fail)?;
            if i == 0 {
                for t in ROLLUP_TABLES {
                    let sql = rollup_table(t, sqlite);
                    sqlx::query(&sql).execute(&mut *tx).await.map_err(fail)?;
                }
            }
            for stmt in *step {
                sqlx::query(stmt).execute(&mut *tx).await.map_err(fail)?;
            }
            sqlx::query("INSERT INTO modelgate_schema (version) VALUES ($1)")
                .bind(i as i64 + 1)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
        }
        Ok(())
        }
        .await;
        if !sqlite {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
        }
        result
    })
}

/// The advisory lock id of migrations ("modelgat" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d6f_6465_6c67_6174;

/// A write that is rolled back: proves the store accepts writes (`-t`, start).
pub async fn check_writable(pool: Pool) -> Result<(), String> {
    let fail = |e: sqlx::Error| format!("the store is not writable: {e}");
    on_pool!(&pool, |p| {
        let mut tx = p.begin().await.map_err(fail)?;
        sqlx::query("INSERT INTO modelgate_schema (version) VALUES (0)")
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.rollback().await.map_err(fail)?;
        Ok(())
    })
}
