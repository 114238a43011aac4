//! The headers the gateway adds to responses (request id, attempts, provider, rate
//! limits, budgets), their names parsed once. Pingora's `insert_header` parses the name of
//! every insert and keeps a second map of name cases; a proxied response carries a dozen
//! of these, so they are built as `http` values and put straight in the header map.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static ATTEMPTS: HeaderName = HeaderName::from_static("x-modelgate-attempts");
pub static PROVIDER: HeaderName = HeaderName::from_static("x-modelgate-provider");

pub static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
pub static REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
pub static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
pub static LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
pub static REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
pub static RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

pub static BUDGET_LIMIT: HeaderName = HeaderName::from_static("x-modelgate-budget-limit");
pub static BUDGET_REMAINING: HeaderName = HeaderName::from_static("x-modelgate-budget-remaining");
pub static BUDGET_RESET: HeaderName = HeaderName::from_static("x-modelgate-budget-reset");

/// Headers made for one request (its limits', its budget's), written on every response.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// A value the gateway formatted itself (numbers, durations, times, labels from the
/// config); one that is not a valid header value is left out rather than failing the
/// response.
pub fn push(headers: &mut Headers, name: &HeaderName, value: String) {
    match HeaderValue::try_from(value) {
        Ok(v) => headers.push((name.clone(), v)),
        Err(_) => log::debug!("header {name} left out: not a valid value"),
    }
}

/// Sets `name` to `value` (replacing what the provider sent under that name).
pub fn set(map: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        map.insert(name.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_and_values_that_cannot_be_sent_are_left_out() {
        for n in [&REQUEST_ID, &LIMIT_REQUESTS, &BUDGET_RESET] {
            assert_eq!(n.as_str(), n.as_str().to_ascii_lowercase());
        }
        let mut h = Headers::new();
        push(&mut h, &BUDGET_LIMIT, "usd 10/day".into());
        push(&mut h, &BUDGET_LIMIT, "line\nbreak".into());
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].1, "usd 10/day");
    }
}
