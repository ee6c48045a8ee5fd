//! logfmt: a line written from any fields parses back to the fields the line holds (keys
//! sanitized, secrets masked, values redacted as `Line::field` does); and any text parses or
//! errs without a panic.
#![no_main]
use common::logfmt::{Line, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse(&text);
    let mut line = Line::new("fuzz");
    for pair in text.split('\u{0}') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        line = line.field(k, v);
    }
    let written = line.to_string();
    let fields = parse(&written).unwrap_or_else(|e| panic!("{written:?} does not parse: {e}"));
    assert_eq!(&fields[..], line.fields(), "{written:?}");
});
