//! The deploy/ artifacts are well-formed, name only metrics the gateway exports, and pass
//! promtool (required when MODELGATE_REQUIRE_PROMTOOL=1, as in .ci/run) and
//! systemd-analyze (when present).

use crate::support::*;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn deploy(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `modelgate_*` metric family names mentioned in a text (histogram suffixes removed).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("modelgate_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        out.insert(family.to_string());
        i = end;
    }
    out
}

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("MODELGATE_REQUIRE_PROMTOOL").is_err(),
            "promtool is required (Debian package prometheus)"
        );
        eprintln!("promtool not installed: promtool checks skipped");
        return None;
    }
    Some("promtool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_artifacts_are_valid_and_match_the_exported_metrics() {
    for doc in serde_yaml::Deserializer::from_str(&deploy("kubernetes/modelgate.yaml")) {
        let v = serde_yaml::Value::deserialize(doc).expect("kubernetes YAML");
        assert!(
            v.get("kind").is_some(),
            "every Kubernetes document has a kind"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/modelgate.json")).expect("dashboard JSON");
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| p.len() >= 10));
    serde_yaml::from_str::<serde_yaml::Value>(&deploy("prometheus/alerts.yml"))
        .expect("alerts YAML");

    // Every metric the dashboard and alerts use is exported. Label-vector families appear
    // once they have a sample, so this gateway produces each: a failover (the first target
    // is a closed port), a 429 (rpm 1) and a health-checked provider.
    let mock = MockProvider::start("p").await;
    let cfg = Config::new()
        .provider("down", Kind::OpenAi, &closed_url())
        .provider_with(
            "p",
            Kind::OpenAi,
            &mock.url(),
            "health_check: { path: /v1/models, interval: 100ms }",
        )
        .model(
            "m",
            "targets: [{ provider: down }, { provider: p, weight: 0 }]",
        )
        .key_with("k", "sk-deploy-0001", "limits: { rpm: 1 }")
        .yaml();
    let gw = Gateway::start("", &cfg).await;
    assert_eq!(gw.chat("sk-deploy-0001", "m").await.status(), 200);
    assert_eq!(gw.chat("sk-deploy-0001", "m").await.status(), 429);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gw.metrics().await.contains("modelgate_upstream_healthy{") {
        assert!(std::time::Instant::now() < deadline, "no health check ran");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let exported_text = gw.metrics().await;
    let exported: BTreeSet<String> = exported_text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    let used: BTreeSet<String> = metric_names(&deploy("grafana/modelgate.json"))
        .into_iter()
        .chain(metric_names(&deploy("prometheus/alerts.yml")))
        .collect();
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboard/alerts use metrics that are not exported: {missing:?}"
    );

    if let Some(promtool) = promtool() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
        for args in [
            vec!["check", "rules", "alerts.yml"],
            vec!["check", "config", "prometheus.yml"],
        ] {
            let out = Command::new(promtool)
                .args(&args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "promtool {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(exported_text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_systemd_unit_reloads_by_sighup_and_is_hardened() {
    let unit = deploy("modelgate.service");
    for line in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(line), "missing {line}");
    }
    let verify = Command::new("systemd-analyze").arg("--version").output();
    if verify.is_ok_and(|o| o.status.success()) {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/modelgate.service"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The binary path does not exist on a build machine; anything else is a real problem.
        let real: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/modelgate") && !l.trim().is_empty())
            .collect();
        assert!(real.is_empty(), "systemd-analyze verify: {err}");
    }
}

#[test]
fn the_containerfile_copies_what_exists_and_runs_unprivileged() {
    let text = deploy("Containerfile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut copies = 0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                root.join(src).exists(),
                "Containerfile copies {src}, which does not exist"
            );
            copies += 1;
        }
    }
    assert!(
        copies >= 4,
        "expected the sources, the lock file and the config to be copied"
    );
    assert!(
        text.contains("apt-get install -y --no-install-recommends cmake"),
        "pingora needs cmake to build"
    );
    assert!(
        text.contains("ca-certificates"),
        "HTTPS providers need CA certificates"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.ends_with(" 0")),
        "run as non-root"
    );
}
