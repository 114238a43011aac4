//! `modelgate keys ...`: the keys API from the host's shell. It talks to the running
//! gateway (the address and management secret come from the config file, or flags), so
//! every change goes through the same checks and the audit log as an API call.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Args, Debug)]
pub struct KeysCommand {
    /// The gateway, e.g. http://127.0.0.1:8080 (default: the config's first listen address).
    #[arg(long, global = true, env = "MODELGATE_URL")]
    pub url: Option<String>,
    /// The management secret (default: the config's management.secret_key).
    #[arg(
        long,
        global = true,
        env = "MODELGATE_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// Print the API's JSON answers as they are.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key; its secret is printed once.
    Create {
        name: String,
        /// Model names or globs it may use (comma-separated); default every model.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        #[arg(long)]
        team: Option<String>,
        /// RFC 3339 time after which it is refused.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        rpm: Option<u64>,
        #[arg(long)]
        tpm: Option<u64>,
        /// A budget: AMOUNT UNIT / PERIOD, e.g. 10usd/month, 2000000tokens/day, 500requests/week.
        #[arg(long = "budget")]
        budgets: Vec<String>,
        /// A label: NAME=VALUE (repeatable).
        #[arg(long = "metadata")]
        metadata: Vec<String>,
        /// Any further fields, as the API's JSON (merged over the flags).
        #[arg(long)]
        fields: Option<String>,
    },
    /// List every key (config and API ones).
    List,
    /// One key, with what its budgets have used.
    Show { name: String },
    /// Change fields of an API key: a JSON object, e.g. '{"disabled": true}'.
    Update { name: String, fields: String },
    /// Revoke an API key at once.
    Revoke { name: String },
    /// Give an API key a new secret; the old one works for --grace (default 0).
    Rotate {
        name: String,
        #[arg(long, default_value = "0s")]
        grace: String,
    },
}

/// Runs the command; `Err` is the message for stderr.
pub fn run(cmd: KeysCommand, config: Option<&Path>) -> Result<(), String> {
    let (url, admin_key) = target(&cmd, config)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let api = Api {
        agent,
        base: url.trim_end_matches('/').to_string(),
        auth: format!("Bearer {admin_key}"),
    };
    let path = |name: &str, rest: &str| {
        format!(
            "/v0/management/keys/{}{rest}",
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    let answer = match &cmd.action {
        KeysAction::Create {
            name,
            models,
            team,
            expires_at,
            rpm,
            tpm,
            budgets,
            metadata,
            fields,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            if !models.is_empty() {
                body.insert("models".into(), json!(models));
            }
            if let Some(t) = team {
                body.insert("team".into(), json!(t));
            }
            if let Some(e) = expires_at {
                body.insert("expires_at".into(), json!(e));
            }
            let mut limits = Map::new();
            if let Some(n) = rpm {
                limits.insert("rpm".into(), json!(n));
            }
            if let Some(n) = tpm {
                limits.insert("tpm".into(), json!(n));
            }
            if !limits.is_empty() {
                body.insert("limits".into(), Value::Object(limits));
            }
            if !budgets.is_empty() {
                let list: Result<Vec<Value>, String> = budgets.iter().map(|b| budget(b)).collect();
                body.insert("budgets".into(), Value::Array(list?));
            }
            if !metadata.is_empty() {
                let mut m = Map::new();
                for pair in metadata {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("--metadata {pair:?}: expected NAME=VALUE"))?;
                    m.insert(k.to_string(), json!(v));
                }
                body.insert("metadata".into(), Value::Object(m));
            }
            if let Some(f) = fields {
                body.extend(object(f, "--fields")?);
            }
            api.send("POST", "/v0/management/keys", Some(Value::Object(body)))?
        }
        KeysAction::List => api.send("GET", "/v0/management/keys", None)?,
        KeysAction::Show { name } => api.send("GET", &path(name, ""), None)?,
        KeysAction::Update { name, fields } => {
            let body = Value::Object(object(fields, "FIELDS")?);
            api.send("PATCH", &path(name, ""), Some(body))?
        }
        KeysAction::Revoke { name } => api.send("DELETE", &path(name, ""), None)?,
        KeysAction::Rotate { name, grace } => api.send(
            "POST",
            &path(name, "/rotate"),
            Some(json!({ "grace": grace })),
        )?,
    };
    if cmd.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return Ok(());
    }
    print_human(&cmd.action, &answer);
    Ok(())
}

struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Api {
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let auth = self.auth.as_str();
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", auth).call(),
            ("DELETE", _) => self.agent.delete(&url).header("Authorization", auth).call(),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("Authorization", auth)
                .send_json(&b),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("Authorization", auth)
                .send_json(&b),
            _ => self
                .agent
                .post(&url)
                .header("Authorization", auth)
                .send_empty(),
        };
        let mut resp =
            sent.map_err(|e| format!("cannot reach the gateway at {}: {e}", self.base))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("reading the gateway's answer: {e}"))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let errors = v["errors"].as_array();
        let message = match errors {
            Some(_) => "the key is invalid; nothing changed".to_string(),
            None => v["error"]["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string()),
        };
        let mut msg = format!("{status} {code}: {message}");
        if let Some(errors) = errors {
            for e in errors {
                msg.push_str(&format!(
                    "\n  {}: {}",
                    e["field"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                ));
            }
        }
        Err(msg)
    }
}

