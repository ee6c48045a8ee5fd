//! Append-only logfmt files that operators tail: `health.log`, `backup.log`, the sentinel event log.
//!
//! One event per line, written with a single `write` on a file opened with `O_APPEND` (so lines from
//! several writers never interleave), flushed per line, and reopened when the file was moved away or
//! deleted (logrotate's default `create` mode). Values are quoted and escaped so that [`parse`]
//! always gives back what was written, and every value passes through [`redact`] so that a password
//! or the credentials of a DSN never reach the file.

use std::fmt::{self, Display, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::MASK;

/// One line: `ts=<RFC 3339> event=<event> key=value ...`.
#[derive(Clone, Debug)]
pub struct Line {
    fields: Vec<(String, String)>,
}

impl Line {
    pub fn new(event: &str) -> Self {
        Self::at(SystemTime::now(), event)
    }

    pub fn at(ts: SystemTime, event: &str) -> Self {
        Self {
            fields: vec![
                (
                    "ts".to_string(),
                    humantime::format_rfc3339_millis(ts).to_string(),
                ),
                ("event".to_string(), event.to_string()),
            ],
        }
    }

    /// Adds a field. A key that names a secret gets the mask whatever its value.
    pub fn field(mut self, key: &str, value: impl Display) -> Self {
        let key = sanitize_key(key);
        let lower = key.to_ascii_lowercase();
        let value = if ["password", "secret", "token"]
            .iter()
            .any(|s| lower.contains(s))
            && !lower.ends_with("_file")
        {
            MASK.to_string()
        } else {
            redact(&value.to_string())
        };
        self.fields.push((key, value));
        self
    }

    /// Adds a field only when there is a value.
    pub fn field_opt(self, key: &str, value: Option<impl Display>) -> Self {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
}

impl Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            write!(f, "{k}=")?;
            write_value(f, v)?;
        }
        Ok(())
    }
}

fn sanitize_key(key: &str) -> String {
    let k: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if k.is_empty() { "_".to_string() } else { k }
}

fn needs_quotes(v: &str) -> bool {
    v.is_empty()
        || v.chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control())
}

fn write_value(f: &mut impl fmt::Write, v: &str) -> fmt::Result {
    if !needs_quotes(v) {
        return f.write_str(v);
    }
    f.write_char('"')?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Masks credentials in free text: the password of a URL (`scheme://user:pw@host`) and the value
/// of `password=...` in a conninfo string.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // URLs: scheme://user:password@host -> scheme://user:********@host
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    // conninfo: password=xxx (up to whitespace, or a quoted value)
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        let (head, tail) = rest.split_at(i + "password=".len());
        result.push_str(head);
        let end = if let Some(q) = tail.strip_prefix('\'') {
            q.find('\'').map(|j| j + 2).unwrap_or(tail.len())
        } else {
            tail.find(char::is_whitespace).unwrap_or(tail.len())
        };
        result.push_str(MASK);
        rest = &tail[end..];
    }
    result.push_str(rest);
    result
}

/// Parses one logfmt line back into its fields.
pub fn parse(line: &str) -> Result<Vec<(String, String)>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\n').chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(fields);
        }
        let mut key = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(' ') | None => return Err(format!("key {key:?} without a value")),
                Some(c) => key.push(c),
            }
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in value of {key}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('u') => {
                            if chars.next() != Some('{') {
                                return Err(format!("bad \\u escape in value of {key}"));
                            }
                            let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                            let c = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| format!("bad \\u escape in value of {key}"))?;
                            value.push(c);
                        }
                        other => return Err(format!("bad escape {other:?} in value of {key}")),
                    },
                    Some(c) => value.push(c),
                }
            }
            if !matches!(chars.peek(), None | Some(' ')) {
                return Err(format!("garbage after quoted value of {key}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if c == '"' || c == '=' {
                    return Err(format!("unquoted {c:?} in value of {key}"));
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((key, value));
    }
}

struct Open {
    file: File,
    dev: u64,
    ino: u64,
}

/// An append-only logfmt file. Cheap to share behind an `Arc`.
pub struct LogFile {
    path: PathBuf,
    open: Mutex<Option<Open>>,
}

impl LogFile {
    /// Opens (creating the file and its directory when missing). Fails when the path is unusable,
    /// so that a daemon finds out at startup, not at the first event.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let f = Self {
            open: Mutex::new(Some(open_append(&path)?)),
            path,
        };
        Ok(f)
    }

    /// Opens at the first line written: for a command that may never write one (a restore), so
    /// that it neither creates the file nor needs the right to.
    pub fn deferred(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            open: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line. Reopens first when the file at `path` is no longer the one held open.
    pub fn write(&self, line: &Line) -> io::Result<()> {
        let mut text = line.to_string();
        text.push('\n');
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let current = std::fs::metadata(&self.path).ok();
        let stale = match (&*guard, current) {
            (Some(o), Some(m)) => o.dev != m.dev() || o.ino != m.ino(),
            _ => true,
        };
        if stale {
            *guard = Some(open_append(&self.path)?);
        }
        let Some(o) = guard.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        o.file.write_all(text.as_bytes())?;
        o.file.flush()
    }

    /// Like [`LogFile::write`], but a failure is logged to the process log rather than returned:
    /// losing a line of a tailed file must not stop a daemon.
    pub fn emit(&self, line: Line) {
        if let Err(e) = self.write(&line) {
            tracing::error!(path = %self.path.display(), "cannot write log line: {e}: {line}");
        }
    }
}

