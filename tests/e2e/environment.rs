//! What README documents about the client environment and the command line,
//! each checked for real: the CA bundle's roots in each mode, a CA the user
//! keeps, the private temp directory's life, the chain flags, and misses a
//! detached proxy reports while the build runs.

use std::process::{Command, Output};

use crate::support::*;

fn run(dir: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The test CA's certificate as PEM, one line per 64 characters, as it
/// appears in a bundle.
fn pem_body(pem_path: &std::path::Path) -> String {
    let pem = std::fs::read_to_string(pem_path).unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn bundle_body(bundle: &std::path::Path) -> String {
    std::fs::read_to_string(bundle)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

#[test]
fn capture_bundles_the_system_roots_for_traffic_that_bypasses_the_proxy_and_replay_does_not() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    // The machine's system roots are the test CA here (the system-roots
    // loader honours SSL_CERT_FILE). Loopback bypasses the proxy (no
    // --proxy-loopback), so curl reaches the upstream directly and can only
    // verify it with the system roots buildproxy put in its bundle.
    let url = up.https_url("/bytes/64?direct");
    let system = ca.pem_path.to_str().unwrap();
    let script = format!("cp \"$SSL_CERT_FILE\" bundle && curl -fsS -o got '{url}'");
    let out = run(
        s.dir.path(),
        &[("SSL_CERT_FILE", system)],
        &["capture", "--", "sh", "-c", &script],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(s.path("got")).unwrap(), direct(&ca, &url));
    assert!(
        bundle_body(&s.path("bundle")).contains(&pem_body(&ca.pem_path)),
        "capture's bundle lacks the system roots"
    );

    // Replay answers everything itself: its bundle holds its own CA only.
    std::fs::write(s.path("empty.json"), "[]").unwrap();
    let out = run(
        s.dir.path(),
        &[("SSL_CERT_FILE", system)],
        &[
            "replay",
            "--content",
            "empty.json",
            "--",
            "sh",
            "-c",
            "cp \"$SSL_CERT_FILE\" replay-bundle",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let replay = std::fs::read_to_string(s.path("replay-bundle")).unwrap();
    assert_eq!(replay.matches("BEGIN CERTIFICATE").count(), 1, "{replay}");
    assert!(!bundle_body(&s.path("replay-bundle")).contains(&pem_body(&ca.pem_path)));
}

/// Where glibc copies slowly with `rep movsb` (AMD, glibc before 2.40),
/// the modes that carry upstream bodies run themselves again with the
/// threshold set. Either way, the command they run sees `GLIBC_TUNABLES`
/// exactly as it was given, the proxy keeps its name, and a threshold the
/// user set is theirs. (Elsewhere only the environment is checked.)
#[test]
fn capture_holds_back_rep_movsb_where_it_is_slow_and_its_command_sees_glibc_tunables_as_given() {
    let s = Scratch::new();
    let again = buildproxy::glibc::runs_again_here();
    // The proxy is the command's parent; its environ is what it was
    // started with the last time (glibc writes into GLIBC_TUNABLES's
    // value as it reads it, so only the marker and the start are checked).
    let script = "printf 'child=%s\\n' \"${GLIBC_TUNABLES-unset}\"; \
                  printf 'marker=%s\\n' \"${BUILDPROXY_GLIBC_TUNABLES_WAS-unset}\"; \
                  printf 'name=%s\\n' \"$(cat /proc/$PPID/comm)\"; \
                  tr '\\0' '\\n' < /proc/$PPID/environ | grep -a -e '^GLIBC_TUNABLES=' -e '^BUILDPROXY_GLIBC_TUNABLES_WAS=' | sed 's/^/proxy: /'";
    let theirs = "glibc.cpu.x86_rep_movsb_threshold=8192";
    for given in [None, Some("glibc.malloc.check=0"), Some(theirs)] {
        // A bound, so that a proxy that ran itself again and again fails
        // the test instead of hanging it.
        let mut cmd = Command::new("timeout");
        cmd.current_dir(s.dir.path())
            .env_remove("GLIBC_TUNABLES")
            .env_remove("BUILDPROXY_GLIBC_TUNABLES_WAS")
            .args([
                "60", BIN, "capture", "--output", "c.nix", "--", "sh", "-c", script,
            ]);
        if let Some(value) = given {
            cmd.env("GLIBC_TUNABLES", value);
        }
        let out = cmd.output().unwrap();
        let text = text(&out);
        assert!(out.status.success(), "{given:?}: {text}");
        assert!(
            text.contains(&format!("child={}\n", given.unwrap_or("unset"))),
            "{given:?}: {text}"
        );
        assert!(text.contains("marker=unset\n"), "{given:?}: {text}");
        // Run again by its path, the process keeps its name (`ps`, `pkill`).
        assert!(text.contains("name=buildproxy\n"), "{given:?}: {text}");
        let ran_again = again && given != Some(theirs);
        assert_eq!(
            text.contains("proxy: BUILDPROXY_GLIBC_TUNABLES_WAS="),
            ran_again,
            "{given:?}: {text}"
        );
        if given.is_none() {
            assert_eq!(
                text.contains("proxy: GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold="),
                ran_again,
                "{text}"
            );
        }
    }
}

#[test]
fn the_private_temp_directory_is_removed_at_exit_in_each_mode() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    std::fs::write(s.path("empty.json"), "[]").unwrap();
    let ca_pem = ca.pem_path.to_str().unwrap().to_string();
    for (mode, args) in [
        ("capture", vec!["capture", "--upstream-ca", &ca_pem]),
        ("replay", vec!["replay", "--content", "empty.json"]),
        ("proxy", vec!["proxy"]),
    ] {
        let mut all = args.clone();
        all.extend([
            "--",
            "sh",
            "-c",
            "dirname \"$SSL_CERT_FILE\" > where; ls \"$(dirname \"$WGETRC\")\" > listing",
        ]);
        let out = run(s.dir.path(), &[], &all);
        assert!(out.status.success(), "{mode}: {}", text(&out));
        let dir = std::fs::read_to_string(s.path("where")).unwrap();
        let listing = std::fs::read_to_string(s.path("listing")).unwrap();
        assert!(
            listing.contains("ca-bundle.pem"),
            "{mode}: the command saw the files: {listing}"
        );
        assert!(
            !std::path::Path::new(dir.trim()).exists(),
            "{mode}: {} is still there after exit",
            dir.trim()
        );
    }
}

#[test]
fn a_ca_the_user_keeps_signs_what_clients_see_and_a_fresh_one_does_not() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "the packager's own CA");
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(s.path("mine.pem"), cert.pem()).unwrap();
    std::fs::write(s.path("mine.key"), key.serialize_pem()).unwrap();
    let url = up.https_url("/bytes/99?mine");
    // curl trusts only the kept CA (--cacert replaces the exported bundle).
    let script = format!("curl -sS --cacert mine.pem -o got '{url}'; echo $? > exit");
    let ca_pem = ca.pem_path.to_str().unwrap();
    for (kept, want) in [(true, "0"), (false, "60")] {
        let mut args = vec!["capture", "--proxy-loopback", "--upstream-ca", ca_pem];
        if kept {
            args.extend(["--ca-cert", "mine.pem", "--ca-key", "mine.key"]);
        }
        args.extend(["--", "sh", "-c", &script]);
        let out = run(s.dir.path(), &[], &args);
        assert!(out.status.success(), "{}", text(&out));
        let exit = std::fs::read_to_string(s.path("exit")).unwrap();
        assert_eq!(exit.trim(), want, "kept CA {kept}: {}", text(&out));
    }
    assert_eq!(std::fs::read(s.path("got")).unwrap(), direct(&ca, &url));
}

#[test]
fn no_default_plugins_starts_from_an_empty_chain_that_records_nothing() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url("/bytes/77?empty-chain");
    let script = format!("curl -fsS -o got '{url}'");
    let ca_pem = ca.pem_path.to_str().unwrap();
    // With the bundled plugins (the control), then without any.
    for (flags, recorded) in [(&[][..], 1), (&["--no-default-plugins"][..], 0)] {
        let mut args = vec!["capture", "--proxy-loopback", "--upstream-ca", ca_pem];
        args.extend(flags);
        args.extend(["--", "sh", "-c", &script]);
        let out = run(s.dir.path(), &[], &args);
        assert!(out.status.success(), "{flags:?}: {}", text(&out));
        assert_eq!(std::fs::read(s.path("got")).unwrap(), direct(&ca, &url));
        let entries = eval_content(&s.path("proxy_content.nix"));
        assert_eq!(entries.len(), recorded, "{flags:?}: {entries:?}");
    }
}

