//! What a command prints on stdout: an aligned table for people (default) or one JSON document
//! for scripts (`--output json`), whose field names are part of the documented interface. Logs go
//! to stderr, never here.

use serde::Serialize;

/// `--output`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document (stable field names, see the docs of each command).
    Json,
}

/// The `--output` flag, for a subcommand.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct OutputArg {
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub output: Output,
}

impl OutputArg {
    pub fn is_json(&self) -> bool {
        self.output == Output::Json
    }
}

/// Prints `v` as pretty JSON and a newline on stdout.
pub fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Rows as JSON objects keyed by the lower-cased column names (`LAG_BYTES` -> `lag_bytes`), the
/// values as strings exactly as the table shows them.
pub fn rows_as_objects(headers: &[&str], rows: &[Vec<String>]) -> Vec<serde_json::Value> {
    rows.iter()
        .map(|r| {
            serde_json::Value::Object(
                headers
                    .iter()
                    .zip(r)
                    .map(|(h, v)| (h.to_ascii_lowercase(), serde_json::Value::String(v.clone())))
                    .collect(),
            )
        })
        .collect()
}
