//! The suite itself: one test command for CI and README, and the Nix
//! package's check phase (unit tests inside a Nix build, which has no Nix,
//! curl or git) running no test that needs an outside program.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn readme_and_ci_run_the_one_test_command_that_installs_what_it_needs() {
    let readme = read("README.md");
    assert!(
        readme.contains("\n./tests/run.sh\n"),
        "README's quick start must give ./tests/run.sh as the test command"
    );
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "exec ./tests/run.sh"),
        ".ci/run must run exactly README's test command: {ci}"
    );
    // Every program the suite names in a `tool(…)` call has a package in
    // tests/tools.txt, which tests/run.sh installs from.
    let tools = read("tests/tools.txt");
    let listed: Vec<&str> = tools
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut unlisted = Vec::new();
    for file in std::fs::read_dir(repo().join("tests/e2e")).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for rest in text.split("tool(\"").skip(1) {
            let program = &rest[..rest.find('"').unwrap()];
            if !listed.contains(&program) {
                unlisted.push(format!("{}: {program}", path.display()));
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "programs tests run but tests/tools.txt does not list (tests/run.sh would not \
         install them): {unlisted:?}"
    );
}

/// `--skip` filters in `nix/package.nix`'s `checkFlags`.
fn package_check_flags() -> Vec<String> {
    let nix = read("nix/package.nix");
    let start = nix
        .find("checkFlags = [")
        .expect("nix/package.nix sets checkFlags");
    let list = &nix[start..start + nix[start..].find("];").unwrap()];
    list.split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// The unit-test binaries of the workspace's libraries, as the last
/// `cargo test --workspace` built them (`--lib` is what the package runs):
/// per crate, the newest `deps/<crate>-<hash>` that lists tests.
fn unit_test_binaries() -> Vec<(PathBuf, String)> {
    let deps = std::env::current_exe().unwrap();
    let deps = deps.parent().unwrap();
    let mut by_crate: std::collections::BTreeMap<String, Vec<(std::time::SystemTime, PathBuf)>> =
        Default::default();
    for f in std::fs::read_dir(deps).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some((krate, hash)) = name.rsplit_once('-') else {
            continue;
        };
        let meta = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        if !krate.starts_with("buildproxy")
            || hash.len() != 16
            || !hash.chars().all(|c| c.is_ascii_hexdigit())
            || !meta.is_file()
            || meta.permissions().mode() & 0o111 == 0
        {
            continue;
        }
        by_crate
            .entry(krate.to_string())
            .or_default()
            .push((meta.modified().unwrap(), path));
    }
    let mut found = Vec::new();
    for (_, mut candidates) in by_crate {
        candidates.sort();
        for (_, path) in candidates.into_iter().rev() {
            let out = Command::new(&path)
                .args(["--list", "--format", "terse"])
                .output()
                .unwrap();
            let list = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && list.contains(": test") {
                found.push((path, list));
                break;
            }
        }
    }
    found
}

#[test]
fn the_package_check_phase_runs_no_test_that_needs_an_outside_program() {
    let flags = package_check_flags();
    assert!(flags.iter().any(|f| f == "--skip"), "checkFlags: {flags:?}");
    let binaries = unit_test_binaries();
    assert!(
        binaries
            .iter()
            .any(|(_, list)| list.contains("inventory::")),
        "the host's unit-test binary was not found next to {:?}: run `cargo test --workspace` \
         (this test runs what it built); found {:?}",
        std::env::current_exe().unwrap(),
        binaries.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    // A Nix build's check phase: no PATH to find programs on, a HOME that
    // is not one. A test that needs a program fails here as it would there.
    let empty = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for (binary, _) in &binaries {
        let out = Command::new(binary)
            .env_clear()
            .env("PATH", empty.path())
            .env("HOME", "/homeless-shelter")
            .env("TMPDIR", std::env::temp_dir())
            .args(&flags)
            .output()
            .unwrap();
        if !out.status.success() {
            failed.push(format!(
                "{}:\n{}{}",
                binary.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "with nix/package.nix's checkFlags {flags:?} and no programs on PATH, these unit tests \
         fail: move a test that runs a program into a `mod needs_tools` (skipped by the \
         package), or give the package what it needs.\n{}",
        failed.join("\n")
    );
}
