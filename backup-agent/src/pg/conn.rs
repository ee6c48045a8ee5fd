//! A PostgreSQL replication connection: postgres-protocol framing over a tokio TCP stream (TLS
//! after an SSLRequest, per `sslmode`), startup with `replication=true`, SCRAM-SHA-256 / md5 /
//! cleartext authentication, simple queries, and the CopyOut / CopyBoth sub-protocols that
//! BASE_BACKUP and START_REPLICATION use.
//! (tokio-postgres has no replication mode.)

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::PgSettings;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a replication connection failed. The message names the server and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("{server}: cannot connect: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("{server}: connection timed out after {after:?}")]
    Timeout { server: String, after: Duration },
    #[error("{server}: password authentication failed for user {user}")]
    WrongPassword { server: String, user: String },
    #[error(
        "{server}: role {user} may not start a replication connection: it needs the REPLICATION \
         attribute (ALTER ROLE {user} REPLICATION) and a `replication` line in pg_hba.conf ({message})"
    )]
    NoReplication {
        server: String,
        user: String,
        message: String,
    },
    #[error(
        "{server}: the server asks for a password and none is configured (postgres.password or postgres.password_file)"
    )]
    NoPassword { server: String },
    #[error("{server}: {severity} {code}: {message}")]
    Server {
        server: String,
        severity: String,
        code: String,
        message: String,
    },
    #[error("{server}: protocol: {message}")]
    Protocol { server: String, message: String },
    #[error("{server}: connection lost: {source}")]
    Io {
        server: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

impl ReplError {
    /// Whether trying again later can help (an unreachable or restarting server).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Timeout { .. } | Self::Io { .. }
        ) || matches!(self, Self::Server { code, .. } if code.starts_with("57P") || code == "53300")
    }
}

/// A result set of a simple query, as text.
#[derive(Debug, Default, Clone)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    pub fn get(&self, row: usize, col: &str) -> Option<&str> {
        let c = self.columns.iter().position(|n| n == col)?;
        self.rows.get(row)?.get(c)?.as_deref()
    }
}

/// The connection's byte stream: plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<common::tls::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open replication connection.
pub struct ReplConn {
    stream: Stream,
    buf: BytesMut,
    out: BytesMut,
    pub server: String,
    pub params: HashMap<String, String>,
}

impl ReplConn {
    /// Connects and authenticates with `replication=true` (a physical replication connection).
    pub async fn connect(s: &PgSettings) -> Result<Self, ReplError> {
        let server = format!("{}:{}", s.host, s.port);
        match tokio::time::timeout(s.connect_timeout, Self::connect_inner(s, server.clone())).await
        {
            Ok(r) => r,
            Err(_) => Err(ReplError::Timeout {
                server,
                after: s.connect_timeout,
            }),
        }
    }

