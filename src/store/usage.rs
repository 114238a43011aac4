//! The ledger's tables: batched record inserts with their rollups (one transaction), the
//! aggregated usage the API and budgets read, the raw records, retention.

use std::collections::HashMap;

use sqlx::Row;

use super::{on_pool, Pool};
use crate::ledger::UsageRecord;

/// Most rows per statement: 19 columns × 1024 stays under SQLite's 32,766 and Postgres's
/// 65,535 bound parameters.
const ROWS_PER_STATEMENT: usize = 1024;

/// `items` in statements of 1024 rows, the rest in powers of two (512, 256, ... 1): so a
/// table is written with at most 11 distinct statements, each prepared once and then
/// found in the connection's statement cache. A statement per remainder size made every
/// batch parse a new one of up to 19,000 placeholders: 23,000 instructions per record,
/// a tenth of the whole process's, measured.
fn statement_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= ROWS_PER_STATEMENT {
            ROWS_PER_STATEMENT
        } else {
            // The largest power of two not above what is left.
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

const RECORD_COLUMNS: &str = "time_ms, request_id, key_name, team, model, provider, target_model, status, error_code, attempts, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost_usd, duration_ms, ttfb_ms, stream";
const RECORD_WIDTH: usize = 19;
const ROLLUP_COLUMNS: &str = "bucket, key_name, team, model, provider, status, requests, errors, prompt_tokens, completion_tokens, cached_tokens, cost_usd";
const ROLLUP_WIDTH: usize = 12;
const TOTAL_COLUMNS: &str =
    "key_name, team, model, requests, prompt_tokens, completion_tokens, cost_usd";
const TOTAL_WIDTH: usize = 7;

/// A count from outside as a database integer.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `(?, ?, ...), (...)` for SQLite, `($1, $2, ...), (...)` for Postgres: `rows` groups of
/// `width` placeholders. SQLite gets anonymous ones: sqlx looks every named parameter up
/// by name, which made a 19,000-parameter insert cost tens of microseconds per row.
fn placeholders(pool: &Pool, rows: usize, width: usize) -> String {
    let numbered = matches!(pool, Pool::Postgres(_));
    let mut s = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..width {
            if c > 0 {
                s.push(',');
            }
            if numbered {
                s.push('$');
                s.push_str(&(r * width + c + 1).to_string());
            } else {
                s.push('?');
            }
        }
        s.push(')');
    }
    s
}

#[derive(Default, Clone, Copy)]
struct Sums {
    requests: i64,
    errors: i64,
    prompt: i64,
    completion: i64,
    cached: i64,
    cost: f64,
}

impl Sums {
    fn add(&mut self, r: &UsageRecord) {
        self.requests += 1;
        self.errors += i64::from(r.status >= 400);
        self.prompt = self.prompt.saturating_add(int(r.prompt_tokens));
        self.completion = self.completion.saturating_add(int(r.completion_tokens));
        self.cached = self.cached.saturating_add(int(r.cached_tokens));
        self.cost += r.cost_usd;
    }
}

type RollupKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str, i64);

fn rollup<'a>(recs: &'a [UsageRecord], bucket_secs: i64) -> Vec<(RollupKey<'a>, Sums)> {
    let mut m: HashMap<RollupKey<'a>, Sums> = HashMap::new();
    for r in recs {
        let secs = r.time_ms.div_euclid(1000);
        let bucket = secs - secs.rem_euclid(bucket_secs);
        let k = (
            bucket,
            r.key.as_str(),
            r.team.as_str(),
            r.model.as_str(),
            r.provider.as_str(),
            i64::from(r.status),
        );
        m.entry(k).or_default().add(r);
    }
    m.into_iter().collect()
}

