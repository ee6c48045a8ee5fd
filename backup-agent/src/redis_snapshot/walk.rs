//! The RDB walker: reads a whole snapshot record by record (opcodes, length encodings, strings
//! plain, integer-encoded or LZF-compressed, every value type of RDB versions 5 to 12 and the
//! packed encodings inside them) and refuses what redis-server would refuse to load: a
//! truncated or unknown record, a broken listpack, ziplist or intset, a duplicate key in a
//! database, a duplicate member or field, a NaN score, a stream whose consumer PEL names an entry
//! its group does not have. Memory stays bounded: strings are streamed (hashed when a duplicate
//! check needs them), only packed blobs are held whole. The format is written up in
//! docs/internals/rdb-format.md.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{BufRead, Read};

use super::encodings::{self, LzfError};

/// The newest RDB version the walker knows. A newer snapshot is not walked (its CRC64 is still
/// checked), and says so.
pub const KNOWN_VERSION: u32 = 12;

/// Hashes kept for one duplicate check (the keys of a database, the members of one collection):
/// 8 bytes each, 8 MiB. Past it the check stops and the walk says so.
pub const DUP_LIMIT: usize = 1 << 20;

/// What a walk found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Keys, in every database (empty and expired ones included).
    pub keys: u64,
    /// One more than the highest database number selected (16 is redis-server's default
    /// `databases`; a restore target needs at least this many).
    pub databases: u64,
    /// Module values and module aux records: walked by their self-describing opcodes, loadable
    /// only where the module is loaded.
    pub modules: u64,
    /// Function libraries: their code is compiled only by the server that loads them.
    pub functions: u64,
    /// False when a duplicate check ran past [`DUP_LIMIT`] and stopped.
    pub dups_checked: bool,
}

/// Why a walk refused the snapshot: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub offset: u64,
    pub what: String,
}

type R<T> = Result<T, Broken>;

/// Walks the RDB that `r` yields (magic to checksum, nothing after). `Ok(None)`: its version is
/// newer than [`KNOWN_VERSION`], not walked.
pub fn walk(r: impl Read) -> R<Option<Walked>> {
    let mut w = Walker {
        src: std::io::BufReader::with_capacity(64 * 1024, r),
        pos: 0,
        hashes: RandomState::new(),
        version: 0,
        lzf_window: Vec::new(),
        out: Walked {
            dups_checked: true,
            ..Walked::default()
        },
    };
    let magic = w.bytes::<9>("the magic")?;
    if &magic[..5] != b"REDIS" || !magic[5..].iter().all(u8::is_ascii_digit) {
        return Err(w.broken(format!(
            "not an RDB file: it starts with {:?}",
            String::from_utf8_lossy(&magic)
        )));
    }
    let version: u32 = std::str::from_utf8(&magic[5..])
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if version > KNOWN_VERSION {
        return Ok(None);
    }
    if version < 5 {
        return Err(w.broken(format!(
            "RDB version {version} (Redis before 2.6) has no checksum: not supported"
        )));
    }
    w.version = version;
    w.records()?;
    let _crc = w.bytes::<8>("the checksum")?;
    let mut extra = [0u8; 1];
    match w.src.read(&mut extra) {
        Ok(0) => Ok(Some(w.out)),
        Ok(_) => Err(w.broken("bytes after the checksum".into())),
        Err(e) => Err(w.broken(format!("reading past the checksum: {e}"))),
    }
}

/// A duplicate check: 64-bit hashes under a per-walk random key, kept in a vector (8 bytes each)
/// and sorted once the set is complete; at most [`DUP_LIMIT`].
struct Dups {
    seen: Vec<u64>,
    off: bool,
}

impl Dups {
    fn new() -> Self {
        Self {
            seen: Vec::new(),
            off: false,
        }
    }