    async fn connect_inner(s: &PgSettings, server: String) -> Result<Self, ReplError> {
        let password = s
            .password("postgres")
            .map_err(|e| ReplError::Config(e.to_string()))?;
        let tls = common::tls::pg_config(s.sslmode, s.sslrootcert.as_deref())
            .map_err(|e| ReplError::Config(format!("{server}: TLS settings: {e:#}")))?;
        let mut tcp = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|source| ReplError::Connect {
                server: server.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let io = |source| ReplError::Io {
                    server: server.clone(),
                    source,
                };
                let mut req = BytesMut::new();
                frontend::ssl_request(&mut req);
                tcp.write_all(&req).await.map_err(io)?;
                let mut answer = [0u8; 1];
                tcp.read_exact(&mut answer).await.map_err(io)?;
                match answer[0] {
                    b'S' => Stream::Tls(Box::new(
                        common::tls::connect(&s.host, tcp, Some(config))
                            .await
                            .map_err(|e| ReplError::Config(format!("{server}: {e:#}")))?,
                    )),
                    b'N' if s.sslmode == common::TlsMode::Prefer => Stream::Plain(tcp),
                    b'N' => {
                        return Err(ReplError::Config(format!(
                            "{server}: sslmode = {:?} but the server does not accept TLS (ssl = off)",
                            s.sslmode
                        )));
                    }
                    other => {
                        return Err(ReplError::Protocol {
                            server,
                            message: format!("unexpected answer {other:#x} to SSLRequest"),
                        });
                    }
                }
            }
        };
        let mut c = Self {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            out: BytesMut::new(),
            server,
            params: HashMap::new(),
        };
        let params = [
            ("user", s.user.as_str()),
            ("database", "replication"),
            ("replication", "true"),
            ("application_name", "backup-agent"),
        ];
        frontend::startup_message(params.iter().copied(), &mut c.out).map_err(|e| c.proto(e))?;
        c.flush().await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            match c.read().await? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let pw = password.as_ref().ok_or_else(|| ReplError::NoPassword {
                        server: c.server.clone(),
                    })?;
                    frontend::password_message(pw.expose().as_bytes(), &mut c.out)
                        .map_err(|e| c.proto(e))?;
                    c.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let pw = password.as_ref().ok_or_else(|| ReplError::NoPassword {
                        server: c.server.clone(),
                    })?;
                    let hash = postgres_protocol::authentication::md5_hash(
                        s.user.as_bytes(),
                        pw.expose().as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut c.out)
                        .map_err(|e| c.proto(e))?;
                    c.flush().await?;
                }
                Message::AuthenticationSasl(body) => {
                    let pw = password.as_ref().ok_or_else(|| ReplError::NoPassword {
                        server: c.server.clone(),
                    })?;
                    let mut mechs = body.mechanisms();
                    let mut ok = false;
                    while let Some(m) = mechs.next().map_err(|e| c.proto(e))? {
                        ok |= m == SCRAM_SHA_256;
                    }
                    if !ok {
                        return Err(c.proto_msg("the server offers no SCRAM-SHA-256"));
                    }
                    let sc =
                        ScramSha256::new(pw.expose().as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, sc.message(), &mut c.out)
                        .map_err(|e| c.proto(e))?;
                    c.flush().await?;
                    scram = Some(sc);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let sc = scram
                        .as_mut()
                        .ok_or_else(|| c.proto_msg("SASL out of order"))?;
                    sc.update(body.data()).map_err(|e| c.proto(e))?;
                    let msg = sc.message().to_vec();
                    frontend::sasl_response(&msg, &mut c.out).map_err(|e| c.proto(e))?;
                    c.flush().await?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let sc = scram
                        .as_mut()
                        .ok_or_else(|| c.proto_msg("SASL out of order"))?;
                    sc.finish(body.data()).map_err(|e| c.proto(e))?;
                }
                Message::ParameterStatus(p) => {
                    if let (Ok(k), Ok(v)) = (p.name(), p.value()) {
                        c.params.insert(k.to_string(), v.to_string());
                    }
                }
                Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ReadyForQuery(_) => return Ok(c),
                Message::ErrorResponse(body) => {
                    let e = c.server_error(&body);
                    return Err(match e {
                        ReplError::Server { code, message, .. } if code == "28P01" => {
                            let _ = message;
                            ReplError::WrongPassword {
                                server: c.server.clone(),
                                user: s.user.clone(),
                            }
                        }
                        ReplError::Server { code, message, .. }
                            if code == "42501"
                                || (code == "28000" && message.contains("replication")) =>
                        {
                            ReplError::NoReplication {
                                server: c.server.clone(),
                                user: s.user.clone(),
                                message,
                            }
                        }
                        other => other,
                    });
                }
                _ => return Err(c.proto_msg("unexpected message during startup")),
            }
        }
    }

    fn proto(&self, e: std::io::Error) -> ReplError {
        ReplError::Protocol {
            server: self.server.clone(),
            message: e.to_string(),
        }
    }

    fn proto_msg(&self, m: &str) -> ReplError {
        ReplError::Protocol {
            server: self.server.clone(),
            message: m.to_string(),
        }
    }

    fn server_error(
        &self,
        body: &postgres_protocol::message::backend::ErrorResponseBody,
    ) -> ReplError {
        let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
        let mut fields = body.fields();
        while let Ok(Some(f)) = fields.next() {
            match f.type_() {
                b'S' => severity = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
                _ => {}
            }
        }
        ReplError::Server {
            server: self.server.clone(),
            severity,
            code,
            message,
        }
    }

    pub async fn flush(&mut self) -> Result<(), ReplError> {
        let out = self.out.split();
        self.stream
            .write_all(&out)
            .await
            .map_err(|source| ReplError::Io {
                server: self.server.clone(),
                source,
            })
    }

    /// Reads the next backend message (NoticeResponse is skipped).
    pub async fn read(&mut self) -> Result<Message, ReplError> {
        loop {
            match Message::parse(&mut self.buf).map_err(|e| self.proto(e))? {
                Some(Message::NoticeResponse(_)) => continue,
                Some(m) => return Ok(m),
                None => self.fill().await?,
            }
        }
    }

    /// Reads more bytes from the server into the buffer.
    async fn fill(&mut self) -> Result<(), ReplError> {
        if self.buf.capacity() - self.buf.len() < 8192 {
            self.buf.reserve(64 * 1024);
        }
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|source| ReplError::Io {
                server: self.server.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ReplError::Io {
                server: self.server.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ),
            });
        }
        Ok(())
    }

    /// Reads one raw message `(tag, body)`: the CopyBoth phase of START_REPLICATION uses a message
    /// ('W') that postgres-protocol's parser does not know. An ErrorResponse becomes an error.
    pub async fn read_raw(&mut self) -> Result<(u8, Bytes), ReplError> {
        loop {
            match split_message(&mut self.buf) {
                Ok(Some((b'N', _))) => continue,
                Ok(Some((b'E', body))) => {
                    let mut b = BytesMut::with_capacity(5 + body.len());
                    b.extend_from_slice(b"E");
                    b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
                    b.extend_from_slice(&body);
                    return match Message::parse(&mut b) {
                        Ok(Some(m)) => Err(self.unexpected(&m, "")),
                        _ => Err(self.proto_msg("unreadable error response")),
                    };
                }
                Ok(Some(m)) => return Ok(m),
                Ok(None) => self.fill().await?,
                Err(e) => return Err(self.proto_msg(&e)),
            }
        }
    }

    /// Sends a simple query (the caller reads the responses).
    pub async fn send_query(&mut self, q: &str) -> Result<(), ReplError> {
        frontend::query(q, &mut self.out).map_err(|e| self.proto(e))?;
        self.flush().await
    }

    /// Reads one result set (RowDescription, DataRows, CommandComplete). Returns `None` at
    /// ReadyForQuery. An ErrorResponse is returned as an error (after draining to ReadyForQuery).
    pub async fn read_result(&mut self) -> Result<Option<ResultSet>, ReplError> {
        let mut rs = ResultSet::default();
        loop {
            match self.read().await? {
                Message::RowDescription(body) => {
                    let mut fields = body.fields();
                    while let Some(f) = fields.next().map_err(|e| self.proto(e))? {
                        rs.columns.push(f.name().to_string());
                    }
                }
                Message::DataRow(body) => {
                    let buf = body.buffer();
                    let mut ranges = body.ranges();
                    let mut row = Vec::new();
                    while let Some(r) = ranges.next().map_err(|e| self.proto(e))? {
                        row.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                    }
                    rs.rows.push(row);
                }
                Message::CommandComplete(_) | Message::EmptyQueryResponse => return Ok(Some(rs)),
                Message::ReadyForQuery(_) => return Ok(None),
                Message::ErrorResponse(body) => {
                    let e = self.server_error(&body);
                    // Drain to ReadyForQuery so the connection stays usable.
                    loop {
                        match self.read().await {
                            Ok(Message::ReadyForQuery(_)) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    return Err(e);
                }
                _ => return Err(self.proto_msg("unexpected message in a result set")),
            }
        }
    }

    /// Runs a simple query and returns its result sets.
    pub async fn query(&mut self, q: &str) -> Result<Vec<ResultSet>, ReplError> {
        self.send_query(q).await?;
        let mut out = vec![];
        while let Some(rs) = self.read_result().await? {
            out.push(rs);
        }
        Ok(out)
    }

    /// Sends CopyData (standby status updates during START_REPLICATION).
    pub async fn copy_data(&mut self, data: Bytes) -> Result<(), ReplError> {
        frontend::CopyData::new(data)
            .map_err(|e| self.proto(e))?
            .write(&mut self.out);
        self.flush().await
    }

    /// Sends CopyDone.
    pub async fn copy_done(&mut self) -> Result<(), ReplError> {
        frontend::copy_done(&mut self.out);
        self.flush().await
    }

    /// The error for a message that should have been an ErrorResponse or was unexpected.
    pub fn unexpected(&self, m: &Message, what: &str) -> ReplError {
        match m {
            Message::ErrorResponse(body) => self.server_error(body),
            _ => self.proto_msg(&format!("unexpected message {what}")),
        }
    }
}

/// An LSN as `X/Y`.
/// Takes one complete backend message `(tag, body)` off the front of `buf`: `None` until all of
/// it has arrived. A declared length under 4 (the length counts itself) or over
/// [`MAX_MESSAGE_LEN`] is a protocol error, never a panic or an allocation of that size.
pub fn split_message(buf: &mut BytesMut) -> Result<Option<(u8, Bytes)>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if !(4..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(format!(
            "message {:?} declares length {len} (must be 4 to {MAX_MESSAGE_LEN})",
            buf[0] as char
        ));
    }
    if buf.len() <= len {
        return Ok(None);
    }
    let msg = buf.split_to(1 + len).freeze();
    Ok(Some((msg[0], msg.slice(5..))))
}

