//! The payloads of CopyData messages on the two replication streams, decoded without I/O so that
//! any bytes from a server can be fuzzed and tested: WAL streaming (`START_REPLICATION`) and
//! PostgreSQL 15's `BASE_BACKUP`. Layouts: docs/internals/replication-protocol.md.
//!
//! A message of a known type that is too short is an error, never a panic and never skipped; a
//! type this code does not know is passed on as [`WalMsg::Other`] on the WAL stream (the server
//! may add types) and is an error on the backup stream (whose type set is fixed per version).

use bytes::{BufMut, Bytes, BytesMut};

/// One CopyData payload of the WAL stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalMsg {
    /// `w`: WAL bytes starting at `start`; `end` is the server's current end of WAL.
    XLogData {
        start: u64,
        end: u64,
        send_time: i64,
        data: Bytes,
    },
    /// `k`: the server's end of WAL, and whether it wants a status update now.
    Keepalive {
        end: u64,
        send_time: i64,
        reply: bool,
    },
    /// A type not known here, ignored by the archiver.
    Other(u8),
}

/// `w` + start + end + send time.
pub const XLOGDATA_HEADER: usize = 25;
/// `k` + end + send time + reply flag.
pub const KEEPALIVE_LEN: usize = 18;

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl WalMsg {
    /// Decodes one payload. The WAL bytes are a slice of `body` (no copy).
    pub fn decode(body: Bytes) -> Result<WalMsg, String> {
        match body.first() {
            Some(b'w') => {
                if body.len() < XLOGDATA_HEADER {
                    return Err(format!(
                        "XLogData message of {} bytes (the header alone is {XLOGDATA_HEADER})",
                        body.len()
                    ));
                }
                Ok(WalMsg::XLogData {
                    start: be_u64(&body[1..]),
                    end: be_u64(&body[9..]),
                    send_time: be_u64(&body[17..]) as i64,
                    data: body.slice(XLOGDATA_HEADER..),
                })
            }
            Some(b'k') => {
                if body.len() < KEEPALIVE_LEN {
                    return Err(format!(
                        "keepalive message of {} bytes (must be {KEEPALIVE_LEN})",
                        body.len()
                    ));
                }
                let reply = match body[17] {
                    0 => false,
                    1 => true,
                    b => return Err(format!("keepalive with reply flag {b} (must be 0 or 1)")),
                };
                Ok(WalMsg::Keepalive {
                    end: be_u64(&body[1..]),
                    send_time: be_u64(&body[9..]) as i64,
                    reply,
                })
            }
            Some(&t) => Ok(WalMsg::Other(t)),
            None => Err("empty CopyData message on the WAL stream".into()),
        }
    }

    /// The payload as the server sends it (for [`WalMsg::Other`], its type byte alone).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            WalMsg::XLogData {
                start,
                end,
                send_time,
                data,
            } => {
                b.reserve(XLOGDATA_HEADER + data.len());
                b.put_u8(b'w');
                b.put_u64(*start);
                b.put_u64(*end);
                b.put_i64(*send_time);
                b.put_slice(data);
            }
            WalMsg::Keepalive {
                end,
                send_time,
                reply,
            } => {
                b.put_u8(b'k');
                b.put_u64(*end);
                b.put_i64(*send_time);
                b.put_u8(u8::from(*reply));
            }
            WalMsg::Other(t) => b.put_u8(*t),
        }
        b.freeze()
    }
}

/// The standby status update (`r`): written = `received`, flushed = applied = `flushed`.
pub fn status_update(received: u64, flushed: u64, now: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(34);
    b.put_u8(b'r');
    b.put_u64(received);
    b.put_u64(flushed);
    b.put_u64(flushed);
    b.put_i64(now);
    b.put_u8(0);
    b.freeze()
}

/// One CopyData payload of a PostgreSQL 15 `BASE_BACKUP` stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupMsg {
    /// `n`: a new archive (`base.tar`, `<oid>.tar`) and its tablespace location ("" for base).
    NewArchive { name: String, location: String },
    /// `m`: the backup manifest follows.
    Manifest,
    /// `d`: bytes of the current archive or manifest.
    Data(Bytes),
    /// `p`: bytes sent so far.
    Progress(u64),
}