fn open_append(path: &Path) -> io::Result<Open> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        // The log's own directory is the daemon's alone; the directories above it (often the
        // backup store) keep the modes they have or the umask gives.
        if let Some(up) = dir.parent()
            && !up.as_os_str().is_empty()
        {
            std::fs::create_dir_all(up).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", up.display()))
            })?;
        }
        if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(dir)
            && e.kind() != io::ErrorKind::AlreadyExists
        {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", dir.display()),
            ));
        }
    }
    // Lines name databases, hosts and users: readable by the daemon's user only.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    let m = file.metadata()?;
    Ok(Open {
        dev: m.dev(),
        ino: m.ino(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_values() {
        let values = [
            "plain",
            "",
            "two words",
            "a=b",
            "quote \" inside",
            "back\\slash",
            "new\nline\ttab",
            "bell\u{7}",
            "ünïcödé ✓",
        ];
        let mut line = Line::new("test");
        for (i, v) in values.iter().enumerate() {
            line = line.field(&format!("k{i}"), v);
        }
        let text = line.to_string();
        assert!(!text.contains('\n'));
        let parsed = parse(&text).expect("parses");
        assert_eq!(parsed.len(), values.len() + 2);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(parsed[i + 2], (format!("k{i}"), v.to_string()));
        }
        assert_eq!(parsed[1], ("event".to_string(), "test".to_string()));
    }

    #[test]
    fn never_writes_secrets() {
        let line = Line::new("x")
            .field("dsn", "postgres://app:hunter2@db:5432/app")
            .field("error", "connect host=db password=hunter2 user=app failed")
            .field("redis_password", "hunter2")
            .field("password_file", "/run/secrets/pw");
        let text = line.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("postgres://app:********@db:5432/app"),
            "{text}"
        );
        assert!(text.contains("password_file=/run/secrets/pw"), "{text}");
        assert_eq!(redact("redis://:pw@h:1"), "redis://:********@h:1");
        assert_eq!(
            redact("no credentials http://host:80/x"),
            "no credentials http://host:80/x"
        );
        assert_eq!(redact("password='a b' x"), "password=******** x");
    }

    #[test]
    fn parse_rejects_broken_lines() {
        assert!(parse("a=\"unterminated").is_err());
        assert!(parse("lonely").is_err());
        assert!(parse("a=b\"c").is_err());
        assert_eq!(parse("").expect("empty"), vec![]);
    }

    #[test]
    fn reopens_after_logrotate_moves_the_file() {
        let dir = std::env::temp_dir().join(format!("outrigger-logfmt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("logs/health.log");
        let log = LogFile::open(&path).expect("opens");
        log.write(&Line::new("one")).expect("writes");
        let rotated = dir.join("logs/health.log.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        log.write(&Line::new("two")).expect("writes");
        std::fs::remove_file(&path).expect("delete");
        log.write(&Line::new("three")).expect("writes");
        let old = std::fs::read_to_string(&rotated).expect("read");
        let new = std::fs::read_to_string(&path).expect("read");
        assert_eq!(old.lines().count(), 1);
        assert!(old.contains("event=one"));
        assert_eq!(new.lines().count(), 1);
        assert!(new.contains("event=three"));
        for l in old.lines().chain(new.lines()) {
            parse(l).expect("parseable");
        }
        // Made by the daemon (first open and reopen after rotation): its user's alone.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("logs")), 0o700);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
