//! Metric families built per scrape and rendered in the Prometheus text format 0.0.4 — the format
//! prometheus-community's pgbouncer_exporter serves, so that a swap changes nothing downstream.

use std::fmt::Write as _;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// Labels of one series, in order.
pub type Labels = Vec<(String, String)>;

/// One metric family: name, help, type, and its series.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Labels, f64)>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }
}

/// Families from several sources merged by name, in first-seen order.
#[derive(Default, Debug)]
pub struct Families(Vec<Family>);

impl Families {
    pub fn add(&mut self, f: Family) {
        match self.0.iter_mut().find(|g| g.name == f.name) {
            Some(g) => g.samples.extend(f.samples),
            None => self.0.push(f),
        }
    }

    pub fn extend(&mut self, fs: impl IntoIterator<Item = Family>) {
        for f in fs {
            self.add(f);
        }
    }

    pub fn get(&self, name: &str) -> Option<&Family> {
        self.0.iter().find(|f| f.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Family> {
        self.0.iter()
    }
}

impl IntoIterator for Families {
    type Item = Family;
    type IntoIter = std::vec::IntoIter<Family>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Renders families (those without series are left out, as client_golang does).
pub fn render(families: &Families) -> String {
    let mut out = String::with_capacity(64 * 1024);
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    escape_label(&mut out, v);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, *value);
            out.push('\n');
        }
    }
    out
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_escapes() {
        let mut fs = Families::default();
        let mut f = Family::new("x_total", "help \\ me", Kind::Counter);
        f.samples
            .push((vec![("a".into(), "q\"u\\o\nte".into())], 3.0));
        f.samples.push((vec![], 0.25));
        fs.add(f);
        fs.add(Family::new("empty", "h", Kind::Gauge));
        let text = render(&fs);
        assert_eq!(
            text,
            "# HELP x_total help \\\\ me\n# TYPE x_total counter\nx_total{a=\"q\\\"u\\\\o\\nte\"} 3\nx_total 0.25\n"
        );
    }
}
