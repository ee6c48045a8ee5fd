//! RDB payload checks (the last step of a replica sync): the `REDIS00nn` magic, the end
//! opcode 0xFF, and the CRC64 (Jones polynomial, reflected, as Redis computes it) of everything
//! before the 8-byte checksum; and the structure, record by record ([`super::walk`], on a thread
//! of its own fed a copy of each piece). Streaming: the checker sees the payload in pieces as it
//! passes to storage and holds back only the last 8 bytes.

use std::sync::mpsc;

use super::walk::{self, Broken, Walked};

/// Redis's CRC64 polynomial (Jones), reflected.
const POLY: u64 = 0x95ac_9329_ac4b_c9b5;

/// Slicing-by-8 tables, built at compile time.
static TABLES: [[u64; 256]; 8] = tables();

const fn tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut b = 0;
        while b < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            b += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Continues a CRC64 over `data`.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = crc ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(v & 0xff) as usize]
            ^ TABLES[6][((v >> 8) & 0xff) as usize]
            ^ TABLES[5][((v >> 16) & 0xff) as usize]
            ^ TABLES[4][((v >> 24) & 0xff) as usize]
            ^ TABLES[3][((v >> 32) & 0xff) as usize]
            ^ TABLES[2][((v >> 40) & 0xff) as usize]
            ^ TABLES[1][((v >> 48) & 0xff) as usize]
            ^ TABLES[0][(v >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = TABLES[0][((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// What a good payload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RdbInfo {
    /// The RDB format version (`REDIS0010` -> 10).
    pub version: u32,
    pub size: u64,
    /// False when the server writes no checksum (`rdbchecksum no`: 8 zero bytes).
    pub checksummed: bool,
    /// What the structure walk found; `None` when the RDB version is newer than the walker
    /// knows (then only the checksum vouches for it).
    pub walked: Option<Walked>,
}

/// Why a payload is not a good RDB.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RdbError {
    #[error("not an RDB file: it starts with {0:?}, not REDIS00nn")]
    Magic(String),
    #[error("RDB truncated: {0} bytes")]
    Short(u64),
    #[error("RDB does not end with the EOF opcode 0xFF (found 0x{0:02x}): truncated or damaged")]
    NoEnd(u8),
    #[error(
        "RDB checksum mismatch: stored CRC64 {stored:016x}, computed {computed:016x} over {size} bytes"
    )]
    Crc {
        stored: u64,
        computed: u64,
        size: u64,
    },
    /// The checksum matches (or there is none) but redis-server would refuse to load it.
    #[error("RDB structure broken at byte {offset}: {what}")]
    Structure { offset: u64, what: String },
}

/// The walker's thread and the pieces on their way to it.
#[derive(Debug)]
struct Feed {
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    /// Pieces the walker is done with, to be filled again (no allocation per piece).
    spare: mpsc::Receiver<Vec<u8>>,
    /// Bytes gathered for the next piece: small updates go to the walker [`PIECE`] at a time,
    /// not one hand-over (and one wake-up of its thread) each.
    pending: Vec<u8>,
    done: std::thread::JoinHandle<Result<Option<Walked>, Broken>>,
}

/// The size of the pieces handed to the walker (an update larger than this goes whole).
const PIECE: usize = 64 << 10;

impl Feed {
    /// Hands what is pending to the walker. Blocks while the walker is 4 pieces behind: the pull
    /// waits for it (no more memory).
    fn send_pending(&mut self) {
        let Some(tx) = &self.tx else {
            self.pending.clear();
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        let mut next = self.spare.try_recv().unwrap_or_default();
        next.clear();
        let piece = std::mem::replace(&mut self.pending, next);
        if tx.send(piece).is_err() {
            // The walk has ended (it found the damage); its verdict waits in `finish`.
            self.tx = None;
        }
    }
}

/// The pieces as one byte stream.
struct Pieces {
    rx: mpsc::Receiver<Vec<u8>>,
    back: mpsc::Sender<Vec<u8>>,
    cur: Vec<u8>,
    at: usize,
}

impl std::io::Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    let done = std::mem::replace(&mut self.cur, v);
                    let _ = self.back.send(done);
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The streaming checker.
#[derive(Debug)]
pub struct RdbCheck {
    walk: Feed,
    crc: u64,
    head: Vec<u8>,
    /// The last (up to) 8 bytes seen: the checksum once the stream ends, not yet in `crc`.
    tail: Vec<u8>,
    /// The last byte that went into `crc`: the end opcode once the stream ends.
    last: u8,
    size: u64,
}

impl Default for RdbCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl RdbCheck {
    pub fn new() -> Self {
        // A few pieces in flight; a slow walk holds the stream back rather than growing memory.
        let (tx, rx) = mpsc::sync_channel(4);
        let (back, spare) = mpsc::channel();
        let done = std::thread::Builder::new()
            .name("rdb-walk".into())
            .spawn(move || {
                walk::walk(Pieces {
                    rx,
                    back,
                    cur: Vec::new(),
                    at: 0,
                })
            })
            .expect("spawning the RDB walker thread");
        Self {
            walk: Feed {
                tx: Some(tx),
                spare,
                pending: Vec::new(),
                done,
            },
            crc: 0,
            head: Vec::new(),
            tail: Vec::new(),
            last: 0,
            size: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        if self.walk.tx.is_some() {
            self.walk.pending.extend_from_slice(data);
            if self.walk.pending.len() >= PIECE {
                self.walk.send_pending();
            }
        }
        self.size += data.len() as u64;
        if self.head.len() < 9 {
            let take = (9 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        if data.len() >= 8 {
            // Fast path: the held-back bytes and all but the last 8 of `data` go into the CRC.
            let held = std::mem::take(&mut self.tail);
            let (body, tail) = data.split_at(data.len() - 8);
            self.crc = crc64(self.crc, &held);
            self.crc = crc64(self.crc, body);
            if let Some(&b) = body.last().or(held.last()) {
                self.last = b;
            }
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > 8 {
                let n = self.tail.len() - 8;
                self.crc = crc64(self.crc, &self.tail[..n]);
                self.last = self.tail[n - 1];
                self.tail.drain(..n);
            }
        }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the whole payload once it has been seen.
    pub fn finish(mut self) -> Result<RdbInfo, RdbError> {
        self.walk.send_pending();
        drop(self.walk.tx.take());
        let walked = match self.walk.done.join() {
            Ok(w) => w,
            Err(_) => Err(Broken {
                offset: 0,
                what: "the RDB walker panicked".into(),
            }),
        };
        let magic_ok = self.head.len() == 9
            && self.head.starts_with(b"REDIS")
            && self.head[5..].iter().all(u8::is_ascii_digit);
        if !magic_ok {
            return Err(RdbError::Magic(
                String::from_utf8_lossy(&self.head).into_owned(),
            ));
        }
        // Magic, at least the end opcode, and the checksum.
        if self.size < 9 + 1 + 8 {
            return Err(RdbError::Short(self.size));
        }
        if self.last != 0xff {
            return Err(RdbError::NoEnd(self.last));
        }
        let mut stored = [0u8; 8];
        stored.copy_from_slice(&self.tail);
        let stored = u64::from_le_bytes(stored);
        let version = std::str::from_utf8(&self.head[5..])
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if stored != 0 && stored != self.crc {
            return Err(RdbError::Crc {
                stored,
                computed: self.crc,
                size: self.size,
            });
        }
        let walked = walked.map_err(|b| RdbError::Structure {
            offset: b.offset,
            what: b.what,
        })?;
        Ok(RdbInfo {
            version,
            size: self.size,
            checksummed: stored != 0,
            walked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis's own test vector (src/crc64.c): crc64(0, "123456789") = 0xe9c6d914c4b8d9ca.
    #[test]
    fn crc64_matches_redis() {
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let long: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        // Split anywhere: the same CRC.
        let whole = crc64(0, &long);
        for cut in [0, 1, 7, 8, 9, 4095, 9999] {
            assert_eq!(crc64(crc64(0, &long[..cut]), &long[cut..]), whole);
        }
    }

    fn rdb(body: &[u8]) -> Vec<u8> {
        let mut v = b"REDIS0010".to_vec();
        v.extend_from_slice(body);
        v.push(0xff);
        let crc = crc64(0, &v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    fn check_in_pieces(data: &[u8], piece: usize) -> Result<RdbInfo, RdbError> {
        let mut c = RdbCheck::new();
        for p in data.chunks(piece.max(1)) {
            c.update(p);
        }
        c.finish()
    }

    /// Records: an aux field, then `n` string keys.
    fn body(n: usize) -> Vec<u8> {
        let mut b = vec![0xfa, 3, b'v', b'e', b'r', 1, b'7'];
        for i in 0..n {
            let k = format!("key:{i}");
            b.push(0);
            b.push(k.len() as u8);
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(&[5, b'v', b'a', b'l', b'u', b'e']);
        }
        b
    }

    #[test]
    fn good_payload_passes_in_any_pieces() {
        let data = rdb(&body(3));
        for piece in [1, 2, 3, 7, 8, 9, 16, 1000] {
            let info = check_in_pieces(&data, piece).expect("good");
            assert_eq!(info.version, 10);
            assert_eq!(info.size, data.len() as u64);
            assert!(info.checksummed);
            assert_eq!(info.walked.expect("walked").keys, 3);
        }
    }

    #[test]
    fn damage_is_caught() {
        let good = rdb(&body(8));
        let mut flipped = good.clone();
        flipped[50] ^= 1;
        assert!(matches!(
            check_in_pieces(&flipped, 7),
            Err(RdbError::Crc { .. })
        ));
        let truncated = &good[..good.len() - 20];
        assert!(check_in_pieces(truncated, 7).is_err());
        assert!(matches!(
            check_in_pieces(b"HELLO0010aaaaaaaaaaaaaaaaa", 4),
            Err(RdbError::Magic(_))
        ));
        assert!(matches!(
            check_in_pieces(b"REDIS", 4),
            Err(RdbError::Magic(_))
        ));
        // No checksum written by the server: accepted, reported as unchecked.
        let mut unchecked = good[..good.len() - 8].to_vec();
        unchecked.extend_from_slice(&[0; 8]);
        assert!(!check_in_pieces(&unchecked, 5).expect("ok").checksummed);
        // A checksum that matches a broken structure: refused all the same.
        let mut b = body(2);
        b[8] = 9; // a string value's type becomes a zipmap
        assert!(matches!(
            check_in_pieces(&rdb(&b), 3),
            Err(RdbError::Structure { .. })
        ));
    }
}
