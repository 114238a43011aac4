//! A builder for the gateway config that tests write (everything after `server:`, which
//! `Gateway::start` generates). Each test states only the providers, models and keys it
//! needs; the builder emits YAML through `serde_yaml`, so quoting is never the test's job.
//!
//! Settings beyond the required ones are written as the fields of a YAML flow mapping
//! (`"credentials: [c1], responses_api: true"`), the way the config file itself reads.

use serde_yaml::{Mapping, Value};

/// A provider's `kind`.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
        }
    }
}

/// The config sections after `server:`, in the order they are written.
#[derive(Clone, Debug, Default)]
pub struct Config {
    root: Mapping,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// The setup most tests start from: an OpenAI provider `p` at `url` serving model `m`.
    pub fn basic(url: &str) -> Config {
        Config::new()
            .provider("p", Kind::OpenAi, url)
            .route("m", "p")
    }

    pub fn provider(self, name: &str, kind: Kind, url: &str) -> Config {
        self.provider_with(name, kind, url, "")
    }

    /// A provider with more fields, e.g. `"credentials: [c1], timeouts: { idle: 1s }"`.
    pub fn provider_with(mut self, name: &str, kind: Kind, url: &str, fields: &str) -> Config {
        let mut p = Mapping::new();
        p.insert("kind".into(), kind.as_str().into());
        p.insert("base_url".into(), url.into());
        p.extend(flow(fields));
        self.section("providers").insert(name.into(), p.into());
        self
    }

    /// A model from its fields, e.g. `"targets: [{ provider: p, weight: 3 }], max_tokens: 8"`.
    pub fn model(mut self, name: &str, fields: &str) -> Config {
        let m = flow(fields);
        self.section("models").insert(name.into(), m.into());
        self
    }

    /// A model served by one provider under the name the client asks for.
    pub fn route(self, name: &str, provider: &str) -> Config {
        self.model(name, &format!("targets: [{{ provider: {provider} }}]"))
    }

    /// A model served by one provider under another upstream name.
    pub fn route_as(self, name: &str, provider: &str, upstream: &str) -> Config {
        self.model(
            name,
            &format!("targets: [{{ provider: {provider}, model: {upstream} }}]"),
        )
    }

    pub fn key(self, name: &str, key: &str) -> Config {
        self.key_with(name, key, "")
    }

    /// A key with more fields, e.g. `"limits: { rpm: 3 }"` or `"disabled: true"`.
    pub fn key_with(mut self, name: &str, key: &str, fields: &str) -> Config {
        let mut k = Mapping::new();
        k.insert("name".into(), name.into());
        k.insert("key".into(), key.into());
        k.extend(flow(fields));
        let keys = self
            .root
            .entry("keys".into())
            .or_insert_with(|| Value::Sequence(vec![]));
        keys.as_sequence_mut()
            .expect("keys is a list")
            .push(k.into());
        self
    }

    /// The `retry:` section, e.g. `"max_attempts: 1, cooldown: 1ms"`.
    pub fn retry(mut self, fields: &str) -> Config {
        self.root.insert("retry".into(), flow(fields).into());
        self
    }

    /// The `management:` section, e.g. `"secret_key: \"${ADMIN_SECRET}\""`.
    pub fn management(mut self, fields: &str) -> Config {
        self.root.insert("management".into(), flow(fields).into());
        self
    }

    /// Any top-level section as a flow mapping, e.g. `("cluster", "on_error: local")`.
    pub fn top(mut self, name: &str, fields: &str) -> Config {
        self.root.insert(name.into(), flow(fields).into());
        self
    }

    /// The `store:` section, e.g. `"url: memory, flush_interval: 50ms"`.
    pub fn store(mut self, fields: &str) -> Config {
        self.root.insert("store".into(), flow(fields).into());
        self
    }

    /// One `pricing:` entry, e.g. `("gpt-x", "input: 1, output: 2")`.
    pub fn price(mut self, model: &str, fields: &str) -> Config {
        self.section("pricing")
            .insert(model.into(), flow(fields).into());
        self
    }

    /// A team, e.g. `("platform", "budgets: [{ usd: 1, period: day }]")`.
    pub fn team(mut self, name: &str, fields: &str) -> Config {
        self.section("teams")
            .insert(name.into(), flow(fields).into());
        self
    }

    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.root).expect("config YAML")
    }

    fn section(&mut self, name: &str) -> &mut Mapping {
        self.root
            .entry(name.into())
            .or_insert_with(|| Value::Mapping(Mapping::new()))
            .as_mapping_mut()
            .expect("a config section is a mapping")
    }
}

/// The fields of a flow mapping (without its braces) as a mapping.
fn flow(fields: &str) -> Mapping {
    serde_yaml::from_str(&format!("{{ {fields} }}"))
        .unwrap_or_else(|e| panic!("test config fields {fields:?}: {e}"))
}

/// The URL of a loopback port nobody listens on: a provider that refuses connections.
pub fn closed_url() -> String {
    format!("http://127.0.0.1:{}", super::free_port())
}
