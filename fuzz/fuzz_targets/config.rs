//! The config loader: `${VAR:-default}` expansion, then TOML and the environment into each
//! daemon's settings. Property: any file text is loaded or refused with an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let vars = vec![
        ("HOST".to_string(), "db".to_string()),
        ("PORT".to_string(), "5432".to_string()),
    ];
    let _ = common::config::expand_vars(&text, &vars);
    let path = std::env::temp_dir().join(format!("outrigger-fuzz-config-{}.toml", std::process::id()));
    if std::fs::write(&path, text.as_bytes()).is_err() {
        return;
    }
    let _ = common::config::load_from::<backup_agent::config::Config>(
        "BACKUP_AGENT",
        Some(&path),
        vars.clone(),
    );
    let _ = common::config::load_from::<sentinel_watch::config::Config>(
        "SENTINEL_WATCH",
        Some(&path),
        vars.clone(),
    );
    let _ = common::config::load_from::<pool_exporter::config::Config>(
        "POOL_EXPORTER",
        Some(&path),
        vars.clone(),
    );
    let _ = common::config::load_from::<health_agent::config::Config>(
        "HEALTH_AGENT",
        Some(&path),
        vars,
    );
    let _ = std::fs::remove_file(&path);
});
