//! The process's allocator: mimalloc for everything small (it halved malloc's share of
//! the proxy's CPU, BENCHMARKS.md), the system allocator for blocks of 1 MiB and more:
//! request bodies of uploads. mimalloc keeps freed memory for reuse and returns it to the
//! OS only lazily, so after a burst of large uploads the process stayed at most of its
//! peak (789 MiB after 20 × 50 MiB, measured); glibc maps each large block on its own
//! (`M_MMAP_THRESHOLD` fixed at 1 MiB by `init`) and unmaps it when freed.
//!
//! A block goes back to the allocator that made it: Rust passes `dealloc` the layout of
//! the allocation, so the size decides the same way both times; a `realloc` across the
//! threshold moves the block.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks this large or larger come from the system allocator.
pub const LARGE: usize = 1 << 20;

pub struct Allocator;

fn large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: each call is forwarded to one of two allocators that uphold `GlobalAlloc`'s
// contract, chosen by the block's size, which is the same at allocation and release.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if large(layout.size()) {
            System.alloc(layout)
        } else {
            MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if large(layout.size()) {
            System.alloc_zeroed(layout)
        } else {
            MiMalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if large(layout.size()) {
            System.dealloc(ptr, layout)
        } else {
            MiMalloc.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (large(layout.size()), large(new_size)) {
            (true, true) => System.realloc(ptr, layout, new_size),
            (false, false) => MiMalloc.realloc(ptr, layout, new_size),
            _ => {
                // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`,
                // does not overflow `isize`.
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

/// Makes glibc map every block of `LARGE` or more on its own, and unmap it when freed
/// (its default threshold grows with use, after which large blocks stay in its heap).
pub fn init() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called once at start, before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE as libc::c_int);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_move_across_the_threshold_intact() {
        let a = Allocator;
        unsafe {
            let small = Layout::from_size_align(1000, 8).unwrap();
            let p = a.alloc(small);
            for i in 0..1000 {
                *p.add(i) = (i % 251) as u8;
            }
            let p = a.realloc(p, small, 3 * LARGE);
            assert!(!p.is_null());
            assert!((0..1000).all(|i| *p.add(i) == (i % 251) as u8));
            let big = Layout::from_size_align(3 * LARGE, 8).unwrap();
            let p = a.realloc(p, big, 500);
            assert!((0..500).all(|i| *p.add(i) == (i % 251) as u8));
            a.dealloc(p, Layout::from_size_align(500, 8).unwrap());
            let z = a.alloc_zeroed(big);
            assert!((0..3 * LARGE).step_by(4096).all(|i| *z.add(i) == 0));
            a.dealloc(z, big);
        }
    }
}
