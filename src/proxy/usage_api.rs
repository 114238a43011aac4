//! The ledger's readers: `GET /v0/management/usage` (aggregated, JSON or CSV) and
//! `/usage/records` for the operator; `GET /v1/usage` and the one-api billing endpoints
//! for a key itself. Each first flushes what the ledger has queued, so an answer includes
//! every request that had ended when it was asked.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::civil::Date;
use jiff::Timestamp;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Map, Value};

use super::ctx::RequestCtx;
use super::local;
use crate::auth::ClientKey;
use crate::errors::{ErrorCode, GatewayError};
use crate::ledger::UsageRecord;
use crate::runtime::Runtime;
use crate::spend::budget::{bounds, rfc3339};
use crate::spend::{BudgetStatus, Period, Scope, Unit};
use crate::store::usage::{self, Dim, DimValue, RecordsQuery, Totals, UsageQuery, UsageRow};
use crate::store::Store;

/// How long an answer waits for queued records to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
const MAX_RECORDS: usize = 10_000;
/// How long an answer waits for requests in flight to record themselves.
const SETTLE_WAIT: Duration = Duration::from_millis(100);

fn bad(msg: impl Into<String>, param: &'static str) -> GatewayError {
    GatewayError::new(ErrorCode::InvalidRequest, msg).with_param(param)
}

fn unavailable(msg: impl std::fmt::Display) -> GatewayError {
    let mut e = GatewayError::new(
        ErrorCode::UpstreamUnavailable,
        format!("the usage store is unavailable: {msg}"),
    );
    e.retry_after = Some(5);
    e
}

fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

/// The query's parameters; a repeated one keeps its last value.
fn params(query: Option<&str>) -> Map<String, Value> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

fn param<'a>(p: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    p.get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// RFC 3339 or `YYYY-MM-DD` (UTC midnight) as unix seconds; `end_of_day`: a date
/// means the end of that day (for inclusive `to`).
fn parse_time(s: &str, end_of_day: bool) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t.as_second());
    }
    let d: Date = s.parse().ok()?;
    let d = if end_of_day { d.tomorrow().ok()? } else { d };
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second())
}

fn time_param(
    p: &Map<String, Value>,
    name: &'static str,
    end_of_day: bool,
) -> Result<Option<i64>, GatewayError> {
    match param(p, name) {
        None => Ok(None),
        Some(v) => parse_time(v, end_of_day).map(Some).ok_or_else(|| {
            bad(format!("{name}={v:?} is not a time: use RFC 3339 (2026-12-01T00:00:00Z) or a date (2026-12-01)"), name)
        }),
    }
}

/// `[from, to)` from the two named parameters, this UTC month by default;
/// `inclusive_end`: a date as the end includes that day.
fn range(
    p: &Map<String, Value>,
    (from_name, to_name): (&'static str, &'static str),
    inclusive_end: bool,
) -> Result<(i64, i64), GatewayError> {
    let now = now_secs();
    let month = bounds(Period::Month, now, &jiff::tz::TimeZone::UTC).unwrap_or((0, now));
    let from = time_param(p, from_name, false)?.unwrap_or(month.0);
    let to = time_param(p, to_name, inclusive_end)?.unwrap_or(month.1);
    if to <= from {
        return Err(bad(
            format!("'{to_name}' must be after '{from_name}'"),
            to_name,
        ));
    }
    Ok((from, to))
}

async fn store_of(runtime: &Runtime) -> Result<Arc<Store>, GatewayError> {
    let ledger = runtime
        .state
        .ledger
        .as_ref()
        .ok_or_else(|| unavailable("this gateway runs without one"))?;
    let store = ledger
        .store()
        .cloned()
        .ok_or_else(|| unavailable("it is still opening"))?;
    // A request whose answer the client already has may not have queued its record yet
    // (that happens just after the last byte): give requests in flight a moment, so a
    // client reading right after its own requests sees them.
    let deadline = std::time::Instant::now() + SETTLE_WAIT;
    while runtime.active_requests() > 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ledger.flush(FLUSH_WAIT).await;
    Ok(store)
}

