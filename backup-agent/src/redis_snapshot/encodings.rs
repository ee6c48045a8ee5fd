//! The packed encodings an RDB carries inside string blobs: listpack, ziplist, intset, and the
//! LZF compression of strings. Each validator checks a whole blob the way redis-server does when
//! it validates deeply (every entry, its length fields, the header's byte count and element
//! count, the end byte), and also the duplicate rules that make redis-server refuse or crash on a
//! load (a field twice in a hash, a member twice in a set or sorted set). The facts are in
//! docs/internals/rdb-format.md.

use std::fmt::Write as _;

/// One entry of a listpack or ziplist: a string, or an integer (compared as its decimal text,
/// as redis-server does when it looks for duplicates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Entry<'_> {
    /// The entry's bytes as redis-server compares them.
    pub fn text(&self, scratch: &mut String) -> Vec<u8> {
        match self {
            Entry::Str(s) => s.to_vec(),
            Entry::Int(i) => {
                scratch.clear();
                let _ = write!(scratch, "{i}");
                scratch.as_bytes().to_vec()
            }
        }
    }
}

fn le(b: &[u8]) -> u64 {
    b.iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// Sign-extends the low `bits` of `v`.
fn signed(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The frame listpacks and ziplists share: at least `min` bytes, the total size in the first 4
/// (little-endian) equal to the blob's, and the end byte 0xFF.
fn frame(b: &[u8], what: &str, min: usize) -> Result<(), String> {
    if b.len() < min {
        return Err(format!(
            "{what} of {} bytes: shorter than its header",
            b.len()
        ));
    }
    let total = le(&b[0..4]) as usize;
    if total != b.len() {
        return Err(format!(
            "{what} header says {total} bytes, the blob has {}",
            b.len()
        ));
    }
    if b[b.len() - 1] != 0xff {
        return Err(format!("{what} does not end with 0xFF"));
    }
    Ok(())
}

/// The entries of a listpack: 6-byte header (total bytes, element count or 65535), entries each
/// followed by their back-length, and the end byte 0xFF.
pub fn listpack(b: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    frame(b, "listpack", 7)?;
    let declared = le(&b[4..6]) as usize;
    let last = b.len() - 1;
    let mut p = 6;
    let mut out = Vec::new();
    while b[p] != 0xff {
        let e = b[p];
        // (size of the encoding and length bytes, size of the data)
        let (head, data) = match e {
            _ if e & 0x80 == 0 => (1, 0),
            _ if e & 0xc0 == 0x80 => (1, usize::from(e & 0x3f)),
            _ if e & 0xe0 == 0xc0 => (2, 0),
            _ if e & 0xf0 == 0xe0 => (2, 0),
            0xf1 => (3, 0),
            0xf2 => (4, 0),
            0xf3 => (5, 0),
            0xf4 => (9, 0),
            0xf0 => (5, 0),
            _ => {
                return Err(format!(
                    "listpack entry at {p}: bad encoding byte 0x{e:02x}"
                ));
            }
        };
        // Reading the length bytes must stay inside, as must the whole entry.
        let len_bytes = match e {
            _ if e & 0xf0 == 0xe0 => 2,
            0xf0 => 5,
            _ => 1,
        };
        if p + len_bytes > last {
            return Err(format!(
                "listpack entry at {p}: its length runs past the end"
            ));
        }
        let data = match e {
            _ if e & 0xf0 == 0xe0 => (usize::from(e & 0x0f) << 8) | usize::from(b[p + 1]),
            0xf0 => le(&b[p + 1..p + 5]) as usize,
            _ => data,
        };
        let entry_len = head + data;
        let back = backlen_size(entry_len as u64);
        if p + entry_len + back > last {
            return Err(format!("listpack entry at {p} runs past the end"));
        }
        let value = match e {
            _ if e & 0x80 == 0 => Entry::Int(i64::from(e & 0x7f)),
            _ if e & 0xe0 == 0xc0 => {
                Entry::Int(signed((u64::from(e & 0x1f) << 8) | u64::from(b[p + 1]), 13))
            }
            0xf1 => Entry::Int(signed(le(&b[p + 1..p + 3]), 16)),
            0xf2 => Entry::Int(signed(le(&b[p + 1..p + 4]), 24)),
            0xf3 => Entry::Int(signed(le(&b[p + 1..p + 5]), 32)),
            0xf4 => Entry::Int(le(&b[p + 1..p + 9]) as i64),
            _ => Entry::Str(&b[p + head..p + entry_len]),
        };
        let next = p + entry_len + back;
        if decode_backlen(&b[p + entry_len..next]) != Some(entry_len as u64) {
            return Err(format!(
                "listpack entry at {p}: its back-length does not match its length"
            ));
        }
        out.push(value);
        p = next;
    }
    if p != last {
        return Err(format!("listpack ends at {p}, before its last byte {last}"));
    }
    if declared != 65535 && declared != out.len() {
        return Err(format!(
            "listpack header counts {declared} entries, it holds {}",
            out.len()
        ));
    }
    Ok(out)
}

/// Bytes the back-length of an entry of `l` bytes takes.
fn backlen_size(l: u64) -> usize {
    match l {
        0..=127 => 1,
        128..16383 => 2,
        16383..2097151 => 3,
        2097151..268435455 => 4,
        _ => 5,
    }
}

/// A back-length read from its last byte backwards, as redis-server reads it.
fn decode_backlen(b: &[u8]) -> Option<u64> {
    let mut val = 0u64;
    let mut shift = 0;
    for &x in b.iter().rev() {
        val |= u64::from(x & 127) << shift;
        if x & 128 == 0 {
            return Some(val);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    // Ran off the start of the back-length: redis-server would read the entry's own bytes.
    None
}

/// The entries of a ziplist: 10-byte header (total bytes, offset of the last entry, element
/// count or 65535), entries each led by the previous entry's length, and the end byte 0xFF.
pub fn ziplist(b: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    frame(b, "ziplist", 11)?;
    let last = b.len() - 1;
    let tail = le(&b[4..8]) as usize;
    if tail > last {
        return Err(format!("ziplist tail offset {tail} is past its end"));
    }
    let declared = le(&b[8..10]) as usize;
    let mut p = 10;
    let mut prev_size = 0usize;
    let mut prev_at = None;
    let mut out = Vec::new();
    while b[p] != 0xff {
        let (prevlen_size, prevlen) = if b[p] < 254 {
            (1, usize::from(b[p]))
        } else {
            if p + 5 > last {
                return Err(format!(
                    "ziplist entry at {p}: its previous length runs past the end"
                ));
            }
            (5, le(&b[p + 1..p + 5]) as usize)
        };
        let q = p + prevlen_size;
        if q > last {
            return Err(format!("ziplist entry at {p} runs past the end"));
        }
        let e = b[q];
        let (len_size, len) = if e < 0xc0 {
            match e & 0xc0 {
                0x00 => (1, usize::from(e & 0x3f)),
                0x40 => {
                    if q + 2 > last {
                        return Err(format!(
                            "ziplist entry at {p}: its length runs past the end"
                        ));
                    }
                    (2, (usize::from(e & 0x3f) << 8) | usize::from(b[q + 1]))
                }
                _ => {
                    if q + 5 > last {
                        return Err(format!(
                            "ziplist entry at {p}: its length runs past the end"
                        ));
                    }
                    let mut be = [0u8; 4];
                    be.copy_from_slice(&b[q + 1..q + 5]);
                    (5, u32::from_be_bytes(be) as usize)
                }
            }
        } else {
            let len = match e {
                0xfe => 1,
                0xc0 => 2,
                0xf0 => 3,
                0xd0 => 4,
                0xe0 => 8,
                0xf1..=0xfd => 0,
                _ => return Err(format!("ziplist entry at {p}: bad encoding byte 0x{e:02x}")),
            };
            (1, len)
        };
        let head = prevlen_size + len_size;
        if p + head + len > last {
            return Err(format!("ziplist entry at {p} runs past the end"));
        }
        if prevlen > p - 10 {
            return Err(format!(
                "ziplist entry at {p}: its previous length points before the first entry"
            ));
        }
        if prevlen != prev_size {
            return Err(format!(
                "ziplist entry at {p}: says the previous entry has {prevlen} bytes, it has {prev_size}"
            ));
        }
        let d = &b[p + head..p + head + len];
        let value = if e < 0xc0 {
            Entry::Str(d)
        } else {
            match e {
                0xfe => Entry::Int(signed(le(d), 8)),
                0xc0 => Entry::Int(signed(le(d), 16)),
                0xf0 => Entry::Int(signed(le(d), 24)),
                0xd0 => Entry::Int(signed(le(d), 32)),
                0xe0 => Entry::Int(le(d) as i64),
                _ => Entry::Int(i64::from(e & 0x0f) - 1),
            }
        };
        out.push(value);
        prev_size = head + len;
        prev_at = Some(p);
        p += head + len;
    }
    if p != last {
        return Err(format!("ziplist ends at {p}, before its last byte {last}"));
    }
    if let Some(at) = prev_at
        && at != tail
    {
        return Err(format!(
            "ziplist tail offset {tail} is not its last entry (at {at})"
        ));
    }
    if declared != 65535 && declared != out.len() {
        return Err(format!(
            "ziplist header counts {declared} entries, it holds {}",
            out.len()
        ));
    }
    Ok(out)
}

/// An intset: encoding (2, 4 or 8 bytes an integer), count (at least one), then the integers in
/// strictly increasing order. Returns the count.
pub fn intset(b: &[u8]) -> Result<u64, String> {
    if b.len() < 8 {
        return Err(format!(
            "intset of {} bytes: shorter than its header",
            b.len()
        ));
    }
    let width = le(&b[0..4]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(format!("intset encoding {width}: not 2, 4 or 8"));
    }
    let count = le(&b[4..8]) as usize;
    if count == 0 {
        return Err("empty intset".into());
    }
    if count.checked_mul(width).and_then(|n| n.checked_add(8)) != Some(b.len()) {
        return Err(format!(
            "intset of {count} integers of {width} bytes in a blob of {} bytes",
            b.len()
        ));
    }
    let mut prev = None;
    for c in b[8..].chunks_exact(width) {
        let v = signed(le(c), (width * 8) as u32);
        if prev.is_some_and(|p| v <= p) {
            return Err("intset not in strictly increasing order (or a duplicate)".into());
        }
        prev = Some(v);
    }
    Ok(count as u64)
}

/// Checks that every `tuple`-th entry (a hash field, a set or sorted-set member) occurs once, and
/// that the entries make whole tuples.
pub fn unique_fields(entries: &[Entry<'_>], tuple: usize) -> Result<(), String> {
    if !entries.len().is_multiple_of(tuple) {
        return Err(format!(
            "{} entries do not make whole groups of {tuple}",
            entries.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut scratch = String::new();
    for e in entries.iter().step_by(tuple) {
        if !seen.insert(e.text(&mut scratch)) {
            return Err(format!(
                "duplicate field {:?}",
                String::from_utf8_lossy(&e.text(&mut scratch))
            ));
        }
    }
    Ok(())
}

/// LZF decompression (the format redis-server compresses strings with), streamed: reads the
/// `clen` compressed bytes through `fill` (which fills its buffer exactly), hands the output to
/// `out` in pieces, and fails unless it makes exactly `ulen` bytes. Keeps the last 8 KiB of output,
/// the furthest a back reference reaches, in `window`: the caller's, reused from call to call.
pub fn lzf(
    clen: u64,
    ulen: u64,
    window: &mut Vec<u8>,
    mut fill: impl FnMut(&mut [u8]) -> std::io::Result<()>,
    mut out: impl FnMut(&[u8]),
) -> Result<(), LzfError> {
    const WINDOW: usize = 8192;
    // Output is handed on (all but the window dropped) once this much has built up.
    const FLUSH: usize = 64 * 1024;
    fn byte(
        fill: &mut impl FnMut(&mut [u8]) -> std::io::Result<()>,
        ip: &mut u64,
        clen: u64,
    ) -> Result<u8, LzfError> {
        if *ip >= clen {
            return Err(LzfError::Bad(
                "a back reference runs past the compressed data",
            ));
        }
        *ip += 1;
        let mut b = [0u8; 1];
        fill(&mut b).map_err(LzfError::Io)?;
        Ok(b[0])
    }
    if clen == 0 {
        return Err(LzfError::Bad("no compressed bytes"));
    }
    let buf = window;
    buf.clear();
    // Output offset of buf[0], and how much of buf was handed on already.
    let mut base: u64 = 0;
    let mut handed = 0;
    let mut ip: u64 = 0;
    while ip < clen {
        let ctrl = byte(&mut fill, &mut ip, clen)?;
        let op = base + buf.len() as u64;
        if ctrl < 32 {
            let n = usize::from(ctrl) + 1;
            if op + n as u64 > ulen {
                return Err(LzfError::Bad("more output than the declared length"));
            }
            if ip + n as u64 > clen {
                return Err(LzfError::Bad("a literal run past the compressed data"));
            }
            let at = buf.len();
            buf.resize(at + n, 0);
            fill(&mut buf[at..]).map_err(LzfError::Io)?;
            ip += n as u64;
        } else {
            let mut len = usize::from(ctrl >> 5);
            let hi = usize::from(ctrl & 0x1f) << 8;
            if len == 7 {
                len += usize::from(byte(&mut fill, &mut ip, clen)?);
            }
            let dist = hi + usize::from(byte(&mut fill, &mut ip, clen)?) + 1;
            let n = len + 2;
            if op + n as u64 > ulen {
                return Err(LzfError::Bad("more output than the declared length"));
            }
            if dist as u64 > op {
                return Err(LzfError::Bad(
                    "a back reference before the start of the output",
                ));
            }
            // buf holds at least the last WINDOW bytes (or all of them), and dist <= WINDOW.
            // An overlapping reference repeats the last `dist` bytes: everything from `from` on
            // is periodic, so copying from `from` in growing pieces (multiples of `dist` but the
            // last) lays the pattern down in doubling steps.
            let from = buf.len() - dist;
            let mut left = n;
            while left > 0 {
                let k = left.min(buf.len() - from);
                buf.extend_from_within(from..from + k);
                left -= k;
            }
        }
        if buf.len() >= FLUSH {
            out(&buf[handed..]);
            let dropped = buf.len() - WINDOW;
            buf.drain(..dropped);
            base += dropped as u64;
            handed = WINDOW;
        }
    }
    out(&buf[handed..]);
    if base + buf.len() as u64 != ulen {
        return Err(LzfError::Bad("less output than the declared length"));
    }
    Ok(())
}

#[derive(Debug)]
pub enum LzfError {
    Io(std::io::Error),
    Bad(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listpack of `entries` (already encoded, back-length included).
    fn lp(entries: &[&[u8]], count: u16) -> Vec<u8> {
        let body: Vec<u8> = entries.concat();
        let total = 6 + body.len() + 1;
        let mut b = (total as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&body);
        b.push(0xff);
        b
    }

    #[test]
    fn listpack_entries_decode_and_damage_is_refused() {
        // "ab" (6-bit string), 5 (7-bit uint), -1 (13-bit int), 1000 (16-bit int).
        let good = lp(
            &[
                &[0x82, b'a', b'b', 3],
                &[0x05, 1],
                &[0xdf, 0xff, 2],
                &[0xf1, 0xe8, 0x03, 3],
            ],
            4,
        );
        assert_eq!(
            listpack(&good).expect("valid"),
            vec![
                Entry::Str(b"ab"),
                Entry::Int(5),
                Entry::Int(-1),
                Entry::Int(1000)
            ]
        );
        let unknown = lp(&[&[0x82, b'a', b'b', 3]], 65535);
        assert_eq!(listpack(&unknown).expect("count unknown").len(), 1);
        for (what, bad) in [
            ("wrong count", lp(&[&[0x82, b'a', b'b', 3]], 2)),
            ("wrong back-length", lp(&[&[0x82, b'a', b'b', 4]], 1)),
            ("bad encoding byte", lp(&[&[0xf5, 1]], 1)),
            ("string past the end", lp(&[&[0x85, b'a', 3]], 1)),
        ] {
            assert!(listpack(&bad).is_err(), "{what}");
        }
        let mut short = good.clone();
        short[0] += 1;
        assert!(listpack(&short).is_err(), "total bytes");
        assert!(listpack(&good[..6]).is_err(), "truncated");
    }

    fn zl(entries: &[&[u8]], count: u16) -> Vec<u8> {
        let body: Vec<u8> = entries.concat();
        let total = 10 + body.len() + 1;
        let tail = 10 + body.len() - entries.last().map_or(0, |e| e.len());
        let mut b = (total as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&(tail as u32).to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&body);
        b.push(0xff);
        b
    }

    #[test]
    fn ziplist_entries_decode_and_damage_is_refused() {
        // "ab", then 12 (immediate 0xfd), then -2 as an 8-bit integer.
        let good = zl(&[&[0, 0x02, b'a', b'b'], &[4, 0xfd], &[2, 0xfe, 0xfe]], 3);
        assert_eq!(
            ziplist(&good).expect("valid"),
            vec![Entry::Str(b"ab"), Entry::Int(12), Entry::Int(-2)]
        );
        for (what, bad) in [
            (
                "wrong prevlen",
                zl(&[&[0, 0x02, b'a', b'b'], &[3, 0xfd]], 2),
            ),
            ("wrong count", zl(&[&[0, 0x02, b'a', b'b']], 2)),
            ("bad encoding", zl(&[&[0, 0xc1]], 1)),
        ] {
            assert!(ziplist(&bad).is_err(), "{what}");
        }
        let mut bad_tail = good.clone();
        bad_tail[4] = 10;
        assert!(ziplist(&bad_tail).is_err(), "tail offset");
    }

    #[test]
    fn intsets_are_whole_and_increasing() {
        let mut b = 2u32.to_le_bytes().to_vec();
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&(-5i16).to_le_bytes());
        b.extend_from_slice(&7i16.to_le_bytes());
        assert_eq!(intset(&b), Ok(2));
        let mut dup = b.clone();
        dup[10..12].copy_from_slice(&(-5i16).to_le_bytes());
        assert!(intset(&dup).is_err());
        assert!(intset(&b[..11]).is_err());
        let mut empty = 2u32.to_le_bytes().to_vec();
        empty.extend_from_slice(&0u32.to_le_bytes());
        assert!(intset(&empty).is_err());
    }

    #[test]
    fn duplicate_fields_compare_as_text() {
        let e = [
            Entry::Str(b"5"),
            Entry::Str(b"x"),
            Entry::Int(5),
            Entry::Str(b"y"),
        ];
        assert!(unique_fields(&e, 2).is_err());
        assert!(unique_fields(&e[..3], 2).is_err(), "half a pair");
        assert!(unique_fields(&e[..2], 2).is_ok());
    }

    fn unlzf(c: &[u8], ulen: u64) -> Result<Vec<u8>, String> {
        let mut rest = c;
        let mut out = vec![];
        lzf(
            c.len() as u64,
            ulen,
            &mut Vec::new(),
            |b| std::io::Read::read_exact(&mut rest, b),
            |p| out.extend_from_slice(p),
        )
        .map_err(|e| format!("{e:?}"))?;
        Ok(out)
    }

    #[test]
    fn lzf_literals_and_back_references() {
        // "abc" as a literal run, then a back reference of length 5+2... of distance 3: "abcabcabca".
        let c = [2, b'a', b'b', b'c', 0xa0, 2];
        assert_eq!(unlzf(&c, 10).expect("valid"), b"abcabcabca");
        assert!(unlzf(&c, 11).is_err(), "declared longer");
        assert!(unlzf(&c, 9).is_err(), "declared shorter");
        assert!(unlzf(&[0xa0, 2], 7).is_err(), "reference before the start");
        assert!(unlzf(&[5, b'a'], 6).is_err(), "literal past the input");
        assert!(unlzf(&[], 0).is_err(), "no input");
        // About 200 000 bytes from a literal "xyz" and overlapping references of 264 bytes at
        // distance 3: past the flush and the window, the output still exact.
        let mut c = vec![2, b'x', b'y', b'z'];
        let mut want = b"xyz".to_vec();
        while want.len() < 200_000 {
            c.extend_from_slice(&[0xe0, 255, 2]);
            for _ in 0..264 {
                want.push(want[want.len() - 3]);
            }
        }
        assert_eq!(unlzf(&c, want.len() as u64).expect("long"), want);
    }
}