impl BackupMsg {
    pub fn decode(body: Bytes) -> Result<BackupMsg, String> {
        let Some(&kind) = body.first() else {
            return Err("empty CopyData message in the backup stream".into());
        };
        let rest = &body[1..];
        match kind {
            b'n' => {
                let mut parts = rest.split(|b| *b == 0);
                let (Some(name), Some(location), Some(tail), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err("new-archive message is not two NUL-terminated strings".into());
                };
                if !tail.is_empty() {
                    return Err("new-archive message has bytes after its two strings".into());
                }
                let text = |b: &[u8], what: &str| {
                    String::from_utf8(b.to_vec())
                        .map_err(|_| format!("new-archive message: the {what} is not UTF-8"))
                };
                let name = text(name, "archive name")?;
                if name.is_empty() || name.contains('/') || name.starts_with('.') {
                    return Err(format!("bad archive name {name:?}"));
                }
                Ok(BackupMsg::NewArchive {
                    name,
                    location: text(location, "tablespace location")?,
                })
            }
            b'm' if rest.is_empty() => Ok(BackupMsg::Manifest),
            b'm' => Err("manifest message with a payload".into()),
            b'd' => Ok(BackupMsg::Data(body.slice(1..))),
            b'p' => <[u8; 8]>::try_from(rest)
                .map(|b| BackupMsg::Progress(u64::from_be_bytes(b)))
                .map_err(|_| format!("progress message of {} bytes (must be 9)", body.len())),
            other => Err(format!(
                "unknown BASE_BACKUP message type {:?}",
                other as char
            )),
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            BackupMsg::NewArchive { name, location } => {
                b.put_u8(b'n');
                b.put_slice(name.as_bytes());
                b.put_u8(0);
                b.put_slice(location.as_bytes());
                b.put_u8(0);
            }
            BackupMsg::Manifest => b.put_u8(b'm'),
            BackupMsg::Data(d) => {
                b.put_u8(b'd');
                b.put_slice(d);
            }
            BackupMsg::Progress(n) => {
                b.put_u8(b'p');
                b.put_u64(*n);
            }
        }
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_messages_round_trip_and_short_ones_are_errors() {
        let x = WalMsg::XLogData {
            start: 0x1_0000_0028,
            end: 0x1_0000_1000,
            send_time: -5,
            data: Bytes::from_static(b"wal bytes"),
        };
        assert_eq!(WalMsg::decode(x.encode()), Ok(x.clone()));
        let k = WalMsg::Keepalive {
            end: 42,
            send_time: 7,
            reply: true,
        };
        assert_eq!(WalMsg::decode(k.encode()), Ok(k));
        let short = x.encode().slice(..XLOGDATA_HEADER - 1);
        assert!(
            WalMsg::decode(short)
                .expect_err("short")
                .contains("24 bytes")
        );
        let mut bad_flag = BytesMut::from(
            &WalMsg::Keepalive {
                end: 1,
                send_time: 1,
                reply: false,
            }
            .encode()[..],
        );
        bad_flag[17] = 2;
        assert!(WalMsg::decode(bad_flag.freeze()).is_err());
        assert_eq!(
            WalMsg::decode(Bytes::from_static(b"z")),
            Ok(WalMsg::Other(b'z'))
        );
        assert!(WalMsg::decode(Bytes::new()).is_err());
    }

    #[test]
    fn backup_messages_round_trip_and_bad_names_are_errors() {
        for m in [
            BackupMsg::NewArchive {
                name: "base.tar".into(),
                location: String::new(),
            },
            BackupMsg::NewArchive {
                name: "16384.tar".into(),
                location: "/srv/ts".into(),
            },
            BackupMsg::Manifest,
            BackupMsg::Data(Bytes::from_static(b"tar bytes")),
            BackupMsg::Progress(1 << 40),
        ] {
            assert_eq!(BackupMsg::decode(m.encode()), Ok(m));
        }
        for bad in [
            &b"n../x\0\0"[..],
            b"n\0\0",
            b"nbase.tar\0",
            b"nbase.tar\0\0junk",
            b"p1234",
            b"mx",
            b"q",
            b"",
        ] {
            assert!(
                BackupMsg::decode(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