/// Writes `recs` and adds them to the hourly, daily and total rollups, all or nothing.
// Long on purpose: one transaction, its statements side by side (they differ in their binds).
pub async fn write_batch(pool: &Pool, recs: &[UsageRecord]) -> Result<(), sqlx::Error> {
    if recs.is_empty() {
        return Ok(());
    }
    let hourly = rollup(recs, 3600);
    let daily = rollup(recs, 86_400);
    let mut totals: HashMap<(&str, &str, &str), Sums> = HashMap::new();
    for r in recs.iter().filter(|r| r.is_spend()) {
        totals
            .entry((r.key.as_str(), r.team.as_str(), r.model.as_str()))
            .or_default()
            .add(r);
    }
    let totals: Vec<_> = totals.into_iter().collect();
    on_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        for chunk in statement_chunks(recs) {
            let sql = format!(
                "INSERT INTO usage_records ({RECORD_COLUMNS}) VALUES {}",
                placeholders(pool, chunk.len(), RECORD_WIDTH)
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.time_ms)
                    .bind(r.request_id.as_str())
                    .bind(r.key.as_str())
                    .bind(r.team.as_str())
                    .bind(r.model.as_str())
                    .bind(r.provider.as_str())
                    .bind(r.target_model.as_str())
                    .bind(i64::from(r.status))
                    .bind(r.error_code.as_deref())
                    .bind(i64::from(r.attempts))
                    .bind(int(r.prompt_tokens))
                    .bind(int(r.completion_tokens))
                    .bind(int(r.cached_tokens))
                    .bind(int(r.cache_write_tokens))
                    .bind(int(r.reasoning_tokens))
                    .bind(r.cost_usd)
                    .bind(r.duration_ms)
                    .bind(r.ttfb_ms)
                    .bind(r.stream);
            }
            q.execute(&mut *tx).await?;
        }
        for (table, rows) in [("usage_hourly", &hourly), ("usage_daily", &daily)] {
            for chunk in statement_chunks(rows) {
                let sql = format!(
                    "INSERT INTO {table} ({ROLLUP_COLUMNS}) VALUES {} ON CONFLICT (bucket, key_name, team, model, provider, status) DO UPDATE SET requests = {table}.requests + excluded.requests, errors = {table}.errors + excluded.errors, prompt_tokens = {table}.prompt_tokens + excluded.prompt_tokens, completion_tokens = {table}.completion_tokens + excluded.completion_tokens, cached_tokens = {table}.cached_tokens + excluded.cached_tokens, cost_usd = {table}.cost_usd + excluded.cost_usd",
                    placeholders(pool, chunk.len(), ROLLUP_WIDTH)
                );
                let mut q = sqlx::query(&sql);
                for ((bucket, key, team, model, provider, status), s) in chunk {
                    q = q
                        .bind(*bucket)
                        .bind(*key)
                        .bind(*team)
                        .bind(*model)
                        .bind(*provider)
                        .bind(*status)
                        .bind(s.requests)
                        .bind(s.errors)
                        .bind(s.prompt)
                        .bind(s.completion)
                        .bind(s.cached)
                        .bind(s.cost);
                }
                q.execute(&mut *tx).await?;
            }
        }
        for chunk in statement_chunks(&totals) {
            let sql = format!(
                "INSERT INTO usage_totals ({TOTAL_COLUMNS}) VALUES {} ON CONFLICT (key_name, team, model) DO UPDATE SET requests = usage_totals.requests + excluded.requests, prompt_tokens = usage_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = usage_totals.completion_tokens + excluded.completion_tokens, cost_usd = usage_totals.cost_usd + excluded.cost_usd",
                placeholders(pool, chunk.len(), TOTAL_WIDTH)
            );
            let mut q = sqlx::query(&sql);
            for ((key, team, model), s) in chunk {
                q = q
                    .bind(*key)
                    .bind(*team)
                    .bind(*model)
                    .bind(s.requests)
                    .bind(s.prompt)
                    .bind(s.completion)
                    .bind(s.cost);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await
    })
}

/// Deletes records older than `records_before` and rollup rows older than
/// `rollups_before` (unix seconds).
pub async fn purge(
    pool: &Pool,
    records_before: i64,
    rollups_before: i64,
) -> Result<(), sqlx::Error> {
    on_pool!(pool, |p| {
        sqlx::query("DELETE FROM usage_records WHERE time_ms < $1")
            .bind(records_before.saturating_mul(1000))
            .execute(p)
            .await?;
        sqlx::query("DELETE FROM usage_hourly WHERE bucket < $1")
            .bind(rollups_before)
            .execute(p)
            .await?;
        sqlx::query("DELETE FROM usage_daily WHERE bucket < $1")
            .bind(rollups_before)
            .execute(p)
            .await?;
        Ok::<(), sqlx::Error>(())
    })?;
    // Keeps the query planner's statistics current as the tables grow.
    if let Pool::Sqlite(p) = pool {
        sqlx::query("PRAGMA optimize").execute(p).await?;
    }
    Ok(())
}

/// A store error for logs (sqlx's messages carry no credentials).
pub fn describe(e: &sqlx::Error) -> String {
    e.to_string()
}

// ---------------------------------------------------------------- reading

/// A column usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Key,
    Team,
    Model,
    Provider,
    Status,
    Day,
    Hour,
}

