//! Sentinel pub/sub event parsing: channel on the first line, payload after it. Property: no
//! panic, the raw payload is kept, and parsing is deterministic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (channel, payload) = text.split_once('\n').unwrap_or(("+switch-master", &text));
    let e = sentinel_watch::events::parse(channel, payload);
    assert_eq!(e.name, channel);
    assert_eq!(e.raw, payload);
    let again = sentinel_watch::events::parse(channel, payload);
    assert_eq!(format!("{:?}", e.payload), format!("{:?}", again.payload));
});