#[test]
fn a_plugin_config_for_a_plugin_not_in_the_chain_stops_at_start_naming_the_chain() {
    let s = Scratch::new();
    let out = run(
        s.dir.path(),
        &[],
        &["proxy", "--plugin-config", "nope=x", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = text(&out);
    assert!(
        err.contains("no plugin named \"nope\" in the chain"),
        "{err}"
    );
    for bundled in ["redirect", "capture", "replay"] {
        assert!(err.contains(bundled), "the message lists the chain: {err}");
    }
}

#[test]
fn a_detached_proxy_reports_each_miss_while_the_build_still_runs() {
    let s = Scratch::new();
    std::fs::write(s.path("empty.json"), "[]").unwrap();
    // The shell's stderr, where the detached proxy writes, is a file the
    // script itself reads before it exits: the line is there while it runs.
    let script = format!(
        "eval \"$(BUILDPROXY_SHELL_PID=$$ {BIN} replay --proxy-loopback --content empty.json \
         --detach)\"; \
         curl -sS -o /dev/null http://127.0.0.1:9/not-captured; \
         for i in $(seq 50); do grep -q 'MISS GET http://127.0.0.1:9/not-captured' log && \
         echo seen > seen && break; sleep 0.1; done"
    );
    let out = Command::new("sh")
        .current_dir(s.dir.path())
        .args(["-c", &format!("exec 2> log; {script}")])
        .output()
        .unwrap();
    let log = std::fs::read_to_string(s.path("log")).unwrap_or_default();
    assert!(out.status.success(), "{log}");
    assert!(
        s.path("seen").exists(),
        "no MISS line while the build ran: {log}"
    );
}
