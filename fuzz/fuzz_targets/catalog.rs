//! Catalog objects read back from storage (`Catalog::from_objects`): objects separated by a 0
//! byte, key and body by a newline. Property: no panic; a manifest that was read re-serializes
//! to JSON that reads back equal.
#![no_main]
use common::catalog::{Catalog, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let objects: Vec<(&str, &[u8])> = data
        .split(|b| *b == 0)
        .filter_map(|o| {
            let nl = o.iter().position(|b| *b == b'\n')?;
            Some((std::str::from_utf8(&o[..nl]).ok()?, &o[nl + 1..]))
        })
        .collect();
    let cat = Catalog::from_objects(objects.iter().copied());
    for m in &cat.manifests {
        let json = serde_json::to_vec(m).expect("a manifest serializes");
        let back: Manifest = serde_json::from_slice(&json).expect("and reads back");
        assert_eq!(&back, m);
    }
});