impl Dim {
    pub fn parse(s: &str) -> Option<Dim> {
        Some(match s.trim() {
            "key" => Dim::Key,
            "team" => Dim::Team,
            "model" => Dim::Model,
            "provider" => Dim::Provider,
            "status" => Dim::Status,
            "day" => Dim::Day,
            "hour" => Dim::Hour,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Dim::Key => "key",
            Dim::Team => "team",
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::Status => "status",
            Dim::Day => "day",
            Dim::Hour => "hour",
        }
    }

    fn column(self, hourly: bool) -> &'static str {
        match self {
            Dim::Key => "key_name",
            Dim::Team => "team",
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::Status => "status",
            Dim::Day if hourly => "(bucket / 86400) * 86400",
            Dim::Day | Dim::Hour => "bucket",
        }
    }
}

/// One value of a grouped column.
#[derive(Debug, Clone, PartialEq)]
pub enum DimValue {
    Text(String),
    Int(i64),
}

/// What aggregated usage is asked for: `[from, to)` in unix seconds.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub from: i64,
    pub to: i64,
    pub key: Option<String>,
    pub team: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub group_by: Vec<Dim>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_usd: f64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.cost_usd += o.cost_usd;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub dims: Vec<DimValue>,
    pub totals: Totals,
}

/// Aggregated usage from the rollups (ranges round out to the hour). The whole UTC days
/// of the range are read from the daily table and only its partial first and last days
/// from the hourly one, so a month costs about 30 daily rows per group, not 720 hourly
/// ones; grouped by hour, everything comes from the hourly table.
pub async fn aggregate(pool: &Pool, q: &UsageQuery) -> Result<Vec<UsageRow>, sqlx::Error> {
    const DAY: i64 = 86_400;
    let from = q.from - q.from.rem_euclid(3600);
    let to = q.to + (3600 - q.to.rem_euclid(3600)) % 3600;
    if q.group_by.contains(&Dim::Hour) {
        return aggregate_table(pool, q, true, from, to).await;
    }
    let first_day = from + (DAY - from.rem_euclid(DAY)) % DAY;
    let last_day = to - to.rem_euclid(DAY);
    if first_day >= last_day {
        return aggregate_table(pool, q, true, from, to).await;
    }
    let mut parts = aggregate_table(pool, q, false, first_day, last_day).await?;
    for (a, b) in [(from, first_day), (last_day, to)] {
        if a < b {
            parts.extend(aggregate_table(pool, q, true, a, b).await?);
        }
    }
    Ok(merge_rows(parts))
}

/// Rows with the same group values summed, in group order.
fn merge_rows(rows: Vec<UsageRow>) -> Vec<UsageRow> {
    let mut merged: Vec<UsageRow> = Vec::with_capacity(rows.len());
    let mut index: HashMap<Vec<DimKey>, usize> = HashMap::new();
    for r in rows {
        let key: Vec<DimKey> = r.dims.iter().map(DimKey::from).collect();
        match index.get(&key) {
            Some(&i) => merged[i].totals.add(&r.totals),
            None => {
                index.insert(key, merged.len());
                merged.push(r);
            }
        }
    }
    merged.sort_by(|a, b| {
        let ka: Vec<DimKey> = a.dims.iter().map(DimKey::from).collect();
        let kb: Vec<DimKey> = b.dims.iter().map(DimKey::from).collect();
        ka.cmp(&kb)
    });
    merged
}

/// A group value as a hashable, ordered key.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
enum DimKey {
    Int(i64),
    Text(String),
}

impl From<&DimValue> for DimKey {
    fn from(v: &DimValue) -> Self {
        match v {
            DimValue::Int(n) => DimKey::Int(*n),
            DimValue::Text(t) => DimKey::Text(t.clone()),
        }
    }
}

