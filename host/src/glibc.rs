//! glibc's defaults, set for a process that streams bodies through its
//! buffers. `main` calls these before any thread starts: they change
//! process-wide state (the environment, the allocator) that threads would
//! race with.

/// The tunable that says from which size `memcpy` copies with `rep movsb`.
const REP_MOVSB: &str = "glibc.cpu.x86_rep_movsb_threshold";
/// `rep movsb` never: the vector loop (or, past the non-temporal threshold,
/// non-temporal stores) for every size.
const NEVER: u64 = 1 << 40;
/// Set only in the environment of the run again: what `GLIBC_TUNABLES` was
/// (`=` and the value) or that it was unset (empty).
const WAS: &str = "BUILDPROXY_GLIBC_TUNABLES_WAS";
/// This is the run again ([`put_back_environment`] found [`WAS`]).
static RAN_AGAIN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// On AMD's Zen 3 and later, `rep movsb` copies up to 35 times more slowly
/// when the destination lies a few bytes past the source within a page
/// (1, 8 and 16 measured; 32 and more were fast): 2 GB/s against 75 GB/s
/// for 16 KiB here. glibc 2.36 (Debian 12's) copies 2,112 bytes and more
/// with `rep movsb` on such CPUs; upstream glibc now uses the vector loop
/// on AMD, for this reason (its bug 30994). Releases before 2.40 are
/// treated as older: one that already has the change only pays for the
/// run again. A proxy copies every body several times, at addresses its
/// allocator picks (a TLS record into a new plaintext buffer, that into
/// the HTTP reader's buffer, chunks into the store's blocks), so it meets
/// that case by chance, per buffer: one such copy in rustls (each TLS
/// record into a new buffer) was 13% of a capture's CPU.
///
/// The threshold is a tunable glibc reads only when a process starts, so
/// on those CPUs with an older glibc the process runs itself again, once,
/// with it set, and then puts `GLIBC_TUNABLES` back as it was
/// ([`put_back_environment`]): the commands it runs see the environment
/// they were given. A `GLIBC_TUNABLES` that already names the threshold is
/// the user's choice and is left alone. If running again fails (no
/// `/proc`), or the process was started through the dynamic loader, it
/// goes on as it is.
///
/// Running again costs about 2.5 ms of CPU here (the kernel mapping a
/// large binary again), so `main` asks for it only in the modes that carry
/// upstream bodies (capture, proxy, `check --fetch`), where a captured GiB
/// took 0.36–0.66 CPU-s less (W4, against the build before in the same
/// rounds). Replay is left out: the benchmark's replays measured no gain,
/// its start is on every sandboxed build's path, and in the sandbox it
/// runs with the glibc Nix built it with.
pub fn prefer_vector_copies() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::ffi::OsStrExt;

        // Never a third run, whether or not the environment was put back.
        if RAN_AGAIN.load(std::sync::atomic::Ordering::Relaxed) || std::env::var_os(WAS).is_some() {
            return;
        }
        let given = std::env::var_os("GLIBC_TUNABLES");
        let Some(tunables) = tunables_to_run_with(given.as_deref().map(|v| v.as_bytes())) else {
            return;
        };
        if !slow_rep_movsb() {
            return;
        }
        // Started through the dynamic loader (`ld.so ./buildproxy …`), the
        // executable is the loader, which these arguments would not run.
        const AT_BASE: libc::c_ulong = 7;
        // SAFETY: getauxval only reads the auxiliary vector.
        if unsafe { libc::getauxval(AT_BASE) } == 0 {
            return;
        }
        let mut was = Vec::new();
        if let Some(value) = &given {
            was.push(b'=');
            was.extend_from_slice(value.as_bytes());
        }
        run_again(&tunables, &was);
    }
}

