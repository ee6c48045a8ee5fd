//! The allocator. glibc gives each thread that allocates an arena of its own (up to 8 per core)
//! and keeps what is freed in each for later; and after a large block is freed it raises its
//! mmap threshold to that size (up to 32 MiB), so that later blocks that large come from the
//! arenas too. backup-agent's jobs run on many threads (the runtime's, zstd's workers, the RDB
//! walk's) and the WAL archiver handles 16 MiB segments: left alone, the freed megabytes stay
//! resident, spread over the arenas, and the process grows under load. So:
//!
//! - at most 2 arenas;
//! - a fixed mmap threshold of 1 MiB: every block that large is its own mapping, returned to
//!   the system when freed (a WAL segment's buffers, zstd's windows);
//! - after each job, what is free in the arenas is returned too ([`release_free`]).
//!
//! Measured under `bench/soak.sh` (every schedule at every minute, under pgbench): see the
//! memory section of docs/backup-agent.md.

/// The largest block served from an arena; larger ones are mapped and unmapped on their own.
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Caps the allocator at 2 arenas and fixes the mmap threshold, unless `MALLOC_ARENA_MAX` or
/// `MALLOC_MMAP_THRESHOLD_` in the environment say otherwise. Call first thing in `main`, before
/// any thread exists.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (env, param, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt sets one allocator parameter; no other thread is running yet.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}

/// Hands the memory that is free in every arena back to the system (glibc's `malloc_trim`, which
/// also releases free pages inside an arena, not only at its top). Called when a job ends: a run
/// frees many buffers below the mmap threshold from threads that are then gone, and without this
/// their pages stay resident between runs while the WAL archiver's allocations keep them from
/// being trimmed at the top of the arena.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its own locks.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
