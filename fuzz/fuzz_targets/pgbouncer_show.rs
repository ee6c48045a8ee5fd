//! PgBouncer admin console rows (SHOW POOLS, STATS, ...) of any version, as pool-exporter decodes
//! them: the first byte picks the command, then a line of columns separated by `|`, then rows
//! (`<NULL>` is NULL: the recorded fixtures' format). Property: collecting never panics, whatever
//! the columns, their order or their values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pool_exporter::admin::Rows;
use pool_exporter::collect::{COMMANDS, Snapshot, collect};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.lines();
    let columns: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split('|')
        .map(str::to_string)
        .collect();
    let mut rows = Rows::new(columns);
    for l in lines {
        rows.push_row(
            l.split('|')
                .map(|c| if c == "<NULL>" { None } else { Some(c) }),
        );
    }
    let mut snap = Snapshot::default();
    let command = COMMANDS[pick as usize % COMMANDS.len()];
    if let Some(slot) = snap.slot(command) {
        *slot = Some(rows);
    }
    let families = collect(&snap, &Default::default());
    let _ = format!("{families:?}");
});
