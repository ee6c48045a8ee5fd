//! The RDB walker and the packed encodings inside an RDB (listpack, ziplist, intset). Properties:
//! the walk's verdict does not depend on how its reader cuts the bytes; a walk that accepts an
//! input refuses it with one more byte after the checksum; the validators never panic and a
//! listpack or ziplist they accept has entries that lie inside it.
#![no_main]
use std::io::Read;

use backup_agent::redis_snapshot::{encodings, walk};
use libfuzzer_sys::fuzz_target;

/// A reader that hands out at most `step` bytes a call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = walk::walk(data);
    let step = data.first().map_or(1, |b| usize::from(b % 7) + 1);
    let trickled = walk::walk(Trickle { data, step });
    assert_eq!(whole, trickled);
    if matches!(whole, Ok(Some(_))) {
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(walk::walk(&longer[..]).is_err(), "a byte after the checksum");
    }
    if let Ok(entries) = encodings::listpack(data) {
        assert!(entries.len() <= data.len());
    }
    if let Ok(entries) = encodings::ziplist(data) {
        assert!(entries.len() <= data.len());
    }
    if let Ok(n) = encodings::intset(data) {
        assert!(n as usize <= data.len());
    }
});
