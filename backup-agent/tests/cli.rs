//! The command-line contract: --help, --version, --check-config (unknown key, missing password file).

#[test]
fn help_version_and_check_config() {
    harness::cli::check_contract(
        std::path::Path::new(env!("CARGO_BIN_EXE_backup-agent")),
        "backup-agent",
        "BACKUP_AGENT",
        "[postgres]\n{KEY} = \"{VALUE}\"\n",
    )
    .expect("CLI contract");
}

#[test]
fn serves_metrics_health_and_stops_on_sigterm() {
    harness::cli::check_serves(
        std::path::Path::new(env!("CARGO_BIN_EXE_backup-agent")),
        "BACKUP_AGENT",
        "backup_agent",
        // No PostgreSQL here: without the archiver and a first backup to do, the daemon is ready
        // (its readiness with them is tested against a real server in postgres.rs).
        &[
            ("BACKUP_AGENT_WAL__ENABLED", "false"),
            ("BACKUP_AGENT_SCHEDULE__INITIAL_FULL", "false"),
        ],
    )
    .expect("metrics server");
}

/// `keygen --output FILE`: the identity lands in a new 0600 file (never over an existing one,
/// never through a symlink); stdout has only the public key.
#[test]
fn keygen_writes_the_identity_0600_and_never_over_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = harness::process::TempDir::new("keygen").expect("dir");
    let key = dir.path().join("backup.key");
    let run = |p: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_backup-agent"))
            .arg("keygen")
            .arg("--output")
            .arg(p)
            .output()
            .expect("runs")
    };
    let out = run(&key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        public.starts_with("age1") && !public.contains("SECRET"),
        "{public}"
    );
    let text = std::fs::read_to_string(&key).expect("identity");
    assert!(
        text.contains("AGE-SECRET-KEY-") && text.contains(&public),
        "{text}"
    );
    let mode = std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Not over an existing file.
    let again = run(&key);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&key).expect("identity"), text);
    // Not through a symlink.
    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).expect("symlink");
    assert!(!run(&link).status.success());
    assert!(!dir.path().join("elsewhere").exists());
}

/// `storage.mode`: 0600 by default, and as people write it: a quoted octal string or TOML's octal integer; a mode with
/// execute bits or one that locks the agent out of its own files is refused, naming the key.
#[test]
fn storage_mode_is_checked() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_backup-agent"));
    for (toml, shown) in [
        // Private unless said otherwise.
        ("", "mode = \"0600\""),
        ("[storage]\nmode = \"0640\"\n", "mode = \"0640\""),
        ("[storage]\nmode = 0o640\n", "mode = \"0640\""),
    ] {
        let effective = harness::cli::effective_config(bin, toml).expect("accepted");
        assert!(effective.contains(shown), "{toml:?}: {effective}");
    }
    for (bad, why) in [
        ("\"0755\"", "execute or special bits"),
        ("\"0400\"", "does not let the owner read and write"),
        ("\"rw-r-----\"", "not an octal mode"),
    ] {
        let err = harness::cli::refused_config(bin, &format!("[storage]\nmode = {bad}\n"))
            .expect("refused");
        assert!(
            err.contains("storage.mode") && err.contains(why),
            "{bad}: {err}"
        );
    }
}

/// The daemon builds its job context (storage client, codec with the encryption keys) once, at
/// start: a passphrase file it cannot read stops it there, naming the file, instead of failing
/// every backup from the first 02:00 on while it looks healthy.
#[test]
fn an_unreadable_encryption_key_stops_the_daemon_at_start() {
    let dir = harness::process::TempDir::new("ctx").expect("dir");
    let missing = dir.path().join("no-such-passphrase");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_backup-agent"))
        .env("BACKUP_AGENT_LISTEN", "127.0.0.1:0")
        .env("BACKUP_AGENT_WAL__ENABLED", "false")
        .env("BACKUP_AGENT_SCHEDULE__INITIAL_FULL", "false")
        .env("BACKUP_AGENT_STORAGE__PATH", dir.path().join("storage"))
        .env("BACKUP_AGENT_LOG_FILE", dir.path().join("logs/backup.log"))
        .env("BACKUP_AGENT_ENCRYPTION__PASSPHRASE_FILE", &missing)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = status.expect("the daemon still ran 20 s after start with an unreadable key");
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("encryption.passphrase_file") && text.contains("no-such-passphrase"),
        "{text}"
    );
}
