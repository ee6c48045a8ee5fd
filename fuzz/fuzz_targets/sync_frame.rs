//! The framing of a Redis snapshot after SYNC (`redis_snapshot::sync`): the header line
//! (`$<len>`, `$EOF:<mark>`, keepalive newlines, error replies) and the diskless end mark.
//! Properties: a header parses only when it re-encodes to the same line; a diskless payload that
//! whose stream holds its mark only at the end comes out whole, however the stream is cut into reads, and the mark
//! is found exactly at the end.
#![no_main]
use backup_agent::redis_snapshot::sync::{EofStream, Header, MARK_LEN, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The header: the input up to its first newline.
    let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    match parse_header(line) {
        Ok(None) => assert!(line.is_empty()),
        Ok(Some(Header::Bulk(n))) => assert_eq!(format!("${n}").as_bytes(), line),
        Ok(Some(Header::Eof(mark))) => assert_eq!([&b"$EOF:"[..], &mark].concat(), line),
        Err(_) => {}
    }

    // The diskless stream: a mark from the input, then a payload, cut by sizes from the input.
    if data.len() < MARK_LEN + 1 {
        return;
    }
    let mut mark = [0u8; MARK_LEN];
    mark.copy_from_slice(&data[..MARK_LEN]);
    let cuts = data[MARK_LEN];
    let payload = &data[MARK_LEN + 1..];
    let stream = [payload, &mark].concat();
    // The protocol's one assumption: the mark occurs nowhere but at the end (Redis makes it of
    // 40 random characters), not even straddling the payload's end.
    if stream[..stream.len() - 1]
        .windows(MARK_LEN)
        .any(|w| w == mark)
    {
        return;
    }
    let mut eof = EofStream::new(mark);
    let mut got = Vec::new();
    let mut at = 0;
    let mut i = 0usize;
    let mut done = false;
    while at < stream.len() {
        assert!(!done, "the mark was seen before the end");
        let n = (usize::from(cuts.rotate_left(i as u32 % 8)) % 97 + 1).min(stream.len() - at);
        done = eof.push(&stream[at..at + n]);
        got.extend_from_slice(eof.ready());
        eof.consume();
        at += n;
        i += 1;
    }
    assert!(done, "the mark at the end was not seen");
    assert_eq!(got, payload);
});
