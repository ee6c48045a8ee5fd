//! The replication connection's framing (`split_message`, under `read_raw`): any bytes from a
//! server. Property: what comes off re-encodes to exactly the bytes consumed; an impossible
//! length is an error, never a panic.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut consumed = Vec::new();
    loop {
        match backup_agent::pg::conn::split_message(&mut buf) {
            Ok(Some((tag, body))) => {
                consumed.push(tag);
                consumed.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
                consumed.extend_from_slice(&body);
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(&data[..consumed.len()], &consumed[..]);
    assert_eq!(&data[consumed.len()..], &buf[..]);
});