async fn aggregate(store: &Arc<Store>, q: UsageQuery) -> Result<Vec<UsageRow>, GatewayError> {
    let pool = store.pool();
    store
        .run(async move { usage::aggregate(&pool, &q).await })
        .await
        .map_err(unavailable)?
        .map_err(|e| unavailable(usage::describe(&e)))
}

fn totals_json(t: &Totals) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("requests".into(), t.requests.into());
    m.insert("errors".into(), t.errors.into());
    m.insert("prompt_tokens".into(), t.prompt_tokens.into());
    m.insert("completion_tokens".into(), t.completion_tokens.into());
    m.insert("cached_tokens".into(), t.cached_tokens.into());
    m.insert("cost_usd".into(), round_usd(t.cost_usd).into());
    m
}

/// Costs to a millionth of a dollar: float sums are not shown with noise digits.
fn round_usd(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

fn dim_json(d: Dim, v: &DimValue) -> Value {
    match (d, v) {
        (Dim::Day, DimValue::Int(s)) => Value::String(rfc3339(*s)[..10].to_string()),
        (Dim::Hour, DimValue::Int(s)) => Value::String(rfc3339(*s)),
        (Dim::Team, DimValue::Text(t)) if t.is_empty() => Value::Null,
        (_, DimValue::Int(n)) => (*n).into(),
        (_, DimValue::Text(t)) => t.as_str().into(),
    }
}

/// A JSON answer, or the error in the OpenAI shape.
async fn reply(
    session: &mut Session,
    ctx: &mut RequestCtx,
    answer: Result<Value, GatewayError>,
) -> Result<bool> {
    match answer {
        Ok(v) => local::respond_json(session, ctx, 200, &v).await,
        Err(e) => local::respond_error(session, ctx, e).await,
    }
}

/// `GET /v0/management/usage`.
pub async fn management_usage(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    query: Option<&str>,
) -> Result<bool> {
    let answer = async {
        let p = params(query);
        let (from, to) = range(&p, ("from", "to"), true)?;
        let group_by = match param(&p, "group_by") {
            None => vec![Dim::Key, Dim::Model, Dim::Day],
            Some(list) => list
                .split(',')
                .filter(|d| !d.trim().is_empty())
                .map(|d| {
                    Dim::parse(d).ok_or_else(|| {
                        bad(format!("group_by: {d:?} is not one of key, team, model, provider, status, day, hour"), "group_by")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let csv = match param(&p, "format") {
            None | Some("json") => false,
            Some("csv") => true,
            Some(f) => return Err(bad(format!("format={f:?}: use json or csv"), "format")),
        };
        let text = |n: &str| param(&p, n).map(str::to_string);
        let q = UsageQuery {
            from,
            to,
            key: text("key"),
            team: text("team"),
            model: text("model"),
            provider: text("provider"),
            group_by: group_by.clone(),
        };
        let store = store_of(runtime).await?;
        let rows = aggregate(&store, q).await?;
        let mut totals = Totals::default();
        let json_rows: Vec<Map<String, Value>> = rows
            .iter()
            .map(|r| {
                totals.add(&r.totals);
                let mut m = Map::new();
                for (d, v) in group_by.iter().zip(&r.dims) {
                    m.insert(d.name().into(), dim_json(*d, v));
                }
                m.extend(totals_json(&r.totals));
                m
            })
            .collect();
        if csv {
            return Ok(Err(to_csv(&group_by, &json_rows)));
        }
        let names: Vec<&str> = group_by.iter().map(|d| d.name()).collect();
        Ok(Ok(json!({
            "from": rfc3339(from),
            "to": rfc3339(to),
            "group_by": names,
            "rows": json_rows,
            "totals": totals_json(&totals),
        })))
    }
    .await;
    match answer {
        Ok(Ok(v)) => local::respond_json(session, ctx, 200, &v).await,
        Ok(Err(csv)) => {
            let extra = [(
                "content-disposition",
                "attachment; filename=\"usage.csv\"".to_string(),
            )];
            local::respond(session, ctx, 200, "text/csv; charset=utf-8", csv, &extra).await
        }
        Err(e) => local::respond_error(session, ctx, e).await,
    }
}

/// The rows as CSV with a header of the JSON field names.
fn to_csv(group_by: &[Dim], rows: &[Map<String, Value>]) -> Bytes {
    let mut header: Vec<&str> = group_by.iter().map(|d| d.name()).collect();
    header.extend([
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cost_usd",
    ]);
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(&header);
    for r in rows {
        let fields: Vec<String> = header
            .iter()
            .map(|h| match r.get(*h) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            })
            .collect();
        let _ = w.write_record(&fields);
    }
    Bytes::from(w.into_inner().unwrap_or_default())
}

fn record_json(r: &UsageRecord) -> Value {
    let time = Timestamp::from_millisecond(r.time_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    json!({
        "time": time,
        "request_id": r.request_id,
        "key": r.key,
        "team": if r.team.is_empty() { Value::Null } else { r.team.clone().into() },
        "model": r.model,
        "provider": r.provider,
        "target_model": r.target_model,
        "status": r.status,
        "error_code": r.error_code,
        "attempts": r.attempts,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cached_tokens": r.cached_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "cost_usd": r.cost_usd,
        "duration_ms": (r.duration_ms * 10.0).round() / 10.0,
        "ttfb_ms": r.ttfb_ms.map(|t| (t * 10.0).round() / 10.0),
        "stream": r.stream,
    })
}

/// `GET /v0/management/usage/records`.
pub async fn management_records(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    query: Option<&str>,
) -> Result<bool> {
    let answer = async {
        let p = params(query);
        let limit = match param(&p, "limit") {
            None => 100,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_RECORDS).contains(&n) => n,
                _ => {
                    return Err(bad(
                        format!("limit={l:?}: a number from 1 to {MAX_RECORDS}"),
                        "limit",
                    ))
                }
            },
        };
        let text = |n: &str| param(&p, n).map(str::to_string);
        let ms = |s: Option<i64>| s.map(|v| v.saturating_mul(1000));
        let q = RecordsQuery {
            limit,
            key: text("key"),
            model: text("model"),
            since_ms: ms(time_param(&p, "since", false)?),
            until_ms: ms(time_param(&p, "until", true)?),
            request_id: text("request_id"),
        };
        let store = store_of(runtime).await?;
        let pool = store.pool();
        let recs = store
            .run(async move { usage::records(&pool, &q).await })
            .await
            .map_err(unavailable)?
            .map_err(|e| unavailable(usage::describe(&e)))?;
        let records: Vec<Value> = recs.iter().map(record_json).collect();
        Ok(json!({ "records": records }))
    }
    .await;
    reply(session, ctx, answer).await
}

pub(super) fn budget_json(s: &BudgetStatus) -> Value {
    json!({
        "scope": s.scope.kind(),
        "unit": s.budget.unit.as_str(),
        "period": s.budget.period.as_str(),
        "models": s.budget.models.as_ref().map(|m| m.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
        "limit": s.budget.limit,
        "used": round_usd(s.used),
        "reserved": round_usd(s.reserved),
        "remaining": round_usd(s.remaining),
        "resets_at": s.resets_at.map(rfc3339),
    })
}

/// Every budget of `key` and its team, as they stand now.
pub fn key_budgets(runtime: &Runtime, ctx: &RequestCtx, key: &ClientKey) -> Vec<BudgetStatus> {
    let now = now_secs();
    let book = &runtime.state.spend;
    let mut all = book.status(&Scope::Key(key.name.as_str().into()), &key.budgets, now);
    if let Some(team) = key.team.as_ref().and_then(|t| ctx.config.teams.get(t)) {
        all.extend(book.status(&Scope::Team(team.name.as_str().into()), &team.budgets, now));
    }
    all
}

fn brief(t: &Totals) -> Value {
    json!({
        "requests": t.requests,
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "cost_usd": round_usd(t.cost_usd),
    })
}

async fn key_totals(
    store: &Arc<Store>,
    key: &str,
    from: i64,
    to: i64,
) -> Result<Totals, GatewayError> {
    let q = UsageQuery {
        from,
        to,
        key: Some(key.to_string()),
        ..UsageQuery::default()
    };
    let rows = aggregate(store, q).await?;
    Ok(rows
        .into_iter()
        .next()
        .map(|r| r.totals)
        .unwrap_or_default())
}

/// `GET /v1/usage`: the calling key's budgets, and its usage today and this month (in
/// its `budget_timezone`).
pub async fn key_usage(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    key: &ClientKey,
) -> Result<bool> {
    let answer = async {
        let budgets: Vec<Value> = key_budgets(runtime, ctx, key)
            .iter()
            .map(budget_json)
            .collect();
        let store = store_of(runtime).await?;
        let now = now_secs();
        let tz = &key.budgets.tz;
        let day = bounds(Period::Day, now, tz).unwrap_or((now, now + 1));
        let month = bounds(Period::Month, now, tz).unwrap_or((now, now + 1));
        let today = key_totals(&store, &key.name, day.0, day.1).await?;
        let this_month = key_totals(&store, &key.name, month.0, month.1).await?;
        Ok(json!({
            "key": key.name,
            "team": key.team,
            "budgets": budgets,
            "today": brief(&today),
            "this_month": brief(&this_month),
        }))
    }
    .await;
    reply(session, ctx, answer).await
}

/// The key's tightest USD budget's limit (0 without one), for chat front-ends' balance.
fn usd_limit(statuses: &[BudgetStatus]) -> f64 {
    statuses
        .iter()
        .filter(|s| s.budget.unit == Unit::Usd && s.budget.limit > 0.0)
        .min_by(|a, b| (a.remaining / a.budget.limit).total_cmp(&(b.remaining / b.budget.limit)))
        .map_or(0.0, |s| s.budget.limit)
}

/// `GET /v1/dashboard/billing/subscription`.
pub async fn billing_subscription(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    key: &ClientKey,
) -> Result<bool> {
    let limit = usd_limit(&key_budgets(runtime, ctx, key));
    let access_until = key
        .expires_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let body = json!({
        "object": "billing_subscription",
        "has_payment_method": true,
        "hard_limit_usd": limit,
        "soft_limit_usd": limit,
        "system_hard_limit_usd": limit,
        "access_until": access_until,
    });
    local::respond_json(session, ctx, 200, &body).await
}

/// `GET /v1/dashboard/billing/usage?start_date=&end_date=`: the key's spend in cents
/// from `start_date` up to (not including) `end_date`, as OpenAI's endpoint counted.
pub async fn billing_usage(
    session: &mut Session,
    ctx: &mut RequestCtx,
    runtime: &Runtime,
    key: &ClientKey,
    query: Option<&str>,
) -> Result<bool> {
    let answer = async {
        let p = params(query);
        let (from, to) = range(&p, ("start_date", "end_date"), false)?;
        let store = store_of(runtime).await?;
        let t = key_totals(&store, &key.name, from, to).await?;
        Ok(json!({"object": "list", "total_usage": (t.cost_usd * 100.0 * 1e4).round() / 1e4}))
    }
    .await;
    reply(session, ctx, answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_dates() {
        assert_eq!(parse_time("1970-01-02", false), Some(86_400));
        assert_eq!(parse_time("1970-01-02", true), Some(2 * 86_400));
        assert_eq!(parse_time("1970-01-01T00:01:00Z", true), Some(60));
        assert_eq!(parse_time("yesterday", false), None);
    }

    #[test]
    fn csv_has_a_header_of_the_json_names() {
        let mut row = Map::new();
        row.insert("key".into(), "team,a".into());
        row.extend(totals_json(&Totals {
            requests: 2,
            cost_usd: 0.5,
            ..Totals::default()
        }));
        let csv = to_csv(&[Dim::Key], &[row]);
        let text = String::from_utf8(csv.to_vec()).unwrap();
        assert_eq!(
            text,
            "key,requests,errors,prompt_tokens,completion_tokens,cached_tokens,cost_usd\n\"team,a\",2,0,0,0,0,0.5\n"
        );
    }
}
