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

const MARK_LEN: usize = 40;

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
        if line.is_empty() {
            continue;
        }
        if let Some(err) = line.strip_prefix('-') {
            return Err(src(format!("SYNC refused: {err}")));
        }
        if line.starts_with('$') {
            break line;
        }
        return Err(src(format!("unexpected reply to SYNC: {line:.80}")));
    };
    let server_wait = asked.elapsed();
    let started = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    let diskless;
    if let Some(mark) = header.strip_prefix("$EOF:") {
        diskless = true;
        let mark = mark.as_bytes();
        if mark.len() != MARK_LEN {
            return Err(src(format!("bad $EOF mark of {} bytes", mark.len())));
        }
        // Everything but the last 40 bytes is payload until those 40 bytes are the mark.
        let mut pending: Vec<u8> = Vec::with_capacity(buf.len() + MARK_LEN);
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
            pending.extend_from_slice(&buf[..n]);
            if pending.len() >= MARK_LEN && pending.ends_with(mark) {
                let body = pending.len() - MARK_LEN;
                emit(&pending[..body], out, check).await?;
                break;
            }
            if pending.len() > MARK_LEN {
                let body = pending.len() - MARK_LEN;
                emit(&pending[..body], out, check).await?;
                pending.drain(..body);
            }
            progress(check.size(), None);
        }
    } else {
        diskless = false;
        let len: u64 = header[1..]
            .parse()
            .map_err(|_| src(format!("bad bulk header {header:.40}")))?;
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
        .map_err(|e| format!("{}: {e}", args[0]))
}

/// One reply line without its line end; a bare keepalive newline is "".
async fn read_line(conn: &mut BufReader<TcpStream>, timeout: Duration) -> std::io::Result<String> {
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
    Ok(String::from_utf8_lossy(&line).into_owned())
}