    /// Room for `n` more (a size the file announces), within the limit.
    fn reserve(&mut self, n: u64) {
        if !self.off {
            let room = DUP_LIMIT.saturating_sub(self.seen.len());
            self.seen
                .reserve(usize::try_from(n).unwrap_or(room).min(room));
        }
    }

    fn insert(&mut self, h: u64, out: &mut Walked) {
        if self.off {
            return;
        }
        if self.seen.len() >= DUP_LIMIT {
            self.off = true;
            self.seen = Vec::new();
            out.dups_checked = false;
            return;
        }
        self.seen.push(h);
    }

    /// Whether a hash occurs twice.
    fn duplicated(&mut self) -> bool {
        self.seen.sort_unstable();
        self.seen.windows(2).any(|w| w[0] == w[1])
    }
}

/// What to do with a string's bytes.
enum Want<'a> {
    Skip,
    Hash(&'a mut u64),
    Keep(&'a mut Vec<u8>),
}

struct Walker<Rd> {
    src: std::io::BufReader<Rd>,
    pos: u64,
    hashes: RandomState,
    version: u32,
    out: Walked,
    /// Reused by every LZF string: its output window.
    lzf_window: Vec<u8>,
}

impl<Rd: Read> Walker<Rd> {
    fn broken(&self, what: String) -> Broken {
        Broken {
            offset: self.pos,
            what,
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> R<()> {
        self.src.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.broken(format!("truncated in {what}"))
            } else {
                self.broken(format!("reading {what}: {e}"))
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> R<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u8(&mut self, what: &str) -> R<u8> {
        Ok(self.bytes::<1>(what)?[0])
    }

    /// A length, or the special-encoding number of an encoded string (`Err` side of the inner
    /// result).
    fn len_or_enc(&mut self, what: &str) -> R<Result<u64, u8>> {
        let b = self.u8(what)?;
        Ok(match b >> 6 {
            0 => Ok(u64::from(b & 0x3f)),
            1 => Ok((u64::from(b & 0x3f) << 8) | u64::from(self.u8(what)?)),
            3 => Err(b & 0x3f),
            _ => match b {
                0x80 => Ok(u64::from(u32::from_be_bytes(self.bytes(what)?))),
                0x81 => Ok(u64::from_be_bytes(self.bytes(what)?)),
                _ => {
                    return Err(self.broken(format!("unknown length encoding 0x{b:02x} in {what}")));
                }
            },
        })
    }

    fn len(&mut self, what: &str) -> R<u64> {
        match self.len_or_enc(what)? {
            Ok(n) => Ok(n),
            Err(e) => Err(self.broken(format!(
                "an encoded value ({e}) where {what} should be a length"
            ))),
        }
    }

    /// One string, its bytes handed to `want`.
    fn string(&mut self, what: &str, want: Want<'_>) -> R<u64> {
        let mut hasher = matches!(want, Want::Hash(_)).then(|| self.hashes.build_hasher());
        let mut kept = match &want {
            Want::Keep(_) => Some(Vec::new()),
            _ => None,
        };
        let mut sink = |piece: &[u8]| {
            if let Some(h) = hasher.as_mut() {
                h.write(piece);
            }
            if let Some(k) = kept.as_mut() {
                k.extend_from_slice(piece);
            }
        };
        let len = match self.len_or_enc(what)? {
            Ok(n) => {
                // Straight from the reader's buffer.
                let mut left = n;
                while left > 0 {
                    let avail = match self.src.fill_buf() {
                        Ok([]) => return Err(self.broken(format!("truncated in {what}"))),
                        Ok(b) => b,
                        Err(e) => return Err(self.broken(format!("reading {what}: {e}"))),
                    };
                    let take = avail.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    sink(&avail[..take]);
                    self.src.consume(take);
                    self.pos += take as u64;
                    left -= take as u64;
                }
                n
            }
            Err(enc @ 0..=2) => {
                let v = match enc {
                    0 => i64::from(self.bytes::<1>(what)?[0] as i8),
                    1 => i64::from(i16::from_le_bytes(self.bytes(what)?)),
                    _ => i64::from(i32::from_le_bytes(self.bytes(what)?)),
                };
                let text = v.to_string();
                sink(text.as_bytes());
                text.len() as u64
            }
            Err(3) => {
                let clen = self.len(what)?;
                let ulen = self.len(what)?;
                let start = self.pos;
                let mut err = None;
                let r = {
                    let src = &mut self.src;
                    encodings::lzf(
                        clen,
                        ulen,
                        &mut self.lzf_window,
                        |b| src.read_exact(b),
                        &mut sink,
                    )
                };
                if let Err(e) = r {
                    err = Some(e);
                }
                // The compressed bytes consumed so far (all of them when it succeeded).
                self.pos = start + clen;
                match err {
                    None => ulen,
                    Some(LzfError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Err(self.broken(format!("truncated in {what} (LZF)")));
                    }
                    Some(LzfError::Io(e)) => {
                        return Err(self.broken(format!("reading {what}: {e}")));
                    }
                    Some(LzfError::Bad(why)) => {
                        return Err(Broken {
                            offset: start,
                            what: format!("{what}: bad LZF data: {why}"),
                        });
                    }
                }
            }
            Err(e) => return Err(self.broken(format!("unknown string encoding {e} in {what}"))),
        };
        match want {
            Want::Skip => {}
            Want::Hash(h) => {
                let mut hasher = hasher.expect("hasher");
                hasher.write_u64(len);
                *h = hasher.finish();
            }
            Want::Keep(k) => *k = kept.expect("kept"),
        }
        Ok(len)
    }

    fn skip(&mut self, what: &str) -> R<()> {
        self.string(what, Want::Skip).map(drop)
    }

    fn hash(&mut self, what: &str) -> R<u64> {
        let mut h = 0;
        self.string(what, Want::Hash(&mut h))?;
        Ok(h)
    }

    fn blob(&mut self, what: &str) -> R<Vec<u8>> {
        let mut v = Vec::new();
        self.string(what, Want::Keep(&mut v))?;
        Ok(v)
    }

    /// The records up to and including the EOF opcode.
    fn records(&mut self) -> R<()> {
        // The keys of each database, checked for duplicates at the end.
        let mut db_keys: std::collections::BTreeMap<u64, Dups> = Default::default();
        let mut db = 0u64;
        loop {
            let at = self.pos;
            let t = self.u8("a record type")?;
            match t {
                0xff => {
                    for (n, keys) in &mut db_keys {
                        if keys.duplicated() {
                            return Err(self.broken(format!("a key occurs twice in database {n}")));
                        }
                    }
                    return Ok(());
                }
                0xfe => {
                    let n = self.len("a database number")?;
                    // redis-server accepts up to its `databases`, an int.
                    if n >= i32::MAX as u64 {
                        return Err(self.broken(format!("database number {n}")));
                    }
                    self.out.databases = self.out.databases.max(n + 1);
                    db = n;
                }
                0xfd => {
                    self.bytes::<4>("an expire time")?;
                }
                0xfc => {
                    self.bytes::<8>("an expire time")?;
                }
                0xf9 => {
                    self.u8("an LFU frequency")?;
                }
                0xf8 => {
                    self.len("an LRU idle time")?;
                }
                0xfb => {
                    let size = self.len("a database size hint")?;
                    self.len("an expires size hint")?;
                    db_keys.entry(db).or_insert_with(Dups::new).reserve(size);
                }
                0xfa => {
                    self.skip("an aux field name")?;
                    self.skip("an aux field value")?;
                }
                0xf7 => {
                    self.len("a module id")?;
                    if self.len("a module aux opcode")? != 2 {
                        return Err(self.broken(
                            "a module aux record whose 'when' is not an unsigned integer".into(),
                        ));
                    }
                    self.len("a module aux 'when'")?;
                    self.module_value()?;
                    self.out.modules += 1;
                }
                0xf6 => return Err(self.broken("a pre-release (7.0 RC) function record".into())),
                0xf5 => {
                    self.skip("a function library")?;
                    self.out.functions += 1;
                }
                0xf4 if self.version >= 12 => {
                    self.len("a slot id")?;
                    self.len("a slot size")?;
                    self.len("a slot expires size")?;
                }
                _ if self.object_type(t) => {
                    if self.out.databases == 0 {
                        self.out.databases = 1;
                    }
                    let k = self.hash("a key")?;
                    db_keys
                        .entry(db)
                        .or_insert_with(Dups::new)
                        .insert(k, &mut self.out);
                    self.value(t)?;
                    self.out.keys += 1;
                }
                _ => {
                    return Err(Broken {
                        offset: at,
                        what: format!(
                            "unknown record type {t} in an RDB of version {}",
                            self.version
                        ),
                    });
                }
            }
        }
    }

    /// A value type this RDB version can hold (redis-server of that version knows it).
    fn object_type(&self, t: u8) -> bool {
        let newest = match self.version {
            ..=10 => 19,
            11 => 21,
            _ => 25,
        };
        (t <= 7 || (9..=newest).contains(&t)) && t <= newest
    }

    fn value(&mut self, t: u8) -> R<()> {
        match t {
            0 => self.skip("a string value"),
            1 => {
                let n = self.len("a list length")?;
                for _ in 0..n {
                    self.skip("a list element")?;
                }
                Ok(())
            }
            2 => {
                let n = self.len("a set size")?;
                self.members(n, "a set member", |_| Ok(()))
            }
            3 | 5 => {
                let n = self.len("a sorted set size")?;
                self.members(n, "a sorted set member", |w| w.score(t == 5))
            }
            4 => {
                let n = self.len("a hash size")?;
                self.members(n, "a hash field", |w| w.skip("a hash value"))
            }
            22 | 24 => {
                if t == 24 {
                    self.min_expire()?;
                }
                let n = self.len("a hash size")?;
                let mut fields = Dups::new();
                for _ in 0..n {
                    let at = self.pos;
                    let ttl = self.len("a hash field TTL")?;
                    // A relative TTL is checked against the minimum at load; an absolute one here.
                    if t == 22 && ttl > EXPIRE_MAX {
                        return Err(Broken {
                            offset: at,
                            what: format!("hash field expire time {ttl}"),
                        });
                    }
                    let h = self.hash("a hash field")?;
                    fields.insert(h, &mut self.out);
                    self.skip("a hash value")?;
                }
                if fields.duplicated() {
                    return Err(self.broken("a field occurs twice in a hash".into()));
                }
                Ok(())
            }
            6 => Err(self.broken("a pre-release (4.0 RC) module value".into())),
            7 => {
                self.len("a module id")?;
                self.module_value()?;
                self.out.modules += 1;
                Ok(())
            }
            9 => Err(self.broken("a zipmap (Redis 2.4 hash encoding): not supported".into())),
            10 => {
                let at = self.pos;
                let b = self.blob("a list ziplist")?;
                encodings::ziplist(&b).map(drop).map_err(|e| Broken {
                    offset: at,
                    what: e,
                })
            }
            11 => {
                let at = self.pos;
                let b = self.blob("an intset")?;
                encodings::intset(&b).map(drop).map_err(|e| Broken {
                    offset: at,
                    what: e,
                })
            }
            12 | 13 => {
                let at = self.pos;
                let b = self.blob("a ziplist of pairs")?;
                encodings::ziplist(&b)
                    .and_then(|e| encodings::unique_fields(&e, 2))
                    .map_err(|e| Broken {
                        offset: at,
                        what: e,
                    })
            }
            14 | 18 => {
                let n = self.len("a quicklist node count")?;
                for _ in 0..n {
                    let plain = if t == 18 {
                        match self.len("a quicklist node container")? {
                            1 => true,
                            2 => false,
                            c => {
                                return Err(self.broken(format!(
                                    "quicklist node container {c}: not 1 (plain) or 2 (packed)"
                                )));
                            }
                        }
                    } else {
                        false
                    };
                    let at = self.pos;
                    if plain {
                        if self.string("a quicklist plain node", Want::Skip)? == 0 {
                            return Err(Broken {
                                offset: at,
                                what: "an empty quicklist node".into(),
                            });
                        }
                        continue;
                    }
                    let b = self.blob("a quicklist node")?;
                    if b.is_empty() {
                        return Err(Broken {
                            offset: at,
                            what: "an empty quicklist node".into(),
                        });
                    }
                    let r = if t == 14 {
                        encodings::ziplist(&b)
                    } else {
                        encodings::listpack(&b)
                    };
                    r.map_err(|e| Broken {
                        offset: at,
                        what: e,
                    })?;
                }
                Ok(())
            }
            16 | 17 | 20 | 23 | 25 => {
                if t == 25 {
                    self.min_expire()?;
                }
                let tuple = match t {
                    20 => 1,
                    23 | 25 => 3,
                    _ => 2,
                };
                let at = self.pos;
                let b = self.blob("a listpack")?;
                encodings::listpack(&b)
                    .and_then(|e| encodings::unique_fields(&e, tuple))
                    .map_err(|e| Broken {
                        offset: at,
                        what: e,
                    })
            }
            15 | 19 | 21 => self.stream(t),
            _ => Err(self.broken(format!("unknown value type {t}"))),
        }
    }

    /// `n` members (set members, sorted set members, hash fields), each unique, each followed by
    /// what `then` reads.
    fn members(&mut self, n: u64, what: &str, mut then: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        let mut seen = Dups::new();
        seen.reserve(n);
        for _ in 0..n {
            let h = self.hash(what)?;
            seen.insert(h, &mut self.out);
            then(self)?;
        }
        if seen.duplicated() {
            return Err(self.broken(format!("{what} occurs twice")));
        }
        Ok(())
    }

    /// A sorted set score: binary (ZSET_2) or the old text form; never NaN.
    fn score(&mut self, binary: bool) -> R<()> {
        let at = self.pos;
        let v = if binary {
            f64::from_le_bytes(self.bytes("a score")?)
        } else {
            let n = self.u8("a score")?;
            match n {
                253 => f64::NAN,
                254 => f64::INFINITY,
                255 => f64::NEG_INFINITY,
                _ => {
                    let mut b = vec![0u8; usize::from(n)];
                    self.fill(&mut b, "a score")?;
                    std::str::from_utf8(&b)
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok())
                        .ok_or_else(|| Broken {
                            offset: at,
                            what: format!(
                                "score {:?} is not a number",
                                String::from_utf8_lossy(&b)
                            ),
                        })?
                }
            }
        };
        if v.is_nan() {
            return Err(Broken {
                offset: at,
                what: "a NaN score".into(),
            });
        }
        Ok(())
    }

    /// The minimum field expire time that leads a hash with field TTLs.
    fn min_expire(&mut self) -> R<()> {
        let at = self.pos;
        let t = u64::from_le_bytes(self.bytes("a hash's minimum expire time")?);
        // EB_EXPIRE_TIME_INVALID (2^48) is allowed: no field has a TTL.
        if t > EXPIRE_MAX + 1 {
            return Err(Broken {
                offset: at,
                what: format!("hash minimum expire time {t}"),
            });
        }
        Ok(())
    }

    /// A module value: opcodes (signed, unsigned, float, double, string) up to the EOF opcode.
    fn module_value(&mut self) -> R<()> {
        loop {
            match self.len("a module opcode")? {
                0 => return Ok(()),
                1 | 2 => {
                    let _ = self.len_or_enc("a module integer")?;
                }
                3 => {
                    self.bytes::<4>("a module float")?;
                }
                4 => {
                    self.bytes::<8>("a module double")?;
                }
                5 => self.skip("a module string")?,
                op => return Err(self.broken(format!("unknown module opcode {op}"))),
            }
        }
    }

    fn stream_id(&mut self, what: &str) -> R<()> {
        self.len(what)?;
        self.len(what)?;
        Ok(())
    }

    fn stream(&mut self, t: u8) -> R<()> {
        let nodes = self.len("a stream's listpack count")?;
        let mut node_keys = HashSet::new();
        for _ in 0..nodes {
            let at = self.pos;
            let key = self.blob("a stream node key")?;
            let key: [u8; 16] = key.try_into().map_err(|k: Vec<u8>| Broken {
                offset: at,
                what: format!("a stream node key of {} bytes, not 16", k.len()),
            })?;
            if !node_keys.insert(key) {
                return Err(Broken {
                    offset: at,
                    what: "a stream node key occurs twice".into(),
                });
            }
            let at = self.pos;
            let b = self.blob("a stream listpack")?;
            let entries = encodings::listpack(&b).map_err(|e| Broken {
                offset: at,
                what: e,
            })?;
            if entries.is_empty() {
                return Err(Broken {
                    offset: at,
                    what: "an empty listpack in a stream".into(),
                });
            }
        }
        let length = self.len("a stream length")?;
        self.stream_id("a stream's last id")?;
        if t >= 19 {
            self.stream_id("a stream's first id")?;
            self.stream_id("a stream's max deleted id")?;
            self.len("a stream's entries added")?;
        }
        if length > 0 && nodes == 0 {
            return Err(self.broken(format!("a stream of {length} entries with no listpack")));
        }
        let groups = self.len("a stream's consumer group count")?;
        let mut names = HashSet::new();
        for _ in 0..groups {
            let at = self.pos;
            let h = self.hash("a consumer group name")?;
            if !names.insert(h) {
                return Err(Broken {
                    offset: at,
                    what: "a consumer group name occurs twice".into(),
                });
            }
            self.stream_id("a consumer group's last id")?;
            if t >= 19 {
                self.len("a consumer group's offset")?;
            }
            let pel = self.len("a consumer group's PEL size")?;
            let mut group_pel: HashSet<[u8; 16]> = HashSet::new();
            for _ in 0..pel {
                let at = self.pos;
                let id = self.bytes::<16>("a PEL entry id")?;
                if !group_pel.insert(id) {
                    return Err(Broken {
                        offset: at,
                        what: "a PEL entry occurs twice in a consumer group".into(),
                    });
                }
                self.bytes::<8>("a PEL delivery time")?;
                self.len("a PEL delivery count")?;
            }
            let consumers = self.len("a consumer count")?;
            let mut cnames = HashSet::new();
            let mut owned: HashSet<[u8; 16]> = HashSet::new();
            for _ in 0..consumers {
                let at = self.pos;
                let h = self.hash("a consumer name")?;
                if !cnames.insert(h) {
                    return Err(Broken {
                        offset: at,
                        what: "a consumer name occurs twice in a group".into(),
                    });
                }
                self.bytes::<8>("a consumer's seen time")?;
                if t >= 21 {
                    self.bytes::<8>("a consumer's active time")?;
                }
                let n = self.len("a consumer's PEL size")?;
                for _ in 0..n {
                    let at = self.pos;
                    let id = self.bytes::<16>("a consumer PEL entry id")?;
                    if !group_pel.contains(&id) {
                        return Err(Broken {
                            offset: at,
                            what: "a consumer PEL entry its group's PEL does not have".into(),
                        });
                    }
                    if !owned.insert(id) {
                        return Err(Broken {
                            offset: at,
                            what: "a PEL entry owned twice".into(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// EB_EXPIRE_TIME_MAX: the latest expire time a hash field can have (2^48 - 1 ms).
const EXPIRE_MAX: u64 = (1 << 48) - 1;

#[cfg(test)]
mod tests {
    use super::*;

    /// An RDB of version 10 around `body` (records before EOF), with a zero checksum.
    pub fn rdb(body: &[u8]) -> Vec<u8> {
        let mut v = b"REDIS0010".to_vec();
        v.extend_from_slice(body);
        v.push(0xff);
        v.extend_from_slice(&[0; 8]);
        v
    }

    fn s(x: &str) -> Vec<u8> {
        let mut v = vec![x.len() as u8];
        v.extend_from_slice(x.as_bytes());
        v
    }

    fn walked(body: &[u8]) -> R<Option<Walked>> {
        walk(&rdb(body)[..])
    }

    #[test]
    fn strings_sets_and_keys() {
        let body = [
            vec![0xfe, 0, 0],
            s("k"),
            s("v"),
            vec![2],
            s("s"),
            vec![2],
            s("a"),
            s("b"),
        ]
        .concat();
        let got = walked(&[body.clone(), vec![2], s("s")].concat());
        assert!(got.is_err(), "a set key without its value");
        let w = walked(&body).expect("valid").expect("walked");
        assert_eq!((w.keys, w.databases, w.dups_checked), (2, 1, true));
        // The set's members twice: refused.
        let dup = [vec![0xfe, 0], vec![2], s("k"), vec![2], s("a"), s("a")].concat();
        assert!(walked(&dup).expect_err("refused").what.contains("twice"));
        // "5" and the integer 5 are the same member.
        let dup = [vec![2], s("k"), vec![2], s("5"), vec![0xc0, 5]].concat();
        assert!(walked(&dup).is_err());
        // The same key twice in one database; fine in two.
        let twice = [vec![0], s("k"), s("v"), vec![0], s("k"), s("w")].concat();
        assert!(
            walked(&twice)
                .expect_err("refused")
                .what
                .contains("key occurs twice")
        );
        let apart = [vec![0], s("k"), s("v"), vec![0xfe, 3, 0], s("k"), s("w")].concat();
        assert_eq!(walked(&apart).expect("valid").expect("walked").databases, 4);
    }

    #[test]
    fn truncation_unknown_types_and_trailing_bytes_are_refused() {
        let body = [vec![0], s("key"), s("value")].concat();
        let good = rdb(&body);
        for cut in 9..good.len() {
            assert!(walk(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut after = good.clone();
        after.push(0);
        assert!(walk(&after[..]).is_err());
        // Type 20 (a listpack set) is Redis 7.2's, not in an RDB of version 10.
        assert!(walked(&[vec![20], s("k"), s("")].concat()).is_err());
        let newer = [b"REDIS0013".as_slice(), &[0xff; 9]].concat();
        assert_eq!(walk(&newer[..]), Ok(None));
    }

    #[test]
    fn scores_and_lzf_strings() {
        let nan = [vec![3], s("z"), vec![1], s("m"), vec![253]].concat();
        assert!(walked(&nan).expect_err("refused").what.contains("NaN"));
        let ok = [vec![3], s("z"), vec![1], s("m"), s("1.5")].concat();
        assert!(walked(&ok).is_ok());
        let bad = [vec![3], s("z"), vec![1], s("m"), s("x")].concat();
        assert!(walked(&bad).is_err());
        // An LZF string value: "abcabcabca".
        let lzf = [
            vec![0],
            s("k"),
            vec![0xc3, 6, 10, 2, b'a', b'b', b'c', 0xa0, 2],
        ]
        .concat();
        assert!(walked(&lzf).is_ok());
        let short = [
            vec![0],
            s("k"),
            vec![0xc3, 6, 11, 2, b'a', b'b', b'c', 0xa0, 2],
        ]
        .concat();
        assert!(walked(&short).expect_err("refused").what.contains("LZF"));
    }
}
