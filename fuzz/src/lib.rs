//! Shared by the fuzz targets: an allocator that turns an oversized allocation into a crash.
//!
//! A decoder that trusts a length field from its input can ask for gigabytes while the input is
//! a few bytes; with overcommit that often "works" and no fuzzer notices. Every target installs
//! [`CappedAlloc`], so any single allocation above [`MAX_ALLOCATION_BYTES`] (far above what an
//! AFL input of at most 1 MiB can justify) prints its size and a backtrace and aborts, which AFL
//! records as a crash.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest single allocation a target may make; inputs are at most 1 MiB.
pub const MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// The system allocator with a cap on the size of one allocation.
pub struct CappedAlloc;

#[inline]
fn check(size: usize) {
    if size > MAX_ALLOCATION_BYTES {
        oversized(size);
    }
}

#[cold]
#[inline(never)]
fn oversized(size: usize) -> ! {
    static REPORTING: AtomicBool = AtomicBool::new(false);
    // The report allocates (small amounts); a second oversized request while reporting aborts at once.
    if !REPORTING.swap(true, Ordering::SeqCst) {
        eprintln!(
            "auscult-fuzz: one allocation of {size} bytes, more than the cap of {MAX_ALLOCATION_BYTES}\n{}",
            std::backtrace::Backtrace::force_capture()
        );
    }
    std::process::abort()
}

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}
