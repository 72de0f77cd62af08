//! The allocator [`export_plugin!`](crate::export_plugin) installs in a
//! plugin: small blocks from size classes with free lists, the rest from the
//! system allocator.
//!
//! Why: every string and list the host passes into a hook is a call into the
//! plugin's `cabi_realloc`, about twenty for one replayed request, and the
//! hook's answer is freed block by block after it returns. With the default
//! allocator (dlmalloc) each of those took about 300 Wasm instructions; a
//! free-list pop or push takes a few. Blocks of at most [`LARGEST`] bytes
//! (alignment at most 16) are rounded up to a power of two from 16 and kept
//! on their class's list when freed, for the next block of that class; they
//! are never given back, so a plugin's memory holds at most the most it ever
//! had live per class. Larger blocks, and alignments above 16, go to the
//! system allocator as before.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// The largest block served from a size class.
pub const LARGEST: usize = 1024;
/// Classes 16, 32, …, [`LARGEST`].
const CLASSES: usize = 7;
/// What is taken from the system allocator at a time and cut into blocks.
const CHUNK: usize = 64 << 10;
const ALIGN: usize = 16;

/// Size classes over an allocator `A` (the system allocator in a plugin,
/// a counting one in the tests).
pub struct SizeClasses<A = System> {
    inner: A,
    state: UnsafeCell<State>,
}

