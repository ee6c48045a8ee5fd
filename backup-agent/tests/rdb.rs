//! The RDB check against redis-server itself: snapshots of every value type saved by a real
//! redis-server are mutated (bits flipped, bytes set, cut, inserted, repeated; the CRC64 then
//! recomputed, so that only the structure check stands between a mutant and a restore), and every
//! mutant the check accepts must load in a redis-server started on it. What the check refuses
//! and the server would have loaded anyway (the check is stricter: it validates packed encodings
//! deeply and looks for duplicates the server only finds later, or never) is counted and printed.

use std::path::Path;

use backup_agent::redis_snapshot::rdb::{RdbCheck, crc64};
use harness::process::TempDir;

/// The seeds: a redis-server's SAVE after filling it with every type, once with LRU (idle times
/// in the file) and once with LFU (frequencies).
fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let node = harness::redis::start_standalone(
        &dir.join("seed"),
        None,
        &["rdbcompression yes".to_string()],
    )
    .expect("redis-server");
    let mut c = node.conn().expect("conn");
    let q = |c: &mut redis::Connection, args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<redis::Value>(c)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    };
    let long = "abcdefghij".repeat(30);
    let bin: Vec<u8> = (0..=255u8).collect();
    redis::cmd("SET")
        .arg("str:bin")
        .arg(&bin)
        .query::<()>(&mut c)
        .expect("SET binary");
    for args in [
        vec!["SET", "str:int", "12345"],
        vec!["SET", "str:neg", "-7"],
        vec!["SET", "str:i64", "9999999999999"],
        vec!["SET", "str:text", "hello"],
        vec!["SET", "str:lzf", &long],
        vec!["SET", "exp:ms", "v", "PX", "36000000"],
        vec!["RPUSH", "list:small", "a", "b", "c", "1", "-2", "300000"],
        vec!["SADD", "set:int", "1", "2", "3", "-5", "1000000"],
        vec!["SADD", "set:str", "a", "b", "c"],
        vec!["ZADD", "zset:small", "1", "a", "2.5", "b", "-inf", "c"],
        vec!["HSET", "hash:small", "f1", "v1", "f2", "2", "3", "x"],
        vec!["XADD", "stream", "1-1", "f", "v", "g", "w"],
        vec!["XADD", "stream", "2-1", "f", "v2"],
        vec!["XADD", "stream", "3-1", "h", "3"],
        vec!["XGROUP", "CREATE", "stream", "g1", "0"],
        vec![
            "XREADGROUP",
            "GROUP",
            "g1",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "stream",
            ">",
        ],
        vec![
            "XREADGROUP",
            "GROUP",
            "g1",
            "c2",
            "COUNT",
            "1",
            "STREAMS",
            "stream",
            ">",
        ],
        vec!["XGROUP", "CREATE", "stream", "g2", "$"],
        vec!["XGROUP", "CREATECONSUMER", "stream", "g2", "idle"],
    ] {
        q(&mut c, &args);
    }
    for i in 0..300 {
        let e = format!("element-{i}-{}", "y".repeat(40));
        q(&mut c, &["RPUSH", "list:big", &e]);
        q(&mut c, &["ZADD", "zset:big", &format!("{i}.25"), &e]);
        q(&mut c, &["HSET", "hash:big", &format!("field-{i}"), &e]);
    }
    for i in 0..600 {
        q(&mut c, &["SADD", "set:big", &i.to_string()]);
    }
    q(&mut c, &["SELECT", "3"]);
    q(&mut c, &["SET", "db3:key", "in database 3"]);
    let mut out = vec![];
    for policy in ["allkeys-lru", "allkeys-lfu"] {
        q(&mut c, &["CONFIG", "SET", "maxmemory-policy", policy]);
        q(&mut c, &["SAVE"]);
        out.push(std::fs::read(dir.join("seed/dump.rdb")).expect("dump.rdb"));
    }
    out
}

