//! The RDB check (magic, end opcode, CRC64) of a Redis snapshot stream. Property: the verdict does
//! not depend on how the stream is cut into chunks.
#![no_main]
use backup_agent::redis_snapshot::rdb::RdbCheck;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut whole = RdbCheck::new();
    whole.update(data);
    let whole = format!("{:?}", whole.finish());
    // Chunk sizes from the data itself.
    let mut chunked = RdbCheck::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (data[i % data.len()] as usize % 13 + 1).min(rest.len());
        chunked.update(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    assert_eq!(whole, format!("{:?}", chunked.finish()));
});
