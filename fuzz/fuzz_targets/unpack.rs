//! The base-backup tar unpacker (`restore::unpack`), on any archive bytes. Property: whatever the
//! archive holds and however it ends, nothing is created outside the target directory; inside it
//! there is no symbolic link but `pg_tblspc/<oid>` to the tablespace directory the restore made,
//! and no file or directory has a setuid, setgid or sticky bit.
#![no_main]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use backup_agent::restore::unpack::{TablespaceMap, unpack};
use libfuzzer_sys::fuzz_target;

fn walk(dir: &Path, ts: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("dir entry");
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).expect("metadata");
        if m.file_type().is_symlink() {
            let to = std::fs::read_link(&p).expect("read_link");
            assert_eq!(to, ts, "symbolic link {} -> {}", p.display(), to.display());
            assert_eq!(
                p.parent().and_then(Path::file_name),
                Some("pg_tblspc".as_ref())
            );
            continue;
        }
        assert_eq!(
            m.permissions().mode() & 0o7000,
            0,
            "{} has special bits",
            p.display()
        );
        out.push(p.display().to_string());
        if m.is_dir() {
            walk(&p, ts, out);
        }
    }
}

/// A fresh directory per input, removed afterwards.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "outrigger-fuzz-unpack-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fuzz_target!(|data: &[u8]| {
    let root = Scratch::new();
    let target = root.0.join("target");
    let ts = root.0.join("ts");
    std::fs::create_dir(&target).expect("target");
    std::fs::create_dir(&ts).expect("ts");
    let map = TablespaceMap::from([(16384, ts.clone())]);
    let base = if data.len() % 2 == 1 { "pg_wal" } else { "" };
    let _ = unpack(data, &target, base, &map);
    // Outside the target: only the (empty) tablespace directory.
    let mut top: Vec<_> = std::fs::read_dir(&root.0)
        .expect("root")
        .map(|e| e.expect("entry").file_name())
        .collect();
    top.sort();
    assert_eq!(top, ["target", "ts"]);
    assert_eq!(
        std::fs::read_dir(&ts).expect("ts").count(),
        0,
        "written into the tablespace"
    );
    let mut inside = Vec::new();
    walk(&target, &ts, &mut inside);
});
