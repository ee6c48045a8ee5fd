//! Configuration loading, the same in every daemon.
//!
//! Layers, later wins: built-in defaults < TOML file (`--config PATH`, or `<PREFIX>_CONFIG`) <
//! environment variables `<PREFIX>_<KEY>` with nested keys joined by `__`
//! (`BACKUP_AGENT_POSTGRES__HOST=db`). A secret is given directly or through a `*_file` key
//! (`BACKUP_AGENT_POSTGRES__PASSWORD_FILE=/run/secrets/pg`, docker secrets). A key that does not
//! exist is an error that names the key and the file or variable it came from.
//!
//! A config file may refer to environment variables: `${NAME}` (an error when unset) or
//! `${NAME:-default}`, so that one file serves docker compose and `./dev up` alike
//! (`host = "${POSTGRES_HOST:-postgres}"`). `$$` is a literal `$`.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `--check-config` prints instead of a secret.
pub const MASK: &str = "********";

/// A configuration error. Its message names the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{key}: cannot read secret file {path}: {reason}")]
    SecretFile {
        key: String,
        path: PathBuf,
        reason: String,
    },
}

/// Implemented by each daemon's top-level config struct.
pub trait DaemonConfig: Serialize + DeserializeOwned + Default {
    /// Environment prefix without the trailing underscore, e.g. `BACKUP_AGENT`.
    const ENV_PREFIX: &'static str;

    /// Checks that go beyond the types: files that must exist, values that must agree.
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Loads a daemon's config from defaults, the file and the environment, then validates it.
pub fn load<C: DaemonConfig>(file: Option<&Path>) -> Result<C, ConfigError> {
    load_from(C::ENV_PREFIX, file, std::env::vars())
}

/// [`load`] with the environment given explicitly (tests).
pub fn load_from<C: DaemonConfig>(
    prefix: &str,
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<C, ConfigError> {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let config_var = format!("{prefix}_CONFIG");
    let file: Option<PathBuf> = file.map(Path::to_path_buf).or_else(|| {
        vars.iter()
            .find(|(k, v)| k == &config_var && !v.is_empty())
            .map(|(_, v)| PathBuf::from(v))
    });

    let mut figment = Figment::from(Serialized::defaults(C::default()));
    if let Some(path) = &file {
        let raw = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let text = expand_vars(&raw, &vars).map_err(|reason| ConfigError::File {
            path: path.clone(),
            reason,
        })?;
        // Parse once here so that a syntax error names the file and the line.
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(ConfigError::File {
                path: path.clone(),
                reason: e.to_string().trim_end().to_string(),
            });
        }
        figment = figment.merge(Toml::string(&text));
    }
    let env_prefix = format!("{prefix}_");
    let env_vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with(&env_prefix)
                && k != &config_var
                && !is_service_link(&k[env_prefix.len()..])
        })
        .collect();
    for (key, value) in &env_vars {
        let rest = &key[env_prefix.len()..];
        let path = rest.to_ascii_lowercase().replace("__", ".");
        figment = figment.merge(Serialized::default(&path, env_value(value)));
    }

    // Env values are text: a number or bool key parses it (lossy extraction), any other key
    // takes it verbatim (`0042`, quotes, spaces).
    let cfg: C = figment
        .extract_lossy()
        .map_err(|e| describe(e, file.as_deref(), &env_vars, &env_prefix))?;
    cfg.validate()?;
    Ok(cfg)
}

/// Replaces `${NAME}` and `${NAME:-default}` with values from `vars`; `$$` is a literal `$`.
/// Comment lines (starting with `#`) are left as they are.
pub fn expand_vars(text: &str, vars: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            expand_line(line, vars, &mut out).map_err(|e| format!("line {}: {e}", n + 1))?;
        }
    }
    Ok(out)
}

fn expand_line(line: &str, vars: &[(String, String)], out: &mut String) -> Result<(), String> {
    let mut rest = line;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or("unterminated ${")?;
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let value = vars
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.as_str());
            match (value, default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "${{{name}}} is not set (give a default with ${{{name}:-value}})"
                    ));
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(())
}

