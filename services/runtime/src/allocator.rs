//! Settings for the global allocator (mimalloc), which reads them from the environment once, as
//! the process starts, before `main`.
//!
//! mimalloc hands memory that stayed free for a second back to the operating system; the next
//! burst faults it in again and the kernel zeroes every page of it. A dfs chunk server or client
//! moves chunks of megabytes in bursts (one file after another), so it paid that again for every
//! file: profiled, zeroing fresh pages took 10-30 % of the CPU of an upload, and this process
//! used 1.4-1.8 s of CPU per 200 MB upload instead of 1.1-1.2 s with the memory kept for reuse
//! (`BENCHMARKS.md`). Keeping it costs resident memory up to the process's peak.

/// The variable mimalloc reads, and the value we start with: freed memory is kept for reuse.
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";
const PURGE_DELAY_KEEP: &str = "-1";

/// Makes sure the process runs with [`PURGE_DELAY_VAR`] set: when it is not, executes the same
/// program again (same arguments, same process id) with it set to keep freed memory. A value the
/// user set is left alone (`MIMALLOC_PURGE_DELAY=1000` restores mimalloc's default). Call it first
/// in `main`, before any thread starts; when the program cannot be executed again, it goes on as
/// it is.
pub fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    command.args(args).env(PURGE_DELAY_VAR, PURGE_DELAY_KEEP);
    // Returns only when the program could not be executed (say, its file was replaced).
    let _ = command.exec();
}