/// One rollup table's sums over `[from, to)` (unix seconds, bucket-aligned).
async fn aggregate_table(
    pool: &Pool,
    q: &UsageQuery,
    hourly: bool,
    from: i64,
    to: i64,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    let table = if hourly {
        "usage_hourly"
    } else {
        "usage_daily"
    };
    let dims: Vec<&str> = q.group_by.iter().map(|d| d.column(hourly)).collect();
    let mut sql = String::from("SELECT ");
    for d in &dims {
        sql.push_str(d);
        sql.push_str(", ");
    }
    sql.push_str("CAST(COALESCE(SUM(requests), 0) AS BIGINT), CAST(COALESCE(SUM(errors), 0) AS BIGINT), CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT), COALESCE(SUM(cost_usd), 0.0)");
    sql.push_str(&format!(" FROM {table} WHERE bucket >= $1 AND bucket < $2"));
    let filters = [
        ("key_name", &q.key),
        ("team", &q.team),
        ("model", &q.model),
        ("provider", &q.provider),
    ];
    let mut n = 2;
    for (col, v) in &filters {
        if v.is_some() {
            n += 1;
            sql.push_str(&format!(" AND {col} = ${n}"));
        }
    }
    if !dims.is_empty() {
        let list = dims.join(", ");
        sql.push_str(&format!(" GROUP BY {list} ORDER BY {list}"));
    }
    let group_by = q.group_by.clone();
    on_pool!(pool, |p| {
        let mut query = sqlx::query(&sql).bind(from).bind(to);
        for (_, v) in &filters {
            if let Some(v) = v {
                query = query.bind(v.as_str());
            }
        }
        let rows = query.fetch_all(p).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(group_by.len());
            for (i, d) in group_by.iter().enumerate() {
                values.push(match d {
                    Dim::Status | Dim::Day | Dim::Hour => DimValue::Int(row.try_get(i)?),
                    _ => DimValue::Text(row.try_get(i)?),
                });
            }
            let b = group_by.len();
            let totals = Totals {
                requests: row.try_get(b)?,
                errors: row.try_get(b + 1)?,
                prompt_tokens: row.try_get(b + 2)?,
                completion_tokens: row.try_get(b + 3)?,
                cached_tokens: row.try_get(b + 4)?,
                cost_usd: row.try_get(b + 5)?,
            };
            // A query without groups over nothing still answers one row of zeros.
            if b == 0 && totals.requests == 0 {
                continue;
            }
            out.push(UsageRow {
                dims: values,
                totals,
            });
        }
        Ok(out)
    })
}

/// Which raw records are asked for (times in unix milliseconds).
#[derive(Debug, Clone, Default)]
pub struct RecordsQuery {
    pub limit: usize,
    pub key: Option<String>,
    pub model: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub request_id: Option<String>,
}

/// Raw records, newest first.
pub async fn records(pool: &Pool, q: &RecordsQuery) -> Result<Vec<UsageRecord>, sqlx::Error> {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM usage_records WHERE 1 = 1");
    let mut n = 0;
    let mut cond = |sql: &mut String, c: &str| {
        n += 1;
        sql.push_str(&format!(" AND {c} ${n}"));
    };
    if q.key.is_some() {
        cond(&mut sql, "key_name =");
    }
    if q.model.is_some() {
        cond(&mut sql, "model =");
    }
    if q.since_ms.is_some() {
        cond(&mut sql, "time_ms >=");
    }
    if q.until_ms.is_some() {
        cond(&mut sql, "time_ms <");
    }
    if q.request_id.is_some() {
        cond(&mut sql, "request_id =");
    }
    sql.push_str(&format!(" ORDER BY time_ms DESC LIMIT {}", q.limit.max(1)));
    on_pool!(pool, |p| {
        let mut query = sqlx::query(&sql);
        if let Some(v) = &q.key {
            query = query.bind(v.as_str());
        }
        if let Some(v) = &q.model {
            query = query.bind(v.as_str());
        }
        if let Some(v) = q.since_ms {
            query = query.bind(v);
        }
        if let Some(v) = q.until_ms {
            query = query.bind(v);
        }
        if let Some(v) = &q.request_id {
            query = query.bind(v.as_str());
        }
        let rows = query.fetch_all(p).await?;
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        rows.iter()
            .map(|row| {
                Ok(UsageRecord {
                    time_ms: row.try_get(0)?,
                    request_id: row.try_get(1)?,
                    key: row.try_get(2)?,
                    team: row.try_get(3)?,
                    model: row.try_get(4)?,
                    provider: row.try_get(5)?,
                    target_model: row.try_get(6)?,
                    status: u16::try_from(row.try_get::<i64, _>(7)?).unwrap_or(0),
                    error_code: row.try_get(8)?,
                    attempts: u32::try_from(row.try_get::<i64, _>(9)?).unwrap_or(0),
                    prompt_tokens: count(row.try_get(10)?),
                    completion_tokens: count(row.try_get(11)?),
                    cached_tokens: count(row.try_get(12)?),
                    cache_write_tokens: count(row.try_get(13)?),
                    reasoning_tokens: count(row.try_get(14)?),
                    cost_usd: row.try_get(15)?,
                    duration_ms: row.try_get(16)?,
                    ttfb_ms: row.try_get(17)?,
                    stream: row.try_get(18)?,
                })
            })
            .collect()
    })
}

