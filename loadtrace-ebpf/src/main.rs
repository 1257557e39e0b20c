//! loadtrace's kernel-side programs. One module per hook family; the maps they share live in
//! `maps`, the per-thread state machine in `tasks`.
//!
//! Every program's body is `#[inline(always)]` into its entry point: left a subprogram, it
//! takes the context by value, which 6.1's verifier refuses.
#![no_std]
#![no_main]
// For the empty asm block that serves as a compiler barrier (see tasks.rs).
#![feature(asm_experimental_arch)]
// For an atomic add on a u32 histogram bucket.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod block;
mod empty;
mod loadavg;
mod maps;
mod sched;
mod tasks;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
