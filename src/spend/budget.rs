//! Budgets as configured: a limit in USD, tokens or requests over a calendar period
//! (in the key's or team's `budget_timezone`), optionally only for some public models.

use std::sync::Arc;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use wildmatch::WildMatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Usd,
    Tokens,
    Requests,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Usd => "usd",
            Unit::Tokens => "tokens",
            Unit::Requests => "requests",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Week,
    Month,
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        Some(match s.trim() {
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            "total" => Period::Total,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// The calendar periods, in the order `Window::periods` keeps them.
    pub const CALENDAR: [Period; 3] = [Period::Day, Period::Week, Period::Month];
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub unit: Unit,
    pub limit: f64,
    pub period: Period,
    /// Public model globs this budget counts; `None`: every model.
    pub models: Option<Vec<WildMatch>>,
    /// `usd/month`, as metrics and headers name it.
    pub label: String,
    /// `50 usd/month`, the limit header (made once, not per request).
    pub limit_text: String,
}

impl Budget {
    pub fn new(unit: Unit, limit: f64, period: Period, models: Option<Vec<WildMatch>>) -> Budget {
        let mut label = format!("{}/{}", unit.as_str(), period.as_str());
        if let Some(m) = &models {
            let names: Vec<String> = m.iter().map(|p| p.to_string()).collect();
            label.push_str(&format!("[{}]", names.join(",")));
        }
        let limit_text = format!(
            "{} {}/{}",
            fmt_amount(limit),
            unit.as_str(),
            period.as_str()
        );
        Budget {
            unit,
            limit,
            period,
            models,
            label,
            limit_text,
        }
    }

    /// Whether spend on public model `model` counts against this budget.
    pub fn counts(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|p| p.matches(model)))
    }

    /// `50 usd/month`, for the limit header.
    pub fn describe_limit(&self) -> &str {
        &self.limit_text
    }
}

/// An amount without trailing zeros: `50`, `37.7213`.
pub fn fmt_amount(v: f64) -> String {
    // Whole amounts (every requests and tokens budget) skip the float formatting.
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return (v as i64).to_string();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// The budgets of one key or team, with the time zone their periods are counted in.
#[derive(Debug, Clone)]
pub struct BudgetSet {
    /// Shared, so a budget's state is reported without copying it.
    pub budgets: Vec<Arc<Budget>>,
    pub tz: TimeZone,
    /// The zone's name, which tells whether cached period bounds still hold.
    pub tz_name: String,
}

impl Default for BudgetSet {
    fn default() -> Self {
        BudgetSet {
            budgets: Vec::new(),
            tz: TimeZone::UTC,
            tz_name: "UTC".to_string(),
        }
    }
}

impl BudgetSet {
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty()
    }
}

/// An IANA zone name (`UTC`, `Europe/Berlin`).
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        format!("{name:?} is not a known time zone (an IANA name such as UTC or Europe/Berlin)")
    })
}

/// `[start, end)` of the calendar period holding `now` (unix seconds): a day from 00:00,
/// a week from Monday 00:00, a month from the 1st at 00:00, in `tz`. `None` for `total`.
pub fn bounds(period: Period, now: i64, tz: &TimeZone) -> Option<(i64, i64)> {
    let ts = Timestamp::from_second(now).ok()?;
    let date = ts.to_zoned(tz.clone()).date();
    let (start, end): (Date, Date) = match period {
        Period::Total => return None,
        Period::Day => (date, date.tomorrow().ok()?),
        Period::Week => {
            let back = i64::from(date.weekday().to_monday_zero_offset());
            let monday = date.checked_sub(back.days()).ok()?;
            (monday, monday.checked_add(7.days()).ok()?)
        }
        Period::Month => {
            let first = date.first_of_month();
            (first, first.checked_add(1.month()).ok()?)
        }
    };
    let at = |d: Date| {
        d.to_zoned(tz.clone())
            .ok()
            .map(|z| z.timestamp().as_second())
    };
    Some((at(start)?, at(end)?))
}

/// RFC 3339 (UTC) of unix seconds.
pub fn rfc3339(secs: i64) -> String {
    thread_local! {
        /// The last time written: a budget's reset time is the same on every response of
        /// its period, so it is formatted once per period and thread, not per response.
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *text = format_rfc3339(secs);
            *at = secs;
        }
        text.clone()
    })
}

fn format_rfc3339(secs: i64) -> String {
    // Written out rather than through strftime, which parses its pattern on every call.
    Timestamp::from_second(secs)
        .map(|t| {
            let d = jiff::tz::Offset::UTC.to_datetime(t);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year(),
                d.month(),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    #[test]
    fn calendar_periods_start_at_local_midnight() {
        let now = at("2026-12-02T10:30:00Z"); // a Wednesday
        let utc = TimeZone::UTC;
        assert_eq!(
            bounds(Period::Day, now, &utc),
            Some((at("2026-12-02T00:00:00Z"), at("2026-12-03T00:00:00Z")))
        );
        assert_eq!(
            bounds(Period::Week, now, &utc),
            Some((at("2026-11-30T00:00:00Z"), at("2026-12-07T00:00:00Z")))
        );
        assert_eq!(
            bounds(Period::Month, now, &utc),
            Some((at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z")))
        );
        assert_eq!(bounds(Period::Total, now, &utc), None);
        let tokyo = time_zone("Asia/Tokyo").unwrap();
        // 10:30 UTC is 19:30 in Tokyo: the local day began at 15:00 UTC the day before.
        assert_eq!(
            bounds(Period::Day, now, &tokyo),
            Some((at("2026-12-01T15:00:00Z"), at("2026-12-02T15:00:00Z")))
        );
        assert!(time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn labels_and_amounts_read_well() {
        let b = Budget::new(Unit::Usd, 50.0, Period::Month, None);
        assert_eq!(b.label, "usd/month");
        assert_eq!(b.describe_limit(), "50 usd/month");
        assert_eq!(fmt_amount(37.72134), "37.7213");
        assert_eq!(fmt_amount(0.0), "0");
        assert_eq!(fmt_amount(-0.0), "0");
        assert_eq!(fmt_amount(999_999_999.0), "999999999");
        assert_eq!(fmt_amount(0.00001), "0");
        assert_eq!(rfc3339(at("2026-03-01T00:00:00Z")), "2026-03-01T00:00:00Z");
        assert_eq!(rfc3339(at("1999-12-31T23:59:07Z")), "1999-12-31T23:59:07Z");
        let m = Budget::new(
            Unit::Usd,
            5.0,
            Period::Day,
            Some(vec![WildMatch::new("gpt-5*")]),
        );
        assert!(m.counts("gpt-5-mini") && !m.counts("claude"));
        assert_eq!(rfc3339(at("2027-01-01T00:00:00Z")), "2027-01-01T00:00:00Z");
    }
}
