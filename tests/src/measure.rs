//! Measuring commands for benchmarks: wall time and peak memory under GNU time, sizes on disk.

use std::path::Path;
use std::process::Command;

/// Runs a command under GNU time (as the postgres user when `as_postgres`): (seconds, max RSS
/// KiB). Panics with its output on failure.
pub fn timed(as_postgres: bool, program: &str, args: &[&str], env: &[(&str, &str)]) -> (f64, u64) {
    let mut cmd = if as_postgres {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "/usr/bin/time",
        ]);
        c
    } else {
        Command::new("/usr/bin/time")
    };
    cmd.args(["-f", "TIMED %e %M", program])
        .args(args)
        .envs(env.iter().copied());
    let out = cmd.output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {err}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("TIMED "))
        .expect("GNU time output");
    let mut f = line.split_whitespace().skip(1);
    let secs = f.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let kib = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (secs, kib)
}

/// Bytes under `p` (`du -sb`).
pub fn du(p: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-sb"])
        .arg(p)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
