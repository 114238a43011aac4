//! Config loading: any text is a config or a list of errors, never a panic; what loads
//! can be shown redacted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| (name == "SET").then(|| "000123".to_string());
    match config::load_str(text, "fuzz.yaml", &lookup) {
        Ok(loaded) => {
            let _ = loaded.warnings;
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let shown = config::redacted(&v);
        let _ = serde_json::to_vec(&shown);
    }
});
