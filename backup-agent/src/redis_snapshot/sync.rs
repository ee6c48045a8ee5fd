//! Pulls an RDB over the network the way a replica's first sync does (what `redis-cli --rdb`
//! does): AUTH, `REPLCONF capa eof`, `REPLCONF rdb-only 1`,
//! `SYNC`, keepalive newlines skipped, then either `$<len>` or the diskless `$EOF:<mark>` framing.
//! The payload streams to the writer and through the RDB checker; nothing is staged on disk.

use std::time::{Duration, Instant};

use common::RedisSettings;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::rdb::RdbCheck;

/// How a transfer went.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// Payload bytes.
    pub bytes: u64,
    /// The server streamed without a file (`$EOF:` framing).
    pub diskless: bool,
    /// From SYNC to the first payload byte: the server's fork and save, or its
    /// `repl-diskless-sync-delay`.
    pub server_wait: Duration,
    /// From the first to the last payload byte.
    pub transfer: Duration,
}

/// Why a pull failed: the source, or the writer (storage).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    Source(String),
    #[error("storage: {0}")]
    Storage(std::io::Error),
}

/// The length of the diskless end mark.
pub const MARK_LEN: usize = 40;

/// How the payload after SYNC is framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// `$<len>`: exactly `len` payload bytes follow.
    Bulk(u64),
    /// `$EOF:<mark>`: the payload runs until the stream's last 40 bytes are the mark.
    Eof([u8; MARK_LEN]),
}

/// Parses a line read after SYNC (its `\r\n` already removed): `None` for a keepalive (a bare
/// newline, sent every second while the server forks and saves). An error reply, anything but a
/// header, or a length that is not plain decimal digits (no sign, no leading zero) is an error naming what came.
pub fn parse_header(line: &[u8]) -> Result<Option<Header>, String> {
    if line.is_empty() {
        return Ok(None);
    }
    let shown = String::from_utf8_lossy(line);
    if let Some(err) = line.strip_prefix(b"-") {
        return Err(format!("SYNC refused: {}", String::from_utf8_lossy(err)));
    }
    if let Some(mark) = line.strip_prefix(b"$EOF:") {
        return <[u8; MARK_LEN]>::try_from(mark)
            .map(|m| Some(Header::Eof(m)))
            .map_err(|_| format!("bad $EOF mark of {} bytes (must be {MARK_LEN})", mark.len()));
    }
    if let Some(len) = line.strip_prefix(b"$") {
        // Digits only, no leading zero: what Redis writes, and the one spelling of each length.
        let canonical = !len.is_empty()
            && len.len() <= 20
            && len.iter().all(u8::is_ascii_digit)
            && (len.len() == 1 || len[0] != b'0');
        if !canonical {
            return Err(format!("bad bulk header {shown:.40}"));
        }
        return std::str::from_utf8(len)
            .ok()
            .and_then(|l| l.parse().ok())
            .map(|n| Some(Header::Bulk(n)))
            .ok_or_else(|| format!("bad bulk header {shown:.40}"));
    }
    Err(format!("unexpected reply to SYNC: {shown:.80}"))
}

/// The diskless framing: bytes go in as they are read; what cannot be part of the end mark comes
/// out. The mark is looked for at the end of each read, as a Redis replica does.
pub struct EofStream {
    mark: [u8; MARK_LEN],
    pending: Vec<u8>,
    ready: usize,
}

impl EofStream {
    pub fn new(mark: [u8; MARK_LEN]) -> Self {
        EofStream {
            mark,
            pending: Vec::new(),
            ready: 0,
        }
    }

    /// Adds one read's bytes; true when they end with the mark (the payload is complete once
    /// [`EofStream::ready`] has been taken).
    pub fn push(&mut self, data: &[u8]) -> bool {
        self.pending.extend_from_slice(data);
        self.ready = self.pending.len().saturating_sub(MARK_LEN);
        self.pending.len() >= MARK_LEN && self.pending.ends_with(&self.mark)
    }

    /// Payload bytes that are certain now.
    pub fn ready(&self) -> &[u8] {
        &self.pending[..self.ready]
    }

    /// Drops what [`EofStream::ready`] returned.
    pub fn consume(&mut self) {
        self.pending.drain(..self.ready);
        self.ready = 0;
    }
}

