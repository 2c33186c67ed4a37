//! The allocator's policy for a process that runs chunked passes (the `mixburn` command,
//! the benchmarks): freed chunk buffers are kept for the next chunk instead of being handed
//! back to the kernel. A library never sets it; a program's `main` does, once.
//!
//! Every pass allocates the same few buffers per chunk (the rows read, the products, their
//! element-wise results: 2–30 MiB each at network-feature widths). glibc's defaults serve
//! such sizes with `mmap` and return them with `munmap` (or trim the heap above 2× the
//! largest freed map), so each chunk faulted its buffers' pages in again: `mixburn ood
//! score` at D = 512 spent 0.38 s of its 0.78 s in the kernel, 0.13 s of 0.63 s with this
//! policy (`benches/e2e_scoring.py`). With a fixed
//! mmap threshold of 64 MiB and a trim threshold of 256 MiB, buffers up to 64 MiB come from
//! the heap and are reused; the peak is unchanged to within one chunk's buffers (the heap
//! only holds memory that was in use at once), and larger arrays (a D = 2048 covariance
//! batch) are still mapped and returned.

/// Buffers below this many bytes come from the heap and are reused.
pub const MMAP_THRESHOLD_BYTES: i32 = 64 << 20;
/// The heap's free top is given back to the kernel beyond this many bytes.
pub const TRIM_THRESHOLD_BYTES: i32 = 256 << 20;

/// Sets the policy (module docs). A no-op where the C library is not glibc. Call once, at
/// the start of `main`, before any thread is started.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tunables; called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
