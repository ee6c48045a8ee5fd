//! The allocator settings backup-agent starts with (`alloc::tune`): once a large block has been
//! freed, the next large ones are still mapped on their own and returned to the system when freed.
//! Left to glibc's default, freeing a 16 MiB block (a WAL segment's buffer) raises the mmap
//! threshold to 16 MiB, later blocks below that come from the arenas, and their memory stays
//! with the process: the RSS growth the soak showed under load. A test binary of its own: the
//! allocator's counters are the whole process's.

use std::hint::black_box;

/// Bytes in blocks mapped on their own (glibc's `mallinfo2().hblkhd`).
fn mapped() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallinfo2().hblkhd
    }
}

#[test]
fn a_freed_large_block_does_not_keep_the_next_ones_in_the_arenas() {
    backup_agent::alloc::tune();
    // What the archiver does with a segment: a 16 MiB buffer, filled and freed.
    drop(black_box(vec![1u8; 16 << 20]));
    let before = mapped();
    let block = black_box(vec![1u8; 4 << 20]);
    let during = mapped();
    assert!(
        during >= before + (4 << 20),
        "a 4 MiB block after a freed 16 MiB one came from an arena: mapped {before} -> {during}"
    );
    drop(block);
    let after = mapped();
    assert!(
        after + (4 << 20) <= during,
        "the 4 MiB block stayed with the process once freed: mapped {during} -> {after}"
    );
}
