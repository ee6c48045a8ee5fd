//! The command-line contract every daemon keeps: `--help`, `--version`, `--check-config` with a
//! clear error for an unknown key and for a missing password file (exit 78), a bad command line
//! (exit 64). Each daemon's
//! `tests/cli.rs` calls [`check_contract`] on its own binary.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Result, ensure};

use crate::process::TempDir;

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    // The caller's environment must not leak a config into the test.
    for (k, _) in std::env::vars() {
        if k.starts_with("BACKUP_AGENT_")
            || k.starts_with("HEALTH_AGENT_")
            || k.starts_with("SENTINEL_WATCH_")
            || k.starts_with("POOL_EXPORTER_")
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    Ok(cmd.output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `--check-config` on a config file holding `toml`.
fn check_config(bin: &Path, toml: &str) -> Result<Output> {
    let dir = TempDir::new("check-config")?;
    let file = dir.path().join("config.toml");
    std::fs::write(&file, toml)?;
    run(
        bin,
        &["--check-config", "--config", &file.display().to_string()],
        &[],
    )
}

/// The effective configuration `--check-config` prints for a config file holding `toml`, once it
/// exited 0.
pub fn effective_config(bin: &Path, toml: &str) -> Result<String> {
    let out = check_config(bin, toml)?;
    ensure!(out.status.success(), "--check-config: {}", text(&out));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `--check-config` says of a config file holding `toml`, once it refused it as a config
/// error (exit 78).
pub fn refused_config(bin: &Path, toml: &str) -> Result<String> {
    let out = check_config(bin, toml)?;
    ensure!(
        out.status.code() == Some(78),
        "--check-config: exit {:?}, not 78: {}",
        out.status.code(),
        text(&out)
    );
    Ok(text(&out))
}

/// Checks `--help`, `--version` and `--check-config` of a daemon binary. `prefix` is its env
/// prefix (`POOL_EXPORTER`); `secret_toml` is a config file setting one of its passwords, with
/// `{KEY}` standing for `password`/`password_file` and `{VALUE}` for the value.
pub fn check_contract(bin: &Path, name: &str, prefix: &str, secret_toml: &str) -> Result<()> {
    let help = run(bin, &["--help"], &[])?;
    ensure!(help.status.success(), "--help failed: {}", text(&help));
    let h = text(&help);
    ensure!(
        h.contains("--check-config") && h.contains("--config"),
        "--help lacks flags: {h}"
    );
    ensure!(
        h.contains(&format!("{prefix}_CONFIG")),
        "--help does not name {prefix}_CONFIG: {h}"
    );

    let version = run(bin, &["--version"], &[])?;
    ensure!(version.status.success(), "--version failed");
    ensure!(
        text(&version).contains(name) && text(&version).contains(env!("CARGO_PKG_VERSION")),
        "--version says {}",
        text(&version)
    );

    // Defaults are a valid config, printed as TOML.
    let ok = run(bin, &["--check-config"], &[])?;
    ensure!(
        ok.status.code() == Some(0),
        "--check-config on defaults: {}",
        text(&ok)
    );
    ensure!(
        text(&ok).contains("listen = "),
        "no effective config printed: {}",
        text(&ok)
    );

    // A command line that does not parse: EX_USAGE (64), never a monitoring state's 0-3.
    let usage = run(bin, &["--no-such-flag"], &[])?;
    ensure!(
        usage.status.code() == Some(64),
        "bad command line: exit {:?}: {}",
        usage.status.code(),
        text(&usage)
    );

    let dir = TempDir::new("cli")?;
    // An unknown key in the file: exit 78, the key and the file named.
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlisten_typo = 1\n")?;
    let f = file.display().to_string();
    let bad = run(bin, &["--check-config", "--config", &f], &[])?;
    let t = text(&bad);
    ensure!(
        bad.status.code() == Some(78),
        "unknown key: exit {:?}: {t}",
        bad.status.code()
    );
    ensure!(
        t.contains("listen_typo") && t.contains(&f),
        "unknown key not named with its file: {t}"
    );

    // An unknown key from the environment: the variable named.
    let var = format!("{prefix}_NO_SUCH_KEY");
    let bad = run(bin, &["--check-config"], &[(&var, "1")])?;
    let t = text(&bad);
    ensure!(
        bad.status.code() == Some(78),
        "unknown env key: exit {:?}: {t}",
        bad.status.code()
    );
    ensure!(t.contains(&var), "unknown env key not named: {t}");

    // A password file that does not exist: exit 78, the key and the path named.
    let with_secret = |key: &str, value: &str| -> Result<String> {
        let p = dir.path().join(format!("secret-{key}.toml"));
        std::fs::write(
            &p,
            secret_toml.replace("{KEY}", key).replace("{VALUE}", value),
        )?;
        Ok(p.display().to_string())
    };
    let missing = dir.path().join("no-such-secret").display().to_string();
    let bad = run(
        bin,
        &[
            "--check-config",
            "-c",
            &with_secret("password_file", &missing)?,
        ],
        &[],
    )?;
    let t = text(&bad);
    ensure!(
        bad.status.code() == Some(78),
        "missing password file: exit {:?}: {t}",
        bad.status.code()
    );
    ensure!(
        t.contains(&missing) && t.contains("password_file"),
        "missing password file not named: {t}"
    );

    // A secret is masked in the printed config, given inline or as a file.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "hunter2-very-secret\n")?;
    for (key, value) in [
        ("password", "hunter2-very-secret".to_string()),
        ("password_file", secret.display().to_string()),
    ] {
        let shown = run(
            bin,
            &["--check-config", "-c", &with_secret(key, &value)?],
            &[],
        )?;
        ensure!(shown.status.code() == Some(0), "{key}: {}", text(&shown));
        ensure!(
            !text(&shown).contains("hunter2"),
            "secret printed: {}",
            text(&shown)
        );
    }
    Ok(())
}

/// Starts the daemon with `/metrics` on a free port, checks `/metrics` (with its build info gauge),
/// `/healthz` and `/readyz`, then SIGTERM: it must exit 0 within 10 s.
pub fn check_serves(
    bin: &Path,
    prefix: &str,
    build_info: &str,
    extra_env: &[(&str, &str)],
) -> Result<()> {
    let port = crate::process::free_port()?;
    let dir = TempDir::new("serve")?;
    let listen_var = format!("{prefix}_LISTEN");
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(bin);
    cmd.env(&listen_var, &listen)
        .envs(extra_env.iter().copied())
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    let get = |path: &str| crate::http::get(&listen, path);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let metrics = loop {
        match get("/metrics") {
            Ok((200, body)) => break body,
            _ if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                anyhow::bail!("{} did not serve /metrics on {listen}", bin.display());
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    let result = (|| {
        ensure!(
            metrics.contains(&format!("{build_info}_build_info")),
            "no build info: {metrics}"
        );
        ensure!(get("/healthz")?.0 == 200, "/healthz");
        let ready_deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while get("/readyz")?.0 != 200 {
            ensure!(
                std::time::Instant::now() < ready_deadline,
                "/readyz never 200"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        ensure!(get("/nope")?.0 == 404, "/nope");
        Ok(())
    })();
    crate::process::send(child.id(), libc::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("{} did not stop within 10 s of SIGTERM", bin.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    result?;
    ensure!(status.success(), "exit after SIGTERM: {status}");
    Ok(())
}
