//! A compiled plugin runs as native code: a cached artifact is loaded only
//! from a place nobody else could have written it.
//!
//! As OpenSSH checks its files: the artifact and every directory above it
//! must belong to root or to us, and none may be writable by group or
//! others, except a directory with the sticky bit (such as `/tmp`), where
//! others cannot replace what is ours. A read-only file in the Nix store
//! (the packaged, precompiled plugins) is trusted as replay trusts it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `Err` says which path is unsafe and why.
pub fn check(artifact: &Path) -> Result<(), String> {
    if crate::inventory::verify::in_nix_store_read_only(artifact) {
        return Ok(());
    }
    // SAFETY: geteuid never fails.
    let me = unsafe { libc::geteuid() };
    let owner_ok = |uid: u32| uid == 0 || uid == me;
    let meta =
        std::fs::symlink_metadata(artifact).map_err(|e| format!("{}: {e}", artifact.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file", artifact.display()));
    }
    if !owner_ok(meta.uid()) || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} belongs to uid {} or is writable by others (mode {:o})",
            artifact.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    check_dir(artifact.parent().unwrap_or(Path::new(".")))
}

/// `dir` and every directory above it that exists (the cache may not have
/// been created yet: we create it).
pub fn check_dir(dir: &Path) -> Result<(), String> {
    // SAFETY: geteuid never fails.
    let me = unsafe { libc::geteuid() };
    let mut dir = Some(dir);
    while let Some(d) = dir {
        let path = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        dir = d.parent();
        let m = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let sticky = m.mode() & libc::S_ISVTX != 0;
        if !(m.uid() == 0 || m.uid() == me || m.uid() == overflow_uid())
            || (m.mode() & 0o022 != 0 && !sticky)
        {
            return Err(format!(
                "the directory {} belongs to uid {} or is writable by others (mode {:o})",
                path.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// How root shows inside a user namespace that does not map it (the Nix
/// sandbox's `/`). A directory it owns is accepted: the artifact itself
/// must still be root's or ours, which its owner cannot forge.
fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn artifacts_others_could_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let f = cache.join("x.cwasm");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(check(&f), Ok(()));
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check(&f).unwrap_err();
        assert!(err.contains("cache"), "{err}");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check(&f), Ok(()), "a sticky directory is fine");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(check(&f).unwrap_err().contains("x.cwasm"));
    }
}
