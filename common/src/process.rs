//! The standard process metrics (the names Prometheus client libraries export):
//! `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, read from `/proc/self`
//! on each scrape. Linux only; elsewhere nothing is exported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The kernel reports /proc times in USER_HZ, 100 on every Linux architecture (what
/// `sysconf(_SC_CLK_TCK)` returns; Prometheus' procfs assumes the same).
const USER_HZ: f64 = 100.0;

/// One reading of the process' figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub start_time_seconds: f64,
}

/// (name, help, is a counter, value) for each standard process metric.
pub fn samples(s: &ProcessStats) -> [(&'static str, &'static str, bool, f64); 6] {
    [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            true,
            s.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            false,
            s.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            false,
            s.virtual_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            false,
            s.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            false,
            s.max_fds,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            false,
            s.start_time_seconds,
        ),
    ]
}

/// Reads this process' figures; `None` where /proc is not available.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // after[0] is field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = (num(14)? + num(15)?) / USER_HZ;
    let virtual_bytes = num(23)?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let resident_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
        .unwrap_or(0.0);
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as f64)
        .unwrap_or(0.0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let start_time_seconds = btime + num(22)? / USER_HZ;
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes,
        virtual_bytes,
        open_fds,
        max_fds,
        start_time_seconds,
    })
}

/// The process metrics as a registry collector (read per scrape).
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = read() else {
            return Ok(());
        };
        for (name, help, counter, value) in samples(&s) {
            if counter {
                let c = ConstCounter::new(value);
                let name = name.trim_end_matches("_total");
                c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
            } else {
                let g = ConstGauge::new(value);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read() {
        let s = read().expect("/proc/self");
        assert!(s.resident_bytes > 1e6, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds >= 3.0 && s.max_fds >= s.open_fds, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            s.start_time_seconds > now - 3600.0 && s.start_time_seconds <= now + 1.0,
            "{s:?}"
        );
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn the_collector_writes_the_standard_names() {
        let mut r = prometheus_client::registry::Registry::default();
        r.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
        for (name, _, counter, _) in samples(&ProcessStats::default()) {
            let kind = if counter { "counter" } else { "gauge" };
            let family = name.trim_end_matches("_total");
            assert!(text.contains(&format!("# TYPE {family} {kind}")), "{text}");
            assert!(
                text.contains(&format!("\n{name} ")),
                "{name} missing:\n{text}"
            );
        }
    }
}