/// xorshift64*: the same mutants on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of the records between the magic and the checksum, then the checksum fixed.
fn mutate(seed: &[u8], rng: &mut Rng) -> (Vec<u8>, String) {
    let mut body = seed[9..seed.len() - 8].to_vec();
    let at = rng.below(body.len());
    let what = match rng.below(6) {
        0 => {
            let bit = rng.below(8);
            body[at] ^= 1 << bit;
            format!("bit {bit} of byte {at} flipped")
        }
        1 => {
            let v = rng.next() as u8;
            body[at] = v;
            format!("byte {at} set to 0x{v:02x}")
        }
        2 => {
            const EDGES: [u8; 9] = [0, 1, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xfe, 0xff];
            let v = EDGES[rng.below(EDGES.len())];
            body[at] = v;
            format!("byte {at} set to 0x{v:02x}")
        }
        3 => {
            let n = (1 + rng.below(4)).min(body.len() - at);
            body.drain(at..at + n);
            format!("{n} bytes cut at {at}")
        }
        4 => {
            let n = 1 + rng.below(4);
            let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            body.splice(at..at, ins);
            format!("{n} bytes inserted at {at}")
        }
        _ => {
            let n = (1 + rng.below(16)).min(body.len() - at);
            let chunk = body[at..at + n].to_vec();
            body.splice(at..at, chunk);
            format!("{n} bytes at {at} repeated")
        }
    };
    let mut out = seed[..9].to_vec();
    out.extend_from_slice(&body);
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    (out, what)
}

fn check(data: &[u8]) -> Result<backup_agent::redis_snapshot::rdb::RdbInfo, String> {
    let mut c = RdbCheck::new();
    for piece in data.chunks(4096) {
        c.update(piece);
    }
    c.finish().map_err(|e| e.to_string())
}

/// Whether a redis-server started on `data` (with at least `databases`) loads it.
fn loads(dir: &Path, data: &[u8], databases: u64) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("dump.rdb"), data).expect("dump.rdb");
    harness::redis::start_standalone(dir, None, &[format!("databases {}", databases.max(16))])
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// The newest RDB version the local redis-server reads (7.0: 10, 7.2: 11, 7.4 and later: 12).
fn server_rdb_version() -> u32 {
    let out = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .expect("redis-server --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .expect("a version in redis-server --version");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    match (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) {
        (7, 0) => 10,
        (7, 2) => 11,
        (m, _) if m >= 7 => 12,
        _ => 9,
    }
}

#[test]
fn every_mutant_the_check_accepts_loads_in_redis_server() {
    let _serial = harness::serial();
    let dir = TempDir::new("rdb-diff").expect("dir");
    let seeds = seeds(dir.path());
    // RDB_SEEDS_TO=DIR keeps the seeds (the fuzz corpus of rdb_walk and rdb_check came from here).
    if let Ok(to) = std::env::var("RDB_SEEDS_TO") {
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(Path::new(&to).join(format!("redis-server-seed-{i}.rdb")), s)
                .expect("writing a seed");
        }
    }
    let max_version = server_rdb_version();
    for (i, s) in seeds.iter().enumerate() {
        let info = check(s).unwrap_or_else(|e| panic!("seed {i} refused: {e}"));
        let w = info
            .walked
            .expect("a seed of this server's version is walked");
        assert!(w.keys >= 15 && w.databases == 4 && w.dups_checked, "{w:?}");
        loads(&dir.path().join("load"), s, w.databases).expect("the seed loads");
    }
    let per_seed: usize = std::env::var("RDB_MUTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut loaded, mut refused, mut sampled, mut stricter) = (0, 0, 0, 0, 0);
    let mut not_comparable = 0;
    let mut violations = vec![];
    for (si, seed) in seeds.iter().enumerate() {
        for m in 0..per_seed {
            let (data, what) = mutate(seed, &mut rng);
            match check(&data) {
                Ok(info) => {
                    accepted += 1;
                    let Some(w) = info.walked else {
                        not_comparable += 1;
                        continue;
                    };
                    if info.version > max_version || w.modules > 0 || w.functions > 0 {
                        not_comparable += 1;
                        continue;
                    }
                    match loads(&dir.path().join("load"), &data, w.databases) {
                        Ok(()) => loaded += 1,
                        Err(e) => violations.push(format!(
                            "seed {si} mutant {m} ({what}): accepted ({w:?}) but redis-server did not load it: {e}"
                        )),
                    }
                }
                Err(_) => {
                    refused += 1;
                    // Every fourth refusal: would the server have loaded it?
                    if refused % 4 == 0 {
                        sampled += 1;
                        if loads(&dir.path().join("load"), &data, 1024).is_ok() {
                            stricter += 1;
                        }
                    }
                }
            }
        }
    }
    println!(
        "rdb differential: {} mutants; accepted {accepted} (loaded {loaded}, not comparable {not_comparable}), refused {refused}; of {sampled} refusals sampled, redis-server loaded {stricter}",
        seeds.len() * per_seed
    );
    assert!(
        violations.is_empty(),
        "{} accepted mutants did not load:\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert!(
        loaded > 0 && refused > 0,
        "the mutants exercised both verdicts"
    );
}