/// Pulls one RDB from `node` into `out`, feeding `check`. `idle` bounds every wait for the server
/// (keepalives arrive every second while it saves). `progress(bytes, total)`.
pub async fn pull<W: AsyncWrite + Unpin>(
    node: &RedisSettings,
    idle: Duration,
    out: &mut W,
    check: &mut RdbCheck,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<Pulled, PullError> {
    let src = |what: String| PullError::Source(format!("{node}: {what}"));
    let tcp = tokio::time::timeout(
        node.timeout,
        TcpStream::connect((node.host.as_str(), node.port)),
    )
    .await
    .map_err(|_| src(format!("connect: no answer within {:?}", node.timeout)))?
    .map_err(|e| src(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut conn = BufReader::with_capacity(256 * 1024, tcp);

    let password = common::config::resolve_secret(
        "redis.password",
        node.password.as_ref(),
        node.password_file.as_deref(),
    )
    .map_err(|e| src(e.to_string()))?;
    if let Some(pw) = &password {
        let mut args = vec!["AUTH"];
        if let Some(u) = &node.username {
            args.push(u);
        }
        args.push(pw.expose());
        let reply = command(&mut conn, &args, node.timeout).await.map_err(src)?;
        if !reply.starts_with('+') {
            return Err(src(format!(
                "AUTH refused: {}",
                reply.trim_start_matches('-')
            )));
        }
    }
    for args in [["REPLCONF", "capa", "eof"], ["REPLCONF", "rdb-only", "1"]] {
        // Older servers refuse these; the transfer still works.
        let reply = command(&mut conn, &args, node.timeout).await.map_err(src)?;
        if reply.starts_with("-NOAUTH") || reply.starts_with("-NOPERM") {
            return Err(src(format!(
                "{} (the user needs the SYNC and REPLCONF commands)",
                reply.trim_start_matches('-')
            )));
        }
    }
    conn.get_mut()
        .write_all(b"SYNC\r\n")
        .await
        .map_err(|e| src(format!("sending SYNC: {e}")))?;
    let asked = Instant::now();

    // The header, after any keepalive newlines.
    let header = loop {
        let line = read_line(&mut conn, idle).await.map_err(|e| {
            src(format!(
                "waiting for the snapshot ({:.1}s after SYNC): {e}",
                asked.elapsed().as_secs_f64()
            ))
        })?;
        if let Some(h) = parse_header(&line).map_err(src)? {
            break h;
        }
    };
    let server_wait = asked.elapsed();
    let started = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    let diskless;
    match header {
        Header::Eof(mark) => {
            diskless = true;
            let mut eof = EofStream::new(mark);
            loop {
                let n = read_idle(&mut conn, &mut buf, idle).await.map_err(|e| {
                    src(format!(
                        "after {} bytes of a diskless snapshot: {e}",
                        check.size()
                    ))
                })?;
                if n == 0 {
                    return Err(src(format!(
                        "connection closed after {} bytes of a diskless snapshot (end mark not seen)",
                        check.size()
                    )));
                }
                let done = eof.push(&buf[..n]);
                emit(eof.ready(), out, check).await?;
                eof.consume();
                if done {
                    break;
                }
                progress(check.size(), None);
            }
        }
        Header::Bulk(len) => {
            diskless = false;
            let mut left = len;
            while left > 0 {
                let want = (buf.len() as u64).min(left) as usize;
                let n = read_idle(&mut conn, &mut buf[..want], idle)
                    .await
                    .map_err(|e| src(format!("after {} of {len} bytes: {e}", len - left)))?;
                if n == 0 {
                    return Err(src(format!(
                        "connection closed after {} of {len} bytes",
                        len - left
                    )));
                }
                emit(&buf[..n], out, check).await?;
                left -= n as u64;
                progress(len - left, Some(len));
            }
        }
    }
    progress(check.size(), Some(check.size()));
    Ok(Pulled {
        bytes: check.size(),
        diskless,
        server_wait,
        transfer: started.elapsed(),
    })
}

async fn read_idle(
    conn: &mut BufReader<TcpStream>,
    buf: &mut [u8],
    idle: Duration,
) -> std::io::Result<usize> {
    match tokio::time::timeout(idle, conn.read(buf)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no data for {idle:?}"),
        )),
    }
}

async fn emit<W: AsyncWrite + Unpin>(
    data: &[u8],
    out: &mut W,
    check: &mut RdbCheck,
) -> Result<(), PullError> {
    check.update(data);
    out.write_all(data).await.map_err(PullError::Storage)
}

/// Sends one command and reads its one-line reply (`+OK`, `-ERR ...`).
async fn command(
    conn: &mut BufReader<TcpStream>,
    args: &[&str],
    timeout: Duration,
) -> Result<String, String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.get_mut()
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{}: {e}", args[0]))?;
    read_line(conn, timeout)
        .await
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .map_err(|e| format!("{}: {e}", args[0]))
}

/// One reply line without its line end; a bare keepalive newline is empty.
async fn read_line(conn: &mut BufReader<TcpStream>, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = tokio::time::timeout(timeout, conn.read_until(b'\n', &mut line))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )
        })??;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if line.len() > 4096 {
        return Err(std::io::Error::other("reply line too long"));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_strict() {
        assert_eq!(parse_header(b""), Ok(None));
        assert_eq!(parse_header(b"$12345"), Ok(Some(Header::Bulk(12345))));
        let mark = [b'a'; MARK_LEN];
        let mut eof = b"$EOF:".to_vec();
        eof.extend_from_slice(&mark);
        assert_eq!(parse_header(&eof), Ok(Some(Header::Eof(mark))));
        // "$087" was found by the sync_frame fuzz target.
        for bad in [
            &b"$+5"[..],
            b"$087",
            b"$-1",
            b"$",
            b"$ 5",
            b"$99999999999999999999999",
            b"+OK",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_header(b"-ERR no")
                .expect_err("error reply")
                .contains("SYNC refused: ERR no")
        );
        assert!(
            parse_header(b"$EOF:short")
                .expect_err("short mark")
                .contains("5 bytes")
        );
    }

    #[test]
    fn the_end_mark_is_found_across_reads_and_dropped() {
        let mark = *b"0123456789012345678901234567890123456789";
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = payload.clone();
        stream.extend_from_slice(&mark);
        for chunk in [1, 7, 39, 40, 41, 333, stream.len()] {
            let mut eof = EofStream::new(mark);
            let mut got = Vec::new();
            let mut done = false;
            for part in stream.chunks(chunk) {
                assert!(!done, "data after the mark (chunk {chunk})");
                done = eof.push(part);
                got.extend_from_slice(eof.ready());
                eof.consume();
            }
            assert!(done, "chunk {chunk}");
            assert_eq!(got, payload, "chunk {chunk}");
        }
    }
}