/// The largest backend message accepted: a CopyData of a base backup or of WAL is at most a few
/// hundred KiB; 1 GiB is PostgreSQL's own limit for a message.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;

#[cfg(test)]
mod tests {

    /// Framing: whole messages come off one by one, a partial one waits, and a declared length
    /// under 4 or over the limit is an error (it panicked before: the body slice started past
    /// the message's end).
    #[test]
    fn split_message_frames_and_refuses_impossible_lengths() {
        use bytes::BytesMut;
        let mut buf = BytesMut::from(&b"d\0\0\0\x07abcZ\0\0\0\x05I"[..]);
        assert_eq!(
            super::split_message(&mut buf).expect("frames"),
            Some((b'd', bytes::Bytes::from_static(b"abc")))
        );
        assert_eq!(
            super::split_message(&mut buf).expect("frames"),
            Some((b'Z', bytes::Bytes::from_static(b"I")))
        );
        assert_eq!(super::split_message(&mut buf).expect("frames"), None);
        let mut partial = BytesMut::from(&b"d\0\0\0\x07ab"[..]);
        assert_eq!(super::split_message(&mut partial).expect("waits"), None);
        for len in [0u32, 1, 3, (1 << 30) + 1, u32::MAX] {
            let mut bad = BytesMut::from(&b"W"[..]);
            bad.extend_from_slice(&len.to_be_bytes());
            let e = super::split_message(&mut bad).expect_err("refused");
            assert!(e.contains(&format!("declares length {len}")), "{e}");
        }
    }
}