/// An env value: a TOML array or table literal (`["a","b"]`) is that; anything else is the text
/// exactly as given, which a number or bool key then parses (see `extract_lossy` above).
fn env_value(raw: &str) -> figment::value::Value {
    use figment::value::Value;
    let t = raw.trim();
    if t.starts_with('[') || t.starts_with('{') {
        if let Ok(v) = format!("v = {t}").parse::<toml::Table>()
            && let Some(v) = v.get("v")
            && let Ok(v) = Value::serialize(v)
        {
            return v;
        }
        // Bare words in a list, as people type them: `[app, sales]`.
        if let Ok(v @ (Value::Array(..) | Value::Dict(..))) = raw.parse::<Value>() {
            return v;
        }
    }
    Value::from(raw.to_string())
}

/// The variables Kubernetes injects for a Service named like the daemon (`<PREFIX>_PORT`,
/// `_PORT_<n>_TCP...`, `_SERVICE_HOST`, `_SERVICE_PORT...`): never configuration.
fn is_service_link(rest: &str) -> bool {
    if rest == "PORT" || rest == "SERVICE_HOST" || rest.starts_with("SERVICE_PORT") {
        return true;
    }
    rest.strip_prefix("PORT_").is_some_and(|r| {
        let (n, proto) = r.split_once('_').unwrap_or((r, ""));
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && ["TCP", "UDP", "SCTP"]
                .iter()
                .any(|p| proto == *p || proto.starts_with(&format!("{p}_")))
    })
}

fn describe(
    err: figment::Error,
    file: Option<&Path>,
    env_vars: &[(String, String)],
    env_prefix: &str,
) -> ConfigError {
    // Where did a key come from? The env var that sets it (or a table above it), else the file.
    let origin = |key: &str| {
        let var = env_vars.iter().map(|(k, _)| k).find(|k| {
            let p = k[env_prefix.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            p == key || key.starts_with(&format!("{p}."))
        });
        match (var, file) {
            (Some(var), _) => format!("environment variable {var}"),
            (None, Some(f)) => format!("config file {}", f.display()),
            (None, None) => "built-in defaults".to_string(),
        }
    };
    let msgs: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            match &e.kind {
                figment::error::Kind::UnknownField(field, expected) => {
                    // figment's path already ends with the field; older releases did not.
                    let full = if key.is_empty() {
                        field.clone()
                    } else if e.path.last() == Some(field) {
                        key.clone()
                    } else {
                        format!("{key}.{field}")
                    };
                    format!(
                        "unknown key `{full}` in {}; expected one of: {}",
                        origin(&full),
                        expected.join(", ")
                    )
                }
                kind => {
                    let shown = if key.is_empty() { "(top level)" } else { &key };
                    format!("key `{shown}` in {}: {kind}", origin(&key))
                }
            }
        })
        .collect();
    ConfigError::Invalid(msgs.join("; "))
}

/// Prints the effective config as TOML with every secret masked.
pub fn to_masked_toml<C: Serialize>(cfg: &C) -> Result<String, ConfigError> {
    // Secrets serialize as the mask already (see [`Secret`]); nothing else is hidden.
    toml::to_string_pretty(cfg)
        .map_err(|e| ConfigError::Invalid(format!("cannot print config: {e}")))
}

