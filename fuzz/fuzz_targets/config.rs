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
    let path =
        std::env::temp_dir().join(format!("outrigger-fuzz-config-{}.toml", std::process::id()));
    if std::fs::write(&path, text.as_bytes()).is_err() {
        return;
    }
    load::<backup_agent::config::Config>(&path, &vars);
    load::<sentinel_watch::config::Config>(&path, &vars);
    load::<pool_exporter::config::Config>(&path, &vars);
    load::<health_agent::config::Config>(&path, &vars);
    let _ = std::fs::remove_file(&path);
});

fn load<C: common::config::DaemonConfig>(path: &std::path::Path, vars: &[(String, String)]) {
    let _ = common::config::load_from::<C>(C::ENV_PREFIX, Some(path), vars.iter().cloned());
}