struct State {
    /// Per class, the first free block; each free block holds the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: a plugin is one thread (wasm32 without the atomics feature), so
// no two calls ever touch `state` at once.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        Self::over(System)
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> SizeClasses<A> {
    pub const fn over(inner: A) -> Self {
        Self {
            inner,
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

/// The class of a layout, or `None` for the system allocator's.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > LARGEST || layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(ALIGN);
    // 16 -> 0, 17..=32 -> 1, …, 513..=1024 -> 6.
    Some((usize::BITS - (size - 1).leading_zeros()) as usize - 4)
}

fn class_size(c: usize) -> usize {
    ALIGN << c
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for SizeClasses<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { self.inner.alloc(layout) };
        };
        // SAFETY: one thread (see `Sync`); no reference into `state` outlives
        // this call.
        let s = unsafe { &mut *self.state.get() };
        let head = s.free[c];
        if !head.is_null() {
            // SAFETY: a free block of this class holds the next one's address.
            s.free[c] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = class_size(c);
        if (s.end as usize) - (s.next as usize) < size {
            // The rest of the chunk is too small for this class: it stays
            // unused (less than 1 KiB of 64).
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe {
                self.inner
                    .alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN))
            };
            if chunk.is_null() {
                return chunk;
            }
            s.next = chunk;
            // SAFETY: the end of the chunk just allocated.
            s.end = unsafe { chunk.add(CHUNK) };
        }
        let block = s.next;
        // SAFETY: `size` bytes fit before `end`.
        s.next = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: allocated by `inner` with this layout (same rule).
            return unsafe { self.inner.dealloc(block, layout) };
        };
        // SAFETY: one thread; `block` is a block of class `c` no one uses
        // any more, at least 16 bytes and 16-aligned, so it can hold a link.
        unsafe {
            let s = &mut *self.state.get();
            block.cast::<*mut u8>().write(s.free[c]);
            s.free[c] = block;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `layout.align()` is a valid alignment and the caller
        // promises `new_size` does not overflow when rounded to it.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            // The block already has room (and `dealloc` will be given a
            // layout of the same class).
            (Some(a), Some(b)) if a == b => block,
            // SAFETY: allocated by `inner` with `layout`; the caller's promises.
            (None, None) => unsafe { self.inner.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: as `GlobalAlloc::realloc`'s default: a new block,
                // the smaller size copied, the old block freed.
                unsafe {
                    let moved = self.alloc(new);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// The system allocator, counting what goes through it.
    #[derive(Default)]
    struct Counting {
        allocs: Cell<usize>,
        frees: Cell<usize>,
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            self.allocs.set(self.allocs.get() + 1);
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            self.frees.set(self.frees.get() + 1);
            unsafe { System.dealloc(p, l) }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_are_powers_of_two_from_16() {
        let cases = [
            (0, 0),
            (1, 0),
            (16, 0),
            (17, 1),
            (32, 1),
            (33, 2),
            (512, 5),
            (513, 6),
            (1024, 6),
        ];
        for (size, want) in cases {
            assert_eq!(class(layout(size, 1)), Some(want), "size {size}");
            assert!(class_size(want) >= size.max(1));
        }
        assert_eq!(class(layout(1025, 1)), None);
        assert_eq!(class(layout(64, 32)), None, "alignment above 16");
    }

    #[test]
    fn a_freed_block_is_reused_by_its_class_only() {
        let a = SizeClasses::over(Counting::default());
        unsafe {
            let x = a.alloc(layout(40, 8));
            let y = a.alloc(layout(40, 8));
            assert_ne!(x, y);
            assert_eq!(x as usize % ALIGN, 0);
            a.dealloc(x, layout(40, 8));
            // Another class does not get it; the same class does.
            let other = a.alloc(layout(100, 8));
            assert_ne!(other, x);
            assert_eq!(a.alloc(layout(60, 4)), x);
            assert_eq!(a.inner.allocs.get(), 1, "one chunk so far");
        }
    }

    #[test]
    fn blocks_do_not_overlap_and_keep_their_bytes() {
        let a = SizeClasses::over(Counting::default());
        let mut live = Vec::new();
        unsafe {
            // Enough blocks of every size to span several chunks.
            for i in 0..4000usize {
                let size = 1 + (i * 37) % LARGEST;
                let p = a.alloc(layout(size, 1));
                ptr::write_bytes(p, i as u8, size);
                live.push((p, size, i as u8));
                if i % 3 == 0 {
                    let (p, size, _) = live.swap_remove(i % live.len());
                    a.dealloc(p, layout(size, 1));
                }
            }
            for &(p, size, fill) in &live {
                assert_eq!(p as usize % ALIGN, 0, "every block is 16-aligned");
                assert!(
                    std::slice::from_raw_parts(p, size)
                        .iter()
                        .all(|&b| b == fill)
                );
            }
            assert!(a.inner.allocs.get() > 1);
            assert_eq!(a.inner.frees.get(), 0, "chunks are never given back");
        }
    }

    #[test]
    fn realloc_keeps_the_block_within_its_class_and_moves_across() {
        let a = SizeClasses::over(Counting::default());
        unsafe {
            let p = a.alloc(layout(20, 1));
            ptr::copy_nonoverlapping(b"0123456789abcdefghij".as_ptr(), p, 20);
            assert_eq!(
                a.realloc(p, layout(20, 1), 30),
                p,
                "20 and 30 are both class 32"
            );
            let q = a.realloc(p, layout(30, 1), 2000);
            assert_ne!(q, p);
            assert_eq!(std::slice::from_raw_parts(q, 20), b"0123456789abcdefghij");
            assert_eq!(a.inner.allocs.get(), 2, "a chunk, then the large block");
            // The old block went back to its class.
            assert_eq!(a.alloc(layout(32, 1)), p);
            let r = a.realloc(q, layout(2000, 1), 10);
            assert_eq!(std::slice::from_raw_parts(r, 10), b"0123456789");
            assert_eq!(a.inner.frees.get(), 1, "the large block");
        }
    }

    /// An allocator with no memory left.
    struct Empty;

    unsafe impl GlobalAlloc for Empty {
        unsafe fn alloc(&self, _: Layout) -> *mut u8 {
            ptr::null_mut()
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
            unreachable!("nothing was allocated")
        }
    }

    #[test]
    fn no_memory_is_a_null_block_not_a_bad_one() {
        let a = SizeClasses::over(Empty);
        unsafe {
            assert!(a.alloc(layout(8, 8)).is_null());
            assert!(a.alloc(layout(8, 8)).is_null(), "the state is unchanged");
            assert!(a.alloc(layout(LARGEST + 1, 8)).is_null());
        }
    }

    #[test]
    fn large_blocks_go_to_the_system_allocator() {
        let a = SizeClasses::over(Counting::default());
        unsafe {
            let p = a.alloc(layout(LARGEST + 1, 8));
            assert_eq!(a.inner.allocs.get(), 1);
            a.dealloc(p, layout(LARGEST + 1, 8));
            assert_eq!(a.inner.frees.get(), 1);
        }
    }
}