fn object(text: &str, what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{what}: must be a JSON object")),
        Err(e) => Err(format!("{what}: not JSON: {e}")),
    }
}

/// `10usd/month` -> `{"usd": 10, "period": "month"}`.
fn budget(text: &str) -> Result<Value, String> {
    let bad = || {
        format!("--budget {text:?}: expected AMOUNT UNIT/PERIOD, e.g. 10usd/month, 2000000tokens/day, 500requests/week")
    };
    let (amount, period) = text.split_once('/').ok_or_else(bad)?;
    let split = amount
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(bad)?;
    let (n, unit) = amount.split_at(split);
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let mut b = Map::new();
    match unit.trim() {
        "usd" | "USD" | "$" => b.insert("usd".into(), json!(n)),
        "tokens" => b.insert("tokens".into(), json!(n as u64)),
        "requests" => b.insert("requests".into(), json!(n as u64)),
        _ => return Err(bad()),
    };
    b.insert("period".into(), json!(period.trim()));
    Ok(Value::Object(b))
}

/// The gateway's address and management secret: flags, else the config file.
fn target(cmd: &KeysCommand, config: Option<&Path>) -> Result<(String, String), String> {
    let raw: Option<serde_yaml::Value> = match config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Some(
                serde_yaml::from_str(&text)
                    .map_err(|e| format!("{}: not YAML: {e}", p.display()))?,
            )
        }
        None => None,
    };
    let expand = |s: &str| crate::config::expand_str(s, &|n| std::env::var(n).ok());
    let url = match (&cmd.url, &raw) {
        (Some(u), _) => u.clone(),
        (None, Some(r)) => {
            let listen = match &r["server"]["listen"] {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Sequence(v) => {
                    v.first().and_then(|s| s.as_str()).map(String::from)
                }
                _ => None,
            };
            let listen = listen.unwrap_or_else(|| "127.0.0.1:8080".into());
            let listen = expand(&listen)?;
            let local = listen
                .replace("0.0.0.0:", "127.0.0.1:")
                .replace("[::]:", "[::1]:");
            format!("http://{local}")
        }
        (None, None) => "http://127.0.0.1:8080".into(),
    };
    let admin = match (&cmd.admin_key, &raw) {
        (Some(k), _) => k.clone(),
        (None, Some(r)) => match r["management"]["secret_key"].as_str() {
            Some(s) => expand(s)?,
            None => return Err("the config has no management.secret_key; the keys command needs the management API (or pass --admin-key)".into()),
        },
        (None, None) => {
            return Err(
                "no management secret: pass -c FILE, --admin-key or MODELGATE_ADMIN_KEY".into(),
            )
        }
    };
    Ok((url, admin))
}

fn print_human(action: &KeysAction, v: &Value) {
    match action {
        KeysAction::Create { .. } | KeysAction::Rotate { .. } => {
            println!(
                "key {:?}: {}",
                v["name"].as_str().unwrap_or(""),
                v["key"].as_str().unwrap_or("")
            );
            println!("(the secret is shown this once; the gateway keeps only its SHA-256)");
            if let Some(until) = v["previous_key_valid_until"].as_str() {
                println!("the previous secret works until {until}");
            }
            for w in v["warnings"].as_array().into_iter().flatten() {
                println!("warning: {}", w.as_str().unwrap_or(""));
            }
        }
        KeysAction::List => {
            println!(
                "{:<24} {:<7} {:<6} {:<12} {:<9} {:<24} MODELS",
                "NAME", "SOURCE", "HINT", "TEAM", "DISABLED", "LAST USED"
            );
            for k in v["keys"].as_array().into_iter().flatten() {
                let models = k["models"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "*".into());
                println!(
                    "{:<24} {:<7} {:<6} {:<12} {:<9} {:<24} {models}",
                    k["name"].as_str().unwrap_or(""),
                    k["source"].as_str().unwrap_or(""),
                    k["key_hint"].as_str().unwrap_or("-"),
                    k["team"].as_str().unwrap_or("-"),
                    k["disabled"].as_bool().unwrap_or(false),
                    k["last_used_at"].as_str().unwrap_or("never"),
                );
            }
        }
        KeysAction::Revoke { name } => println!("key {name:?} revoked"),
        _ => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_from_the_command_line() {
        assert_eq!(
            budget("10usd/month").unwrap(),
            json!({"usd": 10.0, "period": "month"})
        );
        assert_eq!(
            budget("2000000tokens/day").unwrap(),
            json!({"tokens": 2000000, "period": "day"})
        );
        assert_eq!(
            budget("5 requests/week").unwrap(),
            json!({"requests": 5, "period": "week"})
        );
        assert!(budget("10/month").is_err());
        assert!(budget("10usd").is_err());
        assert!(budget("tenusd/day").is_err());
    }
}
