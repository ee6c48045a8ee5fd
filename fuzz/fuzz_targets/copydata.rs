//! The CopyData payloads of the two replication streams (`pg::copydata`): XLogData and keepalive
//! on the WAL stream, new-archive/data/progress/manifest on BASE_BACKUP. The first byte picks the
//! stream. Property: a decoded message re-encodes to exactly the bytes it came from (a keepalive
//! to its first 18, the rest of a longer one being ignored); anything else is an error, never a
//! panic.
#![no_main]
use backup_agent::pg::copydata::{BackupMsg, KEEPALIVE_LEN, WalMsg};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&stream, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    if stream & 1 == 0 {
        match WalMsg::decode(body.clone()) {
            Ok(WalMsg::Other(t)) => assert_eq!(body[0], t),
            Ok(m @ WalMsg::Keepalive { .. }) => assert_eq!(m.encode(), body.slice(..KEEPALIVE_LEN)),
            Ok(m) => assert_eq!(m.encode(), body),
            Err(_) => {}
        }
    } else if let Ok(m) = BackupMsg::decode(body.clone()) {
        assert_eq!(m.encode(), body);
    }
});
