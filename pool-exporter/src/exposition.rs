//! Metric families built per scrape and rendered in the Prometheus text format 0.0.4 — the format
//! prometheus-community's pgbouncer_exporter serves, so that a swap changes nothing downstream.
//!
//! A scrape of 500 pools makes some 14 000 series. Labels are rendered once per source row into a
//! shared [`LabelSet`] that every family of that row points to, so a scrape allocates per row, not
//! per series.

use std::fmt::Write as _;
use std::sync::Arc;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// Label pairs already rendered as `k="v",k2="v2"` (escaped), shared by the series of one row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSet(Arc<str>);

impl LabelSet {
    /// Renders pairs, escaping values.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut s = String::new();
        for (k, v) in pairs {
            push_pair(&mut s, k, v);
        }
        Self(s.into())
    }

    /// This set with more pairs after it.
    pub fn with<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut s = String::from(&*self.0);
        for (k, v) in pairs {
            push_pair(&mut s, k, v);
        }
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pairs, unescaped (for tests and lookups; the hot path never parses).
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = &*self.0;
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim_start_matches(',').to_string();
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let mut end = rest.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => break,
                    },
                    '"' => {
                        end = eq + 2 + i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            out.push((key, value));
            rest = &rest[end.min(rest.len())..];
        }
        out
    }

    /// The value of one label.
    pub fn get(&self, key: &str) -> Option<String> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

fn push_pair(s: &mut String, k: &str, v: &str) {
    if !s.is_empty() {
        s.push(',');
    }
    s.push_str(k);
    s.push_str("=\"");
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
}

/// One metric family: name, help, type, and its series.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(LabelSet, f64)>,
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

    /// The value of the first series whose labels include all of `labels`.
    pub fn find(&self, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(l, _)| {
                let pairs = l.pairs();
                labels
                    .iter()
                    .all(|(k, v)| pairs.iter().any(|(pk, pv)| pk == k && pv == v))
            })
            .map(|(_, v)| *v)
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

    /// Series in all families.
    pub fn series(&self) -> usize {
        self.0.iter().map(|f| f.samples.len()).sum()
    }
}

impl IntoIterator for Families {
    type Item = Family;
    type IntoIter = std::vec::IntoIter<Family>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Renders families. A family without series this scrape still gets its HELP and TYPE lines, so
/// that every name the exporter can produce is visible (Prometheus ignores sample-less families).
pub fn render(families: &Families) -> String {
    let size: usize = families
        .iter()
        .map(|f| {
            f.help.len()
                + 2 * f.name.len()
                + 32
                + f.samples
                    .iter()
                    .map(|(l, _)| f.name.len() + l.as_str().len() + 24)
                    .sum::<usize>()
        })
        .sum();
    let mut out = String::with_capacity(size);
    for f in families.iter() {
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        out.push_str("# HELP ");
        out.push_str(f.name);
        out.push(' ');
        for c in f.help.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push_str("\n# TYPE ");
        out.push_str(f.name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
        for (labels, value) in &f.samples {
            out.push_str(f.name);
            if !labels.as_str().is_empty() {
                out.push('{');
                out.push_str(labels.as_str());
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, *value);
            out.push('\n');
        }
    }
    out
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
        let l = LabelSet::new([("a", "q\"u\\o\nte")]);
        f.samples.push((l.clone(), 3.0));
        f.samples.push((LabelSet::default(), 0.25));
        fs.add(f);
        fs.add(Family::new("empty", "h", Kind::Gauge));
        let text = render(&fs);
        assert_eq!(
            text,
            "# HELP x_total help \\\\ me\n# TYPE x_total counter\nx_total{a=\"q\\\"u\\\\o\\nte\"} 3\nx_total 0.25\n# HELP empty h\n# TYPE empty gauge\n"
        );
        assert_eq!(
            l.pairs(),
            vec![("a".to_string(), "q\"u\\o\nte".to_string())]
        );
        let l2 = l.with([("b", ""), ("c", "x,y=\"z\"")]);
        assert_eq!(l2.get("b").as_deref(), Some(""));
        assert_eq!(l2.get("c").as_deref(), Some("x,y=\"z\""));
    }
}
