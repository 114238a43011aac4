//! The web console at `/console/`: one page, its script, style and icon, embedded in the
//! binary at build time (plain files beside this one: no Node toolchain, no external
//! asset, works offline). The page talks only to the management API, with the secret the
//! user types in; it is served under the management API's reachability rules.

use crate::protocol::ConsoleAsset;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");
const ICON: &str = include_str!("icon.svg");

/// Nothing but this origin's own files and API; no inline script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The content type and body of one of the console's files.
pub fn asset(a: ConsoleAsset) -> (&'static str, &'static [u8]) {
    match a {
        ConsoleAsset::Page => ("text/html; charset=utf-8", PAGE.as_bytes()),
        ConsoleAsset::Script => ("text/javascript; charset=utf-8", SCRIPT.as_bytes()),
        ConsoleAsset::Style => ("text/css; charset=utf-8", STYLE.as_bytes()),
        ConsoleAsset::Icon => ("image/svg+xml", ICON.as_bytes()),
    }
}

/// Headers on every console file.
pub fn headers() -> [(&'static str, String); 6] {
    [
        (
            "content-security-policy",
            CONTENT_SECURITY_POLICY.to_string(),
        ),
        ("x-content-type-options", "nosniff".to_string()),
        ("x-frame-options", "DENY".to_string()),
        ("referrer-policy", "no-referrer".to_string()),
        ("cross-origin-opener-policy", "same-origin".to_string()),
        // Small and embedded: always fresh after an upgrade, never kept by a proxy.
        ("cache-control", "no-store".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_has_no_inline_code() {
        let page = PAGE;
        assert!(page.contains(r#"src="/console/console.js""#));
        assert!(page.contains(r#"href="/console/console.css""#));
        for bad in [
            "<script>", "style=", "onclick", "onload", "http://", "https://",
        ] {
            assert!(!page.contains(bad), "index.html has {bad:?}");
        }
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "document.write",
        ] {
            assert!(!SCRIPT.contains(bad), "console.js uses {bad}");
        }
    }
}
