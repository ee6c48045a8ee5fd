//! The allocator's arenas. glibc gives each thread that allocates an arena of its own (up to 8
//! per core) and keeps what is freed in each for later. backup-agent's jobs run on many threads
//! (the runtime's, zstd's workers, the RDB walk's) and free large buffers at the end of every
//! run; two arenas keep that memory where the next run reuses it.

/// Caps the allocator at 2 arenas, unless `MALLOC_ARENA_MAX` in the environment says otherwise.
/// Call first thing in `main`, before any thread exists.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one allocator parameter; no other thread is running yet.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
