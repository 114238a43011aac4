use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_KEY" => Some("sk-provider".into()),
        "TEAM_KEY" => Some("  team-secret \n".into()),
        _ => None,
    }
}

fn load(yaml: &str) -> Result<Loaded, LoadError> {
    load_str(yaml, "t.yaml", &env)
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

/// The least a loadable config needs besides what a test is about.
const MIN_MODELS_KEYS: &str =
    "models: { m: { targets: [{ provider: p }] } }\nkeys: [{ name: k, key: sk-minimal-key-1 }]\n";

const GOOD: &str = r#"
server: { listen: "127.0.0.1:8080", metrics_listen: "127.0.0.1:9091", grace_period: 3s }
providers:
  openai: { kind: openai, base_url: "https://api.openai.com", credentials: ["${OPENAI_KEY}"] }
  local: { kind: openai, base_url: "http://127.0.0.1:8000/v1" }
models:
  gpt-4o:
    aliases: [gpt4o]
    targets:
      - { provider: openai, model: gpt-4o-2024-08-06, weight: 3 }
      - { provider: local, weight: 0 }
    fallbacks: [small]
  small: { targets: [{ provider: local }] }
  "llama-*": { targets: [{ provider: local }] }
keys:
  - { name: team, key: "${TEAM_KEY}", models: ["gpt-*"], expires_at: "2099-01-01T00:00:00Z", allowed_ips: ["10.0.0.0/8", "127.0.0.1"] }
  - { name: hashed, key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }
"#;

#[test]
fn a_good_config_loads_with_its_warnings() {
    let l = load(GOOD).unwrap();
    let c = &l.config;
    assert_eq!(c.server.grace_period, std::time::Duration::from_secs(3));
    assert_eq!(c.providers.len(), 2);
    assert!(c.models.resolve("gpt4o").is_some());
    assert!(c.models.resolve("llama-3-8b").unwrap().route.is_pattern);
    assert!(c.models.resolve("nope").is_none());
    // the whitespace around TEAM_KEY is trimmed and reported
    assert!(c.keys.find("team-secret").is_some());
    assert!(l
        .warnings
        .iter()
        .any(|w| w.contains("keys[0].key") && w.contains("trimmed")));
    // key_sha256 of "test"
    assert_eq!(c.keys.find("test").unwrap().name, "hashed");
    assert_eq!(c.retry.max_attempts, 3);
}

#[test]
fn unknown_provider_is_named_by_path() {
    let e = errors(
        r#"
providers: { openai: { kind: openai, base_url: "https://x" } }
models:
  gpt-4o: { targets: [{ provider: openai }, { provider: opnai }] }
keys: [{ name: k, key: sk-minimal-key-1 }]
"#,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.yaml: models.gpt-4o.targets[1].provider: unknown provider \"opnai\""),
        "{e:?}"
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let e = errors("keys:\n  - { name: a, key: k, limits: { rpn: 5 } }\n");
    assert!(
        e[0].contains("keys[0].limits") && e[0].contains("rpn"),
        "{e:?}"
    );
    let e = errors("sever: {}\n");
    assert!(e[0].contains("sever"), "{e:?}");
}

#[test]
fn yaml_syntax_errors_have_line_and_column() {
    let e = errors("server:\n  listen: [\"a\"\n  threads: 2\n");
    assert!(e[0].starts_with("t.yaml:"), "{e:?}");
    let parts: Vec<&str> = e[0].splitn(4, ':').collect();
    assert!(
        parts[1].parse::<usize>().is_ok() && parts[2].parse::<usize>().is_ok(),
        "{e:?}"
    );
}

#[test]
fn missing_variables_and_bad_values_are_errors() {
    let e = errors(
        r#"
server: { listen: "nowhere", grace_period: "soon" }
"#,
    );
    assert!(
        e[0].contains("server.grace_period") && e[0].contains("500ms"),
        "{e:?}"
    );
    let e = errors(
        r#"
providers: { p: { kind: opnai, base_url: "api.openai.com", credentials: ["${NOPE}"] } }
"#,
    );
    assert!(
        e[0].contains("providers.p.credentials[0]") && e[0].contains("NOPE"),
        "{e:?}"
    );
    let e = errors(
        r#"
providers: { p: { kind: opnai, base_url: "api.openai.com" } }
server: { listen: "nowhere" }
"#,
    );
    let all = e.join("\n");
    assert!(
        all.contains("providers.p.kind: unknown kind \"opnai\""),
        "{all}"
    );
    assert!(all.contains("providers.p.base_url"), "{all}");
    assert!(all.contains("server.listen[0]"), "{all}");
}

#[test]
fn duplicate_secrets_cycles_and_bad_references_are_errors() {
    let e = errors(
        r#"
providers: { p: { kind: openai, base_url: "http://127.0.0.1:1" } }
models:
  a: { targets: [{ provider: p }], fallbacks: [b] }
  b: { targets: [{ provider: p }], fallbacks: [a] }
  c: { targets: [{ provider: p }], fallbacks: [zzz] }
keys:
  - { name: one, key: same }
  - { name: two, key: " same" }
  - { name: three, key_sha256: "xyz" }
  - { name: four, key: k4, allowed_ips: ["10.0.0.0/33"], expires_at: "tomorrow" }
"#,
    );
    let all = e.join("\n");
    assert!(
        all.contains("keys[1]: has the same secret as keys[0]"),
        "{all}"
    );
    assert!(all.contains("fallbacks form a cycle: a -> b -> a"), "{all}");
    assert!(
        all.contains("models.c.fallbacks[0]: unknown model \"zzz\""),
        "{all}"
    );
    assert!(all.contains("keys[2].key_sha256"), "{all}");
    assert!(all.contains("keys[3].allowed_ips[0]"), "{all}");
    assert!(all.contains("keys[3].expires_at"), "{all}");
}

#[test]
fn numbers_can_come_from_variables() {
    let text = format!("server: {{ threads: \"${{T:-3}}\", max_body_bytes: \"${{B}}\" }}\nproviders: {{ p: {{ kind: openai, base_url: \"http://127.0.0.1:1\" }} }}\n{MIN_MODELS_KEYS}");
    let l = load_str(&text, "t", &|n| (n == "B").then(|| "2048".to_string())).unwrap();
    assert_eq!(l.config.server.threads, 3);
    assert_eq!(l.config.server.max_body_bytes, 2048);
}

#[test]
fn secrets_never_appear_in_type_errors() {
    let e = load_str(
        "keys:\n  - { name: a, key: k, limits: \"${TEAM_KEY}\" }\n",
        "t",
        &|_| Some("sk-very-secret-1234".into()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(!e.contains("sk-very-secret"), "{e}");
    assert!(e.contains("keys[0].limits"), "{e}");
    // a single credential written as a string is accepted
    let l = load_str(
        &format!("providers: {{ p: {{ kind: openai, base_url: \"http://127.0.0.1:1\", credentials: \"${{K}}\" }} }}\n{MIN_MODELS_KEYS}"),
        "t",
        &|_| Some("sk-one".into()),
    )
    .unwrap();
    assert_eq!(l.config.providers["p"].credential_count(), 1);
    let e = load_str(
        "providers: { p: { kind: openai, base_url: \"http://127.0.0.1:1\", credentials: [\"${K}\"] } }\n",
        "t",
        &|_| Some("bad\u{1}key".into()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("providers.p.credentials[0]") && !e.contains("bad"),
        "{e}"
    );
}

#[test]
fn spend_settings_validate_and_the_store_password_is_redacted() {
    let text = r#"
providers: { p: { kind: openai, base_url: "http://127.0.0.1:1" } }
models: { m: { targets: [{ provider: p }] } }
store: { url: "postgres://mg:${PG_PASSWORD}@db:5432/mg", flush_interval: 250ms }
pricing: { "my-model": { input: 1, output: 2 } }
teams: { eng: { budgets: [{ usd: 10, period: week }], budget_timezone: Europe/Berlin } }
keys:
  - { name: a, key: sk-aaaaaaaa, team: eng, budgets: [{ requests: 5, period: day, models: ["gpt-*"] }] }
  - { name: b, key: sk-bbbbbbbb, team: nobody }
"#;
    let l = load_str(text, "t", &|_| Some("pg-secret-pw".into())).unwrap();
    let c = &l.config;
    assert_eq!(c.store.ledger.flush_interval, Duration::from_millis(250));
    assert_eq!(c.prices.lookup("p", "my-model").unwrap().output, 2.0);
    assert_eq!(c.teams["eng"].budgets.tz_name, "Europe/Berlin");
    let a = c.keys.iter().find(|k| k.name == "a").unwrap();
    assert_eq!(a.team.as_deref(), Some("eng"));
    assert_eq!(a.budgets.budgets[0].label, "requests/day[gpt-*]");
    assert!(
        l.warnings.iter().any(|w| w.contains("\"nobody\"")),
        "{:?}",
        l.warnings
    );
    let shown = redacted(&c.source).to_string();
    assert!(!shown.contains("pg-secret-pw"), "{shown}");
    assert!(shown.contains("postgres://mg:***@db:5432/mg"), "{shown}");

    let bad = r#"
store: { url: "mysql://x", buffer: 5 }
pricing: { "m": { input: -1 } }
keys:
  - { name: a, key: sk-aaaaaaaa, budgets: [{ usd: 1, tokens: 2, period: day }, { usd: 1, period: fortnight }] }
"#;
    let e = load_str(bad, "t", &|_| None).err().unwrap().to_string();
    for want in [
        "store.url",
        "store.buffer",
        "pricing.m",
        "keys[0].budgets[0]: set only one",
        "keys[0].budgets[1].period",
    ] {
        assert!(e.contains(want), "{want} missing from:\n{e}");
    }
}

#[test]
fn cluster_needs_redis_and_a_shared_store() {
    let with = |section: &str| format!("{GOOD}{section}");
    let e = errors(&with(
        "cluster: { redis: { url: \"redis://127.0.0.1:6379/0\" }, replicas: 3 }\n",
    ));
    assert!(
        e.iter()
            .any(|l| l.contains("store.url") && l.contains("Postgres")),
        "{e:?}"
    );
    let e = errors(&with(
        "store: { url: \"postgres://u:secret@db/m\" }\ncluster: { on_error: maybe, replicas: 0, lease_ttl: 1s }\n",
    ));
    for field in [
        "cluster.redis.url",
        "cluster.on_error",
        "cluster.replicas",
        "cluster.lease_ttl",
    ] {
        assert!(e.iter().any(|l| l.contains(field)), "{field}: {e:?}");
    }
    assert!(!e.iter().any(|l| l.contains("secret")), "{e:?}");
    let loaded = load(&with(
        "store: { url: \"postgres://u:secret@db/m\" }\ncluster: { redis: { url: \"redis://:pw@127.0.0.1:6379/0\", timeout: 20ms }, on_error: closed, replicas: 3 }\n",
    ))
    .unwrap();
    let c = loaded.config.cluster.clone().unwrap();
    assert_eq!(
        (
            c.on_error,
            c.replicas,
            c.timeout,
            c.lease_ttl,
            c.prefix.as_str()
        ),
        (
            OnError::Closed,
            3,
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(30),
            "modelgate:"
        )
    );
    let shown = redacted(&loaded.config.source).to_string();
    assert!(
        !shown.contains(":pw@") && !shown.contains("secret"),
        "{shown}"
    );
}

#[test]
fn an_empty_config_is_refused() {
    for text in ["", "# nothing\n", "server: { threads: 2 }\n"] {
        let e = errors(text).join("\n");
        for field in ["providers", "models", "keys"] {
            assert!(
                e.contains(&format!("t.yaml: {field}: at least one")),
                "{text:?}: {e}"
            );
        }
    }
    // Keys may all come from the keys API when the management API is on.
    let text = "providers: { p: { kind: openai, base_url: \"http://127.0.0.1:1\" } }\nmodels: { m: { targets: [{ provider: p }] } }\nmanagement: { secret_key: admin-secret-1 }\n";
    assert!(load(text).is_ok());
}

#[test]
fn the_anthropic_version_is_checked_and_defaults_to_2026_10_21() {
    let ok = format!(
        "providers: {{ p: {{ kind: anthropic, base_url: \"http://127.0.0.1:1\", credentials: [c] }}, old: {{ kind: anthropic, base_url: \"http://127.0.0.1:2\", anthropic_version: \"2023-06-01\" }} }}\n{MIN_MODELS_KEYS}"
    );
    let loaded = load(&ok).unwrap();
    assert_eq!(loaded.config.providers["p"].anthropic_version, "2026-10-21");
    assert_eq!(
        loaded.config.providers["old"].anthropic_version,
        "2023-06-01"
    );
    let e = errors(&format!(
        "providers: {{ p: {{ kind: anthropic, base_url: \"http://127.0.0.1:1\", anthropic_version: latest }} }}\n{MIN_MODELS_KEYS}"
    ));
    assert!(
        e.iter()
            .any(|l| l.contains("providers.p.anthropic_version") && l.contains("YYYY-MM-DD")),
        "{e:?}"
    );
    let e = errors(&format!(
        "providers: {{ p: {{ kind: openai, base_url: \"http://127.0.0.1:1\", anthropic_version: \"2023-06-01\" }} }}\n{MIN_MODELS_KEYS}"
    ));
    assert!(
        e.iter()
            .any(|l| l.contains("applies only to kind: anthropic")),
        "{e:?}"
    );
}
