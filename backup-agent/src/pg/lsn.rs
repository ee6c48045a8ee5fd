//! Log sequence numbers and WAL segment files: parsing, formatting and the segment arithmetic,
//! in one place.
//!
//! An LSN is a byte position in the WAL, written `X/Y` (high and low 32 bits in hex). WAL is
//! stored in segments of `wal_segment_size` bytes (16 MiB by default, a power of two from 1 MiB
//! to 1 GiB); segment number `n` holds the LSNs `n * size .. (n + 1) * size`, and its file name is
//! the timeline, then `n` split into a 4 GiB "xlogid" and the segment within it, each as 8 hex
//! digits (`000000010000000000000003`).

/// A position in the WAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/Y` (surrounding blanks allowed).
    pub fn parse(s: &str) -> Option<Self> {
        let (hi, lo) = s.trim().split_once('/')?;
        let hi = u64::from_str_radix(hi, 16)
            .ok()
            .filter(|h| *h <= 0xFFFF_FFFF)?;
        let lo = u64::from_str_radix(lo, 16)
            .ok()
            .filter(|l| *l <= 0xFFFF_FFFF)?;
        Some(Self((hi << 32) | lo))
    }

    /// The number of the segment that holds this position.
    pub fn segment(self, seg_size: u64) -> u64 {
        self.0 / seg_size
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// `X/Y` of a position held as a number.
pub fn format_lsn(lsn: u64) -> String {
    Lsn(lsn).to_string()
}

/// The position `X/Y` names, as a number.
pub fn parse_lsn(s: &str) -> Option<u64> {
    Lsn::parse(s).map(|l| l.0)
}

/// The segments that hold the WAL from `from` up to (not including) `to`.
pub fn segments_between(from: u64, to: u64, seg_size: u64) -> std::ops::Range<u64> {
    if to <= from {
        return Lsn(from).segment(seg_size)..Lsn(from).segment(seg_size);
    }
    Lsn(from).segment(seg_size)..Lsn(to - 1).segment(seg_size) + 1
}

/// WAL segment file name: timeline, then the segment number split by 4 GiB "xlogid".
pub fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let per_id = 0x1_0000_0000 / seg_size;
    format!("{tli:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// The timeline and segment number of a name that starts with a WAL segment name
/// (`TTTTTTTTXXXXXXXXYYYYYYYY`, then anything: `.partial`, a suffix); `None` for other names
/// (history files) and for a segment number past what `seg_size` allows.
pub fn parse_segment_name(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    let hex = name.get(..24)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let per_id = 0x1_0000_0000 / seg_size;
    let tli = u32::from_str_radix(&hex[..8], 16).ok()?;
    let id = u64::from_str_radix(&hex[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&hex[16..24], 16).ok()?;
    (seg < per_id).then_some((tli, id * per_id + seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        for s in ["0/0", "0/3000028", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(format_lsn(parse_lsn(s).expect("parses")), s);
        }
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(parse_lsn("100000000/0"), None, "a half wider than 32 bits");
    }

    #[test]
    fn segment_names_and_sizes() {
        assert_eq!(segment_name(1, 1, 16 << 20), "000000010000000000000001");
        assert_eq!(segment_name(2, 256, 16 << 20), "000000020000000100000000");
        assert_eq!(segment_name(1, 0x1FF, 16 << 20), "0000000100000001000000FF");
        for (tli, segno) in [(1, 1), (2, 256), (1, 0x1FF)] {
            let name = segment_name(tli, segno, 16 << 20);
            assert_eq!(parse_segment_name(&name, 16 << 20), Some((tli, segno)));
            let partial = format!("{name}.partial.zst");
            assert_eq!(parse_segment_name(&partial, 16 << 20), Some((tli, segno)));
        }
        assert_eq!(parse_segment_name("00000002.history", 16 << 20), None);
        assert_eq!(
            parse_segment_name("000000010000000000000100", 16 << 20),
            None
        );
    }

    #[test]
    fn segment_arithmetic() {
        let seg = 16 << 20;
        assert_eq!(Lsn(0x3000028).segment(seg), 3);
        // The switch point is a segment's end: the segment it ends is the last one.
        assert_eq!(segments_between(0x2000028, 0x5000000, seg), 2..5);
        assert_eq!(segments_between(0x5000000, 0x5000000, seg), 5..5);
    }
}