/// `execve` of this program with its arguments and environment as given,
/// but `GLIBC_TUNABLES` and [`WAS`] set: by its path, so that the process
/// keeps its name (`ps`, `pkill`), else by `/proc/self/exe`. Not
/// `Command::exec`, which would also clear the signal mask the process was
/// started with. Returns only when neither ran.
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
fn run_again(tunables: &[u8], was: &[u8]) {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStringExt;

    let Ok(argv) = std::env::args_os()
        .map(|a| CString::new(a.into_vec()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let replaced = |entry: &[u8]| {
        [&b"GLIBC_TUNABLES"[..], WAS.as_bytes()].iter().any(|name| {
            entry
                .strip_prefix(*name)
                .is_some_and(|r| r.first() == Some(&b'='))
        })
    };
    let mut envp = Vec::new();
    // SAFETY: `environ` is the process's NULL-terminated environment, and
    // no other thread exists to change it.
    unsafe {
        let mut p = libc::environ.cast_const();
        while !(*p).is_null() {
            let entry = CStr::from_ptr(*p);
            if !replaced(entry.to_bytes()) {
                envp.push(entry.to_owned());
            }
            p = p.add(1);
        }
    }
    let set = |name: &[u8], value: &[u8]| CString::new([name, b"=", value].concat());
    let (Ok(t), Ok(w)) = (set(b"GLIBC_TUNABLES", tunables), set(WAS.as_bytes(), was)) else {
        return;
    };
    envp.extend([t, w]);
    let pointers = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv, envp) = (pointers(&argv), pointers(&envp));
    let own = std::env::current_exe()
        .ok()
        .and_then(|p| CString::new(p.into_os_string().into_vec()).ok());
    for path in own.iter().chain([CString::from(c"/proc/self/exe")].iter()) {
        // SAFETY: NUL-terminated strings in NULL-terminated arrays, alive
        // across the call; `execve` returns only when it failed.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    }
}

/// In the run again of [`prefer_vector_copies`], puts `GLIBC_TUNABLES`
/// back as the process was given it (glibc has read it by now), so that
/// the commands it runs inherit exactly that. `main` calls it first of all.
pub fn put_back_environment() {
    use std::os::unix::ffi::OsStrExt;
    let Some(was) = std::env::var_os(WAS) else {
        return;
    };
    RAN_AGAIN.store(true, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: no other thread exists yet to read the environment.
    unsafe {
        std::env::remove_var(WAS);
        match was.as_bytes().strip_prefix(b"=") {
            Some(value) => std::env::set_var("GLIBC_TUNABLES", std::ffi::OsStr::from_bytes(value)),
            None => std::env::remove_var("GLIBC_TUNABLES"),
        }
    }
}

/// `GLIBC_TUNABLES` for the run again, or `None` when the given value
/// already sets the threshold.
fn tunables_to_run_with(given: Option<&[u8]>) -> Option<Vec<u8>> {
    let given = given.unwrap_or_default();
    let names_it = given
        .split(|&b| b == b':')
        .any(|t| t.split(|&b| b == b'=').next() == Some(REP_MOVSB.as_bytes()));
    if names_it {
        return None;
    }
    let mut out = given.to_vec();
    if !out.is_empty() {
        out.push(b':');
    }
    out.extend_from_slice(format!("{REP_MOVSB}={NEVER}").as_bytes());
    Some(out)
}

/// An AMD CPU with `rep movsb` worth using (ERMS), under a glibc older
/// than 2.40.
#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
fn slow_rep_movsb() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let leaf0 = __cpuid(0);
    let vendor = [leaf0.ebx, leaf0.edx, leaf0.ecx];
    // Leaf 7 only when leaf 0 says it is there.
    let erms = leaf0.eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 9) != 0;
    let amd = vendor
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .eq(*b"AuthenticAMD");
    // SAFETY: glibc returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    amd && erms && older_than_2_40(version.to_bytes())
}

fn older_than_2_40(version: &[u8]) -> bool {
    let mut parts = version
        .split(|&b| b == b'.')
        .map(|p| std::str::from_utf8(p).ok()?.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < (2, 40),
        _ => false,
    }
}

/// Whether this process runs with `rep movsb` held back by
/// [`prefer_vector_copies`]: the tests ask, to know what to expect of the
/// proxy's environment on the machine they run on.
pub fn runs_again_here() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    return slow_rep_movsb() && std::path::Path::new("/proc/self/exe").exists();
    #[allow(unreachable_code)]
    false
}

/// glibc returns freed memory at the top of a heap to the kernel once more
/// than 128 KiB is free there, and serves large allocations with fresh
/// mappings: a body streaming through the proxy allocates and frees its
/// buffers (TLS records, read buffers) hundreds of KiB at a time, and every
/// round paid page faults for memory it had just given back (58,000 per
/// captured GiB). Fixed thresholds keep a few MiB for reuse instead.
///
/// Each of those few MiB is kept per malloc arena, and glibc gives threads
/// new arenas (up to eight per core) as they contend: a body's buffers are
/// freed on whichever worker thread sends them, so after one large download
/// two or three arenas each held megabytes (W1's peak RSS 30–34 MiB). One
/// arena per four cores: on 2 cores W1 peaked at 25.8 MiB against 30.4,
/// with W1, W2 and W4's throughput and CPU unchanged in the same rounds.
/// Allocations of a request's size come from per-thread caches first, so
/// threads meet at an arena's lock only for the larger buffers.
pub fn tune_malloc() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(cores.div_ceil(4)).unwrap_or(i32::MAX);
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_added_to_what_was_given_unless_it_is_there() {
        let ours = format!("{REP_MOVSB}={NEVER}");
        assert_eq!(tunables_to_run_with(None).unwrap(), ours.as_bytes());
        assert_eq!(tunables_to_run_with(Some(b"")).unwrap(), ours.as_bytes());
        assert_eq!(
            tunables_to_run_with(Some(b"glibc.malloc.check=3")).unwrap(),
            format!("glibc.malloc.check=3:{ours}").as_bytes()
        );
        let theirs = format!("glibc.malloc.check=3:{REP_MOVSB}=8192");
        assert_eq!(tunables_to_run_with(Some(theirs.as_bytes())), None);
        // Another tunable whose name starts the same is not this one.
        let longer = format!("{REP_MOVSB}x=1");
        assert!(tunables_to_run_with(Some(longer.as_bytes())).is_some());
    }

    #[test]
    fn releases_before_2_40_are_older() {
        assert!(older_than_2_40(b"2.36"));
        assert!(older_than_2_40(b"2.39.9000"));
        assert!(!older_than_2_40(b"2.40"));
        assert!(!older_than_2_40(b"2.41"));
        assert!(!older_than_2_40(b"3.0"));
        assert!(!older_than_2_40(b"unknown"));
    }
}