/// A secret value: never printed, never serialized in clear.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The clear text, for the one place that sends it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Resolves a secret given either inline or as a file (`*_file`, docker secrets). `key` names the
/// config key for error messages. The file's trailing newline is dropped.
pub fn resolve_secret(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
            "{key} and {key}_file are both set; set only one"
        ))),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::SecretFile {
                key: format!("{key}_file"),
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            Ok(Some(Secret(
                text.trim_end_matches(['\n', '\r']).to_string(),
            )))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        host: String,
        port: u16,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
    }
    impl Default for Inner {
        fn default() -> Self {
            Self {
                host: "localhost".into(),
                port: 5432,
                password: None,
                password_file: None,
            }
        }
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        #[serde(with = "humantime_serde")]
        interval: Duration,
        names: Vec<String>,
        db: Inner,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Self {
                interval: Duration::from_secs(300),
                names: vec![],
                db: Inner::default(),
            }
        }
    }
    impl DaemonConfig for Cfg {
        const ENV_PREFIX: &'static str = "T";
        fn validate(&self) -> Result<(), ConfigError> {
            resolve_secret(
                "db.password",
                self.db.password.as_ref(),
                self.db.password_file.as_deref(),
            )
            .map(|_| ())
        }
    }

    fn tmpfile(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("outrigger-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_defaults_file_env() {
        let f = tmpfile(
            "a.toml",
            "interval = \"1m\"\n[db]\nhost = \"filehost\"\nport = 1\n",
        );
        let c: Cfg = load_from(
            "T",
            Some(&f),
            env(&[("T_DB__PORT", "6543"), ("OTHER", "x")]),
        )
        .expect("loads");
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.db.host, "filehost");
        assert_eq!(c.db.port, 6543);
        let c: Cfg = load_from("T", None, env(&[])).expect("defaults");
        assert_eq!(c, Cfg::default());
    }

    #[test]
    fn config_path_from_env_and_arrays_and_numeric_secrets() {
        let f = tmpfile("b.toml", "names = [\"a\"]\n");
        let c: Cfg = load_from(
            "T",
            None,
            env(&[
                ("T_CONFIG", f.to_str().expect("utf8")),
                ("T_DB__PASSWORD", "12345"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.names, vec!["a".to_string()]);
        assert_eq!(c.db.password.as_ref().map(Secret::expose), Some("12345"));
        for list in ["[\"x\", \"y\"]", "[x, y]", "[x,y]"] {
            let c: Cfg = load_from("T", None, env(&[("T_NAMES", list)])).expect("array");
            assert_eq!(c.names, vec!["x".to_string(), "y".to_string()], "{list}");
        }
    }

    #[test]
    fn env_text_is_taken_verbatim_by_string_keys() {
        // (variable, value, host, port, password)
        let cases: &[(&str, &str, &str, u16, Option<&str>)] = &[
            ("T_DB__HOST", "0042", "0042", 5432, None),
            ("T_DB__PASSWORD", "0042", "localhost", 5432, Some("0042")),
            (
                "T_DB__PASSWORD",
                "\"quoted\"",
                "localhost",
                5432,
                Some("\"quoted\""),
            ),
            (
                "T_DB__PASSWORD",
                " spaced out ",
                "localhost",
                5432,
                Some(" spaced out "),
            ),
            ("T_DB__PASSWORD", "true", "localhost", 5432, Some("true")),
            ("T_DB__PASSWORD", "1e3", "localhost", 5432, Some("1e3")),
            ("T_DB__HOST", "db.internal", "db.internal", 5432, None),
            ("T_DB__PORT", "6432", "localhost", 6432, None),
            ("T_DB__PORT", "06432", "localhost", 6432, None),
        ];
        for (var, value, host, port, password) in cases {
            let c: Cfg = load_from("T", None, env(&[(var, value)]))
                .unwrap_or_else(|e| panic!("{var}={value:?}: {e}"));
            assert_eq!(c.db.host, *host, "{var}={value:?}");
            assert_eq!(c.db.port, *port, "{var}={value:?}");
            assert_eq!(
                c.db.password.as_ref().map(Secret::expose),
                *password,
                "{var}={value:?}"
            );
        }
        let e = load_from::<Cfg>("T", None, env(&[("T_DB__PORT", "many")]))
            .expect_err("not a number")
            .to_string();
        assert!(e.contains("db.port") && e.contains("T_DB__PORT"), "{e}");
    }

    #[test]
    fn kubernetes_service_links_are_not_configuration() {
        for (var, value) in [
            ("T_PORT", "tcp://10.0.0.7:9400"),
            ("T_PORT_9400_TCP", "tcp://10.0.0.7:9400"),
            ("T_PORT_9400_TCP_ADDR", "10.0.0.7"),
            ("T_PORT_9400_TCP_PORT", "9400"),
            ("T_PORT_9400_TCP_PROTO", "tcp"),
            ("T_PORT_53_UDP", "udp://10.0.0.7:53"),
            ("T_SERVICE_HOST", "10.0.0.7"),
            ("T_SERVICE_PORT", "9400"),
            ("T_SERVICE_PORT_METRICS", "9400"),
        ] {
            let c: Cfg = load_from("T", None, env(&[(var, value)]))
                .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
            assert_eq!(c, Cfg::default(), "{var}");
        }
        // Not the Kubernetes forms: still configuration, still checked.
        for var in ["T_PORTS", "T_PORT_X_TCP", "T_PORT_9400_HTTP"] {
            let e = load_from::<Cfg>("T", None, env(&[(var, "1")]))
                .expect_err("unknown key")
                .to_string();
            assert!(e.contains("unknown key"), "{var}: {e}");
        }
    }

    #[test]
    fn unknown_key_names_key_and_source() {
        let f = tmpfile("c.toml", "[db]\nhots = \"typo\"\n");
        let e = load_from::<Cfg>("T", Some(&f), env(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("unknown key `db.hots`"), "{e}");
        assert!(e.contains(f.to_str().expect("utf8")), "{e}");
        let e = load_from::<Cfg>("T", None, env(&[("T_DB__PROT", "1")]))
            .expect_err("unknown env key")
            .to_string();
        assert!(e.contains("unknown key `db.prot`"), "{e}");
        assert!(e.contains("environment variable T_DB__PROT"), "{e}");
        let e = load_from::<Cfg>("T", None, env(&[("T_INTERVAL", "soon")]))
            .expect_err("bad duration")
            .to_string();
        assert!(e.contains("interval") && e.contains("T_INTERVAL"), "{e}");
    }

    #[test]
    fn file_refers_to_environment_variables() {
        let f = tmpfile(
            "e.toml",
            "# a comment with ${UNSET}\n[db]\nhost = \"${DB_HOST:-fallback}\"\nport = ${DB_PORT:-5432}\npassword = \"a$$b\"\n",
        );
        let c: Cfg = load_from("T", Some(&f), env(&[("DB_HOST", "10.0.0.1")])).expect("loads");
        assert_eq!(c.db.host, "10.0.0.1");
        assert_eq!(c.db.port, 5432);
        assert_eq!(c.db.password.as_ref().map(Secret::expose), Some("a$b"));
        let f = tmpfile("f.toml", "[db]\nhost = \"x\"\nport = ${NOPE}\n");
        let e = load_from::<Cfg>("T", Some(&f), env(&[]))
            .expect_err("unset")
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("${NOPE} is not set"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_and_missing_file_name_the_file() {
        let f = tmpfile("d.toml", "interval = \n");
        let e = load_from::<Cfg>("T", Some(&f), env(&[]))
            .expect_err("syntax")
            .to_string();
        assert!(e.contains("d.toml"), "{e}");
        let e = load_from::<Cfg>("T", Some(Path::new("/nonexistent/x.toml")), env(&[]))
            .expect_err("missing")
            .to_string();
        assert!(e.contains("/nonexistent/x.toml"), "{e}");
    }

    #[test]
    fn secret_file_resolved_and_missing_file_is_clear() {
        let s = tmpfile("secret", "hunter2\n");
        let c: Cfg = load_from(
            "T",
            None,
            env(&[("T_DB__PASSWORD_FILE", s.to_str().expect("utf8"))]),
        )
        .expect("loads");
        let got = resolve_secret(
            "db.password",
            c.db.password.as_ref(),
            c.db.password_file.as_deref(),
        )
        .expect("reads");
        assert_eq!(got.as_ref().map(Secret::expose), Some("hunter2"));
        let e = load_from::<Cfg>("T", None, env(&[("T_DB__PASSWORD_FILE", "/nope/pw")]))
            .expect_err("missing secret file")
            .to_string();
        assert!(
            e.contains("db.password_file") && e.contains("/nope/pw"),
            "{e}"
        );
    }

    #[test]
    fn masked_output_hides_secrets() {
        let mut c = Cfg::default();
        c.db.password = Some(Secret::new("hunter2"));
        let out = to_masked_toml(&c).expect("prints");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains(MASK), "{out}");
        assert!(out.contains("interval = \"5m\""), "{out}");
        assert_eq!(format!("{:?}", c.db.password), format!("Some({MASK})"));
    }
}
