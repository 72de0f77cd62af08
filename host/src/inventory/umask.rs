//! The mode of the files we create: what `open(2)` would give them, 0666
//! less the process's umask. Temporary files are created private (0600)
//! and renamed into place, so their mode is set by hand, and a fixed 0644
//! would ignore a user's `umask 077`.

use std::sync::OnceLock;

/// `0o666 & !umask`. The umask is read from `/proc/self/status` (Linux
/// 4.7+): setting it to read it back would race with other threads
/// creating files. Without procfs, the usual 022.
pub fn file_mode() -> u32 {
    static MODE: OnceLock<u32> = OnceLock::new();
    *MODE.get_or_init(|| 0o666 & !umask().unwrap_or(0o022))
}

fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_umask_is_read_from_the_kernel() {
        // The test harness does not change it; compare with umask(2).
        // SAFETY: umask(2) cannot fail; it is set straight back.
        let real = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        } as u32;
        assert_eq!(super::umask(), Some(real));
    }
}
