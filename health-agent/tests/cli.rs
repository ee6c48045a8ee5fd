//! The command-line contract: --help, --version, --check-config (unknown key, missing password file).

#[test]
fn help_version_and_check_config() {
    harness::cli::check_contract(
        std::path::Path::new(env!("CARGO_BIN_EXE_health-agent")),
        "health-agent",
        "HEALTH_AGENT",
        "[[checks]]\nname = \"r\"\nkind = \"redis\"\n[checks.conn]\n{KEY} = \"{VALUE}\"\n",
    )
    .expect("CLI contract");
}

#[test]
fn serves_metrics_health_and_stops_on_sigterm() {
    harness::cli::check_serves(
        std::path::Path::new(env!("CARGO_BIN_EXE_health-agent")),
        "HEALTH_AGENT",
        "health_agent",
        &[],
    )
    .expect("metrics server");
}

/// `--check-config` shows what a partial pgbouncer `[checks.conn]` table becomes: the admin
/// console's port and database for the keys it does not give.
#[test]
fn check_config_shows_the_defaults_a_partial_conn_table_keeps() {
    let text = harness::cli::effective_config(
        std::path::Path::new(env!("CARGO_BIN_EXE_health-agent")),
        "[[checks]]\nname = \"pgb\"\nkind = \"pgbouncer\"\n[checks.conn]\nhost = \"pgb\"\nuser = \"stats\"\n",
    )
    .expect("--check-config");
    for want in [
        "host = \"pgb\"",
        "port = 6432",
        "user = \"stats\"",
        "dbname = \"pgbouncer\"",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

/// `POST /alerts` on the running daemon: Alertmanager's payload becomes lines in health.log and a
/// counter; a body that is not a payload is refused (400) and writes nothing; GET is refused.
#[test]
fn alerts_posted_by_alertmanager_land_in_health_log() {
    let dir = harness::process::TempDir::new("ha-alerts").expect("dir");
    let log = dir.path().join("logs/health.log");
    let listen = format!("127.0.0.1:{}", harness::process::free_port().expect("port"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_health-agent"))
        .env("HEALTH_AGENT_LISTEN", &listen)
        .env("HEALTH_AGENT_HEALTH_LOG", &log)
        .env_remove("HEALTH_AGENT_CONFIG")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let result = (|| -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while harness::http::get(&listen, "/healthz")
            .map(|r| r.0)
            .unwrap_or(0)
            != 200
        {
            anyhow::ensure!(std::time::Instant::now() < deadline, "no /healthz");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let payload = r#"{"version":"4","status":"firing","receiver":"webhook","alerts":[
            {"status":"firing","labels":{"alertname":"PgBouncerDown","severity":"critical","instance":"pool-exporter:9127"},
             "annotations":{"summary":"PgBouncer pgbouncer is down"},"startsAt":"2026-12-03T01:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"a1"},
            {"status":"resolved","labels":{"alertname":"BackupFailing","severity":"warning"},
             "annotations":{},"startsAt":"2026-12-03T00:00:00Z","endsAt":"2026-12-03T01:00:00Z","fingerprint":"b2"}]}"#;
        let (status, body) = harness::http::post(&listen, "/alerts", payload.as_bytes())?;
        anyhow::ensure!(status == 200, "POST /alerts: {status} {body}");
        let text = std::fs::read_to_string(&log)?;
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("event=alert")).collect();
        anyhow::ensure!(lines.len() == 2, "{text}");
        anyhow::ensure!(
            lines[0].contains("alertname=PgBouncerDown")
                && lines[0].contains("status=firing")
                && lines[0].contains("severity=critical")
                && lines[0].contains("label_instance=pool-exporter:9127"),
            "{}",
            lines[0]
        );
        anyhow::ensure!(
            lines[1].contains("alertname=BackupFailing")
                && lines[1].contains("status=resolved")
                && lines[1].contains("ends_at=2026-12-03T01:00:00Z"),
            "{}",
            lines[1]
        );
        let (status, body) = harness::http::post(&listen, "/alerts", b"{\"not\": 1}")?;
        anyhow::ensure!(
            status == 400 && body.contains("not an Alertmanager webhook payload"),
            "{status} {body}"
        );
        anyhow::ensure!(
            std::fs::read_to_string(&log)?
                .matches("event=alert")
                .count()
                == 2,
            "a refused body wrote lines"
        );
        anyhow::ensure!(
            harness::http::get(&listen, "/alerts")?.0 == 405,
            "GET /alerts"
        );
        let (_, metrics) = harness::http::get(&listen, "/metrics")?;
        for want in [
            "health_alerts_received_total{status=\"firing\"} 1",
            "health_alerts_received_total{status=\"resolved\"} 1",
        ] {
            anyhow::ensure!(metrics.contains(want), "{want} not in /metrics");
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.expect("POST /alerts");
}