/// Spend of one key × team × model: per UTC hour since some time, or in total.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow<'a> {
    pub key: &'a str,
    pub team: &'a str,
    pub model: &'a str,
    /// The hour's start (unix seconds); `None` for the all-time total.
    pub hour: Option<i64>,
    pub requests: i64,
    pub tokens: i64,
    pub cost_usd: f64,
}

/// What budgets have spent: successful requests per hour since `since` (unix seconds),
/// and the all-time totals, each row handed to `each` as it streams in (a month of a
/// busy ledger is hundreds of thousands of rows: collected, they cost seconds of
/// allocation and slowed the next query, BENCHMARKS.md).
pub async fn spend(
    pool: &Pool,
    since: i64,
    mut each: impl FnMut(&SpendRow<'_>) + Send,
) -> Result<(), sqlx::Error> {
    use futures_util::TryStreamExt;
    on_pool!(pool, |p| {
        let mut hourly = sqlx::query(
            "SELECT key_name, team, model, bucket, CAST(SUM(requests) AS BIGINT), CAST(SUM(prompt_tokens + completion_tokens) AS BIGINT), SUM(cost_usd) FROM usage_hourly WHERE bucket >= $1 AND status < 400 GROUP BY key_name, team, model, bucket",
        )
        .bind(since)
        .fetch(p);
        while let Some(row) = hourly.try_next().await? {
            each(&SpendRow {
                key: row.try_get(0)?,
                team: row.try_get(1)?,
                model: row.try_get(2)?,
                hour: Some(row.try_get(3)?),
                requests: row.try_get(4)?,
                tokens: row.try_get(5)?,
                cost_usd: row.try_get(6)?,
            });
        }
        drop(hourly);
        let mut totals = sqlx::query(
            "SELECT key_name, team, model, requests, prompt_tokens + completion_tokens, cost_usd FROM usage_totals",
        )
        .fetch(p);
        while let Some(row) = totals.try_next().await? {
            each(&SpendRow {
                key: row.try_get(0)?,
                team: row.try_get(1)?,
                model: row.try_get(2)?,
                hour: None,
                requests: row.try_get(3)?,
                tokens: row.try_get(4)?,
                cost_usd: row.try_get(5)?,
            });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreUrl};

    #[test]
    fn statements_come_in_few_sizes_and_cover_every_row() {
        let mut sizes = std::collections::BTreeSet::new();
        for n in [0, 1, 2, 3, 1000, 1023, 1024, 1025, 4096, 5000, 7777] {
            let items: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = statement_chunks(&items).collect();
            let joined: Vec<usize> = chunks.concat();
            assert_eq!(joined, items, "{n}: every row once, in order");
            assert!(chunks.len() <= n / ROWS_PER_STATEMENT + 10, "{n}");
            sizes.extend(chunks.iter().map(|c| c.len()));
        }
        assert!(sizes.iter().all(|s| s.is_power_of_two()), "{sizes:?}");
        assert!(sizes.len() <= 11, "{sizes:?}");
    }

    fn rec(time_ms: i64, key: &str, model: &str, status: u16, cost: f64) -> UsageRecord {
        UsageRecord {
            time_ms,
            request_id: format!("r{time_ms}"),
            key: key.into(),
            team: "t".into(),
            model: model.into(),
            provider: "p".into(),
            target_model: "up".into(),
            status,
            error_code: (status >= 400).then(|| "upstream_error".to_string()),
            attempts: 1,
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 2,
            cache_write_tokens: 0,
            reasoning_tokens: 1,
            cost_usd: cost,
            duration_ms: 12.5,
            ttfb_ms: Some(3.0),
            stream: true,
        }
    }

    #[test]
    fn records_and_rollups_agree_in_memory() {
        let store = Store::open(&StoreUrl::Memory).unwrap();
        let pool = store.pool();
        let day = 20_000 * 86_400_i64;
        let recs = [
            rec(day * 1000 + 1000, "a", "m1", 200, 0.5),
            rec(day * 1000 + 3_600_000 + 5, "a", "m1", 200, 0.25),
            rec(day * 1000 + 3_600_000 + 6, "a", "m2", 502, 0.0),
            rec((day + 86_400) * 1000, "b", "m1", 200, 1.0),
        ];
        store
            .block_on(write_batch(&pool, &recs[..2]))
            .unwrap()
            .unwrap();
        store
            .block_on(write_batch(&pool, &recs[2..]))
            .unwrap()
            .unwrap();
        let q = UsageQuery {
            from: day,
            to: day + 2 * 86_400,
            group_by: vec![Dim::Key, Dim::Day],
            ..UsageQuery::default()
        };
        let rows = store.block_on(aggregate(&pool, &q)).unwrap().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].dims,
            vec![DimValue::Text("a".into()), DimValue::Int(day)]
        );
        assert_eq!(rows[0].totals.requests, 3);
        assert_eq!(rows[0].totals.errors, 1);
        assert_eq!(rows[0].totals.prompt_tokens, 30);
        assert!((rows[0].totals.cost_usd - 0.75).abs() < 1e-12);
        // The same through the hourly table.
        let q = UsageQuery {
            from: day + 1,
            to: day + 2 * 86_400,
            group_by: vec![Dim::Key, Dim::Day],
            ..UsageQuery::default()
        };
        let hourly = store.block_on(aggregate(&pool, &q)).unwrap().unwrap();
        assert_eq!(hourly, rows);
        let q = UsageQuery {
            from: day,
            to: day + 86_400,
            key: Some("a".into()),
            group_by: vec![Dim::Hour, Dim::Status],
            ..UsageQuery::default()
        };
        let rows = store.block_on(aggregate(&pool, &q)).unwrap().unwrap();
        assert_eq!(rows.len(), 3);
        let got = store
            .block_on(records(
                &pool,
                &RecordsQuery {
                    limit: 2,
                    key: Some("a".into()),
                    ..RecordsQuery::default()
                },
            ))
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], recs[2], "newest first, every field kept");
        let (mut total_a, mut models) = (0.0, Vec::new());
        let each = |s: &SpendRow<'_>| {
            if s.key == "a" && s.hour.is_none() {
                total_a += s.cost_usd;
            }
            models.push(s.model.to_string());
        };
        store.block_on(spend(&pool, day, each)).unwrap().unwrap();
        assert!((total_a - 0.75).abs() < 1e-12);
        assert!(!models.is_empty());
        assert!(
            models.iter().all(|m| m != "m2"),
            "failed requests are not spend"
        );
        store
            .block_on(purge(&pool, day + 86_400, 0))
            .unwrap()
            .unwrap();
        let left = store
            .block_on(records(
                &pool,
                &RecordsQuery {
                    limit: 10,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn ranges_split_into_whole_days_and_partial_hours_agree_with_records() {
        let store = Store::open(&StoreUrl::Memory).unwrap();
        let pool = store.pool();
        let day = 20_000 * 86_400_i64;
        let at = |secs: i64| rec(secs * 1000, "a", "m", 200, 1.0);
        // Before the range, in its first partial day, a whole day, its last partial day, after.
        let recs = [
            at(day + 600),
            at(day + 7200),
            at(day + 86_400 + 50),
            at(day + 2 * 86_400 + 3600),
            at(day + 2 * 86_400 + 4 * 3600),
        ];
        store.block_on(write_batch(&pool, &recs)).unwrap().unwrap();
        let q = UsageQuery {
            from: day + 3600,
            to: day + 2 * 86_400 + 2 * 3600,
            group_by: vec![Dim::Day],
            ..UsageQuery::default()
        };
        let rows = store.block_on(aggregate(&pool, &q)).unwrap().unwrap();
        let days: Vec<(DimValue, i64)> = rows
            .iter()
            .map(|r| (r.dims[0].clone(), r.totals.requests))
            .collect();
        assert_eq!(
            days,
            vec![
                (DimValue::Int(day), 1),
                (DimValue::Int(day + 86_400), 1),
                (DimValue::Int(day + 2 * 86_400), 1)
            ]
        );
        let all = UsageQuery {
            group_by: vec![],
            ..q
        };
        let rows = store.block_on(aggregate(&pool, &all)).unwrap().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].totals.requests, 3);
    }

    #[test]
    fn sqlite_files_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("mg.db"));
        {
            let store = Store::open(&url).unwrap();
            let pool = store.pool();
            store
                .block_on(write_batch(&pool, &[rec(5_000, "k", "m", 200, 2.0)]))
                .unwrap()
                .unwrap();
        }
        let store = Store::open(&url).unwrap();
        let got = store
            .block_on(records(
                &store.pool(),
                &RecordsQuery {
                    limit: 5,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
    }
}
