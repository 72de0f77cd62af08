//! Faults: nothing that completed is lost, nothing wrong is served.

use std::process::{Command, Stdio};

use sha2::Digest;
use std::time::{Duration, Instant};

use crate::support::*;

/// Runs a capture of `script` (which touches `fetched` once its downloads
/// are done), waits until the journal holds `entries` lines (its writer
/// thread fsyncs just after each exchange), then SIGKILLs buildproxy.
/// Returns the journal's path.
fn kill_capture_once_journaled(
    s: &Scratch,
    ca: &TestCa,
    script: &str,
    entries: usize,
) -> std::path::PathBuf {
    let mut child = capture_command(s.dir.path(), ca, &[], script)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&s.path("fetched"));
    let journal = s.path("proxy_content.nix.journal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < entries {
        assert!(
            Instant::now() < deadline,
            "the journal never held {entries} entries"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    journal
}

#[test]
fn a_capture_killed_with_sigkill_loses_nothing_that_completed() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let (a, b) = (up.https_url("/bytes/4096?a"), up.http_url("/status/404"));
    let journal = kill_capture_once_journaled(
        &s,
        &ca,
        &format!("curl -sS '{a}' '{b}' -o want -o /dev/null && touch fetched && sleep 60"),
        2,
    );
    assert!(
        !s.path("proxy_content.nix").exists(),
        "a killed capture cannot have written the file"
    );

    let out = Command::new(BIN)
        .current_dir(s.dir.path())
        .args(["capture", "--recover"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("recovering 2 entries"), "{err}");
    assert!(
        !journal.exists(),
        "the journal is gone once the file holds its entries"
    );
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    let want = std::fs::read(s.path("want")).unwrap();
    assert!(text.contains(&a) && text.contains(&sri(&want)), "{text}");
    assert!(
        text.contains(&b) && text.contains("status_code = 404"),
        "{text}"
    );
}

#[test]
fn the_next_capture_after_a_crash_keeps_what_the_crashed_one_recorded() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let a = up.https_url("/bytes/100?first");
    kill_capture_once_journaled(
        &s,
        &ca,
        &format!("curl -sS '{a}' -o /dev/null && touch fetched && sleep 60"),
        1,
    );

    let b = up.https_url("/bytes/100?second");
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &[],
        &format!("curl -sS '{b}' -o /dev/null"),
    );
    assert!(code == 0, "{err}");
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(text.contains(&a) && text.contains(&b), "{text}");
}

fn stderr_of(child: std::process::Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops a capture with `signal` once its command has fetched `url`, and
/// checks the file holds it: what completed before a signal is never lost.
fn signal_during_capture_keeps_what_completed(signal: i32) {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url(&format!("/bytes/2048?signal={signal}"));
    let child = capture_command(
        s.dir.path(),
        &ca,
        &[],
        &format!("curl -sS '{url}' -o want && touch fetched && exec sleep 60"),
    )
    .spawn()
    .unwrap();
    wait_for(&s.path("fetched"));
    unsafe { libc::kill(child.id() as i32, signal) };
    let (code, err) = stderr_of(child);
    assert_eq!(code, 128 + signal, "{err}");
    assert!(
        err.contains(&format!("stopped by signal {signal}")),
        "{err}"
    );
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    let want = std::fs::read(s.path("want")).unwrap();
    assert!(text.contains(&url) && text.contains(&sri(&want)), "{text}");
    assert!(
        !s.path("proxy_content.nix.journal").exists(),
        "the journal is gone once the file is written"
    );
}

#[test]
fn sigterm_during_capture_still_writes_what_completed() {
    signal_during_capture_keeps_what_completed(libc::SIGTERM);
}

#[test]
fn sigint_during_capture_still_writes_what_completed() {
    signal_during_capture_keeps_what_completed(libc::SIGINT);
}

#[test]
fn sighup_during_capture_still_writes_what_completed() {
    signal_during_capture_keeps_what_completed(libc::SIGHUP);
}

#[test]
fn a_command_killed_by_a_signal_passes_its_status_through_and_the_file_is_written() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url("/bytes/512?killed");
    let child = capture_command(
        s.dir.path(),
        &ca,
        &[],
        &format!("curl -sS '{url}' -o /dev/null; kill -KILL $$"),
    )
    .spawn()
    .unwrap();
    let (code, err) = stderr_of(child);
    assert_eq!(code, 128 + libc::SIGKILL, "{err}");
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(text.contains(&url), "{text}");
}

/// Every upstream fault fails its own download only: the client sees an
/// error (a 502/504 naming the cause when the head had not been sent, a
/// cut-off transfer when it had), nothing of it is recorded, the summary
/// lists each with its cause, and the good download beside them is kept.
#[test]
fn upstream_faults_fail_only_their_download_are_never_recorded_and_are_listed() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let faulty = FaultyUpstream::start();
    let blackhole = Blackhole::new();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let good = up.https_url("/bytes/3000?good");
    let cut_off = [
        ("reset", faulty.url("/reset/200000")),
        ("reset-chunked", faulty.url("/reset-chunked/200000")),
        ("short", faulty.url("/short/200000")),
        ("stall-body", faulty.url("/stall-body/200000")),
    ];
    let answered = [
        ("stall-head", faulty.url("/stall-head")),
        ("refused", format!("http://{refused}/x")),
        ("blackhole", format!("http://{}/y", blackhole.addr)),
    ];
    let mut script = String::new();
    for (name, url) in cut_off.iter().chain(&answered) {
        script.push_str(&format!(
            "curl -sS -o {name}.body -w '%{{http_code}}' '{url}' > {name}.status; echo $? > {name}.exit\n"
        ));
    }
    script.push_str(&format!("curl -sS -f -o good '{good}'\n"));
    let child = capture_command(
        s.dir.path(),
        &ca,
        &[
            "--connect-timeout-secs",
            "1",
            "--response-timeout-secs",
            "2",
            "--idle-timeout-secs",
            "2",
        ],
        &script,
    )
    .spawn()
    .unwrap();
    let (code, err) = stderr_of(child);
    assert_eq!(code, 0, "the good download succeeded: {err}");
    let read = |name: &str, ext: &str| {
        std::fs::read_to_string(s.path(&format!("{name}.{ext}")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    for (name, _) in &cut_off {
        // 18: partial file; 56: failure receiving data. Never 0: a body cut
        // short is never passed off as whole, chunked or not.
        let exit = read(name, "exit");
        assert!(
            exit == "18" || exit == "56",
            "{name}: curl exit {exit}: {err}"
        );
        assert_eq!(read(name, "status"), "200", "{name}");
    }
    let body = |name: &str| read(name, "body");
    assert_eq!(read("stall-head", "status"), "504");
    assert!(
        body("stall-head").contains("no response head within 2 s (--response-timeout-secs)"),
        "{}",
        body("stall-head")
    );
    assert_eq!(read("refused", "status"), "502");
    assert!(
        body("refused").to_lowercase().contains("refused"),
        "{}",
        body("refused")
    );
    assert_eq!(read("blackhole", "status"), "502");
    assert!(
        body("blackhole").contains("no connection within 1 s, --connect-timeout-secs"),
        "{}",
        body("blackhole")
    );

    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(text.contains(&good), "{text}");
    for (name, url) in cut_off.iter().chain(&answered) {
        assert!(!text.contains(url.as_str()), "{name} was recorded: {text}");
        let listed = err
            .lines()
            .any(|l| l.starts_with("buildproxy:   error:") && l.contains(url.as_str()));
        assert!(listed, "{name} is not in the summary: {err}");
    }
    let summary = |url: &str| {
        err.lines()
            .find(|l| l.starts_with("buildproxy:   error:") && l.contains(url))
            .unwrap_or_default()
            .to_lowercase()
    };
    assert!(summary(&cut_off[0].1).contains("reset"), "{err}");
    assert!(summary(&cut_off[2].1).contains("end of file"), "{err}");
    assert!(
        summary(&cut_off[3].1).contains("sent nothing for 2 s after 200000 bytes"),
        "{err}"
    );
    assert!(err.contains("7 errors"), "{err}");
}

#[test]
fn an_upstream_certificate_for_another_name_is_a_502_that_says_so() {
    let s = Scratch::new();
    let wrong = WrongNameUpstream::start(s.dir.path());
    let proxy = Running::start(&[
        "proxy",
        "--proxy-loopback",
        "--upstream-ca",
        wrong.ca_pem.to_str().unwrap(),
    ]);
    let url = wrong.url("/x");
    let (status, body) = status_and_body(&proxy.env, &[&url]);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains(&url), "{body}");
    assert!(
        body.contains("certificate not valid for name \"127.0.0.1\""),
        "{body}"
    );
}

/// A client that hangs up mid-body: the proxy stops reading that body from
/// upstream and does not record it (capture records only bodies it read
/// whole); the next download is recorded as usual.
#[test]
fn a_client_that_disconnects_mid_body_is_not_recorded_and_the_next_one_is() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    // Far larger than what socket buffers hold, so the proxy is still
    // sending when the client leaves.
    let big = up.https_url("/bytes/33554432?left");
    let next = up.https_url("/bytes/1000?next");
    let child = capture_command(
        s.dir.path(),
        &ca,
        &[],
        &format!(
            "curl -sS '{big}' 2>/dev/null | head -c 1000 > /dev/null; curl -sS -f -o /dev/null '{next}'"
        ),
    )
    .spawn()
    .unwrap();
    let (code, err) = stderr_of(child);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(
        !text.contains(&big),
        "a body the client left is recorded: {text}"
    );
    assert!(text.contains(&next), "{text}");
    assert!(
        err.lines()
            .any(|l| l.contains(&big) && l.contains("client went away")),
        "{err}"
    );
}

/// Reads what the proxy sends until it closes the connection (or 10 s).
fn read_until_closed(stream: &mut std::net::TcpStream) -> (Vec<u8>, Duration) {
    use std::io::Read;
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (got, start.elapsed())
}

#[test]
fn idle_and_stalled_client_connections_are_closed_while_others_are_served() {
    use std::io::Write;
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let proxy = Running::start(&[
        "proxy",
        "--proxy-loopback",
        "--upstream-ca",
        ca.pem_path.to_str().unwrap(),
        "--client-header-timeout-secs",
        "1",
    ]);
    let addr = proxy.var("BUILDPROXY_ADDR").to_string();
    let idle = std::net::TcpStream::connect(&addr).unwrap();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(format!("GET {} HTTP/1.1\r\nhost: x\r\n", up.http_url("/bytes/1")).as_bytes())
        .unwrap();
    // Served meanwhile.
    let want = direct(&ca, &up.https_url("/bytes/5000"));
    assert_eq!(
        fetch(&proxy.env, &["-f", &up.https_url("/bytes/5000")]),
        want
    );
    for (name, mut stream) in [("idle", idle), ("stalled", stalled)] {
        let (_, waited) = read_until_closed(&mut stream);
        assert!(
            waited < Duration::from_secs(9),
            "the {name} connection was not closed"
        );
    }
    assert_eq!(
        fetch(&proxy.env, &["-f", &up.https_url("/bytes/5000")]),
        want
    );
}

#[test]
fn oversized_headers_get_431_and_malformed_requests_400_while_others_are_served() {
    use std::io::Write;
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let proxy = Running::start(&[
        "proxy",
        "--proxy-loopback",
        "--upstream-ca",
        ca.pem_path.to_str().unwrap(),
    ]);
    let addr = proxy.var("BUILDPROXY_ADDR").to_string();
    let url = up.http_url("/bytes/100");

    // Raw sockets: curl itself refuses to send a head this large.
    let many: String = (0..300).map(|i| format!("x-h{i}: 1\r\n")).collect();
    for (what, extra) in [
        (
            "a 1 MiB header",
            format!("x-big: {}\r\n", "a".repeat(1 << 20)),
        ),
        ("300 headers", many),
    ] {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        let head = format!("GET {url} HTTP/1.1\r\nhost: x\r\n{extra}\r\n");
        // The proxy may answer and close before reading it all.
        let _ = c.write_all(head.as_bytes());
        let (got, _) = read_until_closed(&mut c);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 431"), "{what}: {text}");
    }

    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET http://x/ HTTP/9.9\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nbad header line\r\n\r\n",
    ] {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(garbage).unwrap();
        let (got, _) = read_until_closed(&mut c);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{:?}: {text}",
            String::from_utf8_lossy(garbage)
        );
    }
    let want = direct(&ca, &url);
    assert_eq!(fetch(&proxy.env, &["-f", &url]), want);
}

/// A plugin answer that is not valid HTTP (a header value that would split
/// the head on the wire), from `on-request` or `on-response`: a 502 naming
/// the plugin for that exchange only, a log line, and nothing smuggled.
#[test]
fn a_plugin_header_value_with_a_newline_is_a_502_for_that_exchange_only() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    for how in ["bad-value", "bad-value-response"] {
        let plugin = format!("{}={how}", fixture_plugin("misbehave").display());
        let proxy = Running::start(&[
            "proxy",
            "--proxy-loopback",
            "--upstream-ca",
            ca.pem_path.to_str().unwrap(),
            "--plugin",
            &plugin,
        ]);
        let out = curl(
            &proxy.env,
            &["-i", "--suppress-connect-headers", &up.https_url("/boom")],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("HTTP/2 502") || text.starts_with("HTTP/1.1 502"),
            "{how}: {text}"
        );
        assert!(
            text.contains("misbehave"),
            "{how}: names the plugin: {text}"
        );
        assert!(
            text.contains("x-injected"),
            "{how}: names the header: {text}"
        );
        assert!(!text.to_lowercase().contains("smuggled"), "{how}: {text}");
        let want = direct(&ca, &up.https_url("/bytes/700"));
        assert_eq!(
            fetch(&proxy.env, &["-f", &up.https_url("/bytes/700")]),
            want,
            "{how}"
        );
        let (_, log) = proxy.stop();
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains("/boom") && l.contains("misbehave")),
            "{how}: a log line names the exchange and the plugin: {log}"
        );
    }
}

/// A plugin that answers a HEAD request with a body: the host sends the
/// head only (its content-length the body's), so the next response on the
/// same kept-alive connection is read intact.
#[test]
fn a_body_a_plugin_gives_a_head_request_is_never_sent() {
    use std::io::{Read, Write};
    let plugin = format!(
        "{}=respond:local body",
        fixture_plugin("misbehave").display()
    );
    let proxy = Running::start(&["proxy", "--plugin", &plugin]);
    let mut c = std::net::TcpStream::connect(proxy.var("BUILDPROXY_ADDR")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Pipelined: HEAD, then GET on the same connection.
    c.write_all(
        b"HEAD http://example.invalid/chain HTTP/1.1\r\nhost: example.invalid\r\n\r\n\
          GET http://example.invalid/chain HTTP/1.1\r\nhost: example.invalid\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    let (head, rest) = text.split_once("\r\n\r\n").expect("a HEAD response");
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    assert!(head.contains("content-length: 10"), "{text}");
    assert!(
        rest.starts_with("HTTP/1.1 200"),
        "the HEAD response carried a body: {text}"
    );
    assert!(rest.ends_with("\r\n\r\nlocal body"), "{text}");
}

/// Hostile or broken content stops replay at start, before the build runs,
/// with a message naming the file, the entry and the fix.
#[test]
fn broken_or_hostile_content_stops_replay_at_start_naming_file_entry_and_fix() {
    let s = Scratch::new();
    let root = s.path("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("blob"), b"hello").unwrap();
    let secret = s.path("secret");
    std::fs::write(&secret, b"not for the build").unwrap();
    let escape = format!("{}/../secret", root.display());
    let gone = root.join("gone");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "malformed",
            r#"[{"url": "https://e.org/a", "file": null,}]"#.into(),
            vec![":1:42:", "trailing comma", "expected a JSON list of"],
        ),
        (
            "no-file-field",
            r#"[{"url": "https://e.org/ok", "file": null}, {"url": "https://e.org/a"}]"#.into(),
            vec!["entry [1] (https://e.org/a)", "missing field `file`", "\"file\": null"],
        ),
        (
            "missing-file",
            format!(r#"[{{"url": "https://e.org/a", "file": "{}"}}]"#, gone.display()),
            vec!["entry [0] (https://e.org/a)", "cannot be opened", "build the content file again"],
        ),
        (
            "outside",
            format!(r#"[{{"url": "https://e.org/a", "file": "{}"}}]"#, secret.display()),
            vec!["entry [0] (https://e.org/a)", "outside the allowed roots", "--allow-root"],
        ),
        (
            "dot-dot",
            format!(r#"[{{"url": "https://e.org/a", "file": "{escape}"}}]"#),
            vec!["entry [0] (https://e.org/a)", "really", "outside the allowed roots"],
        ),
        (
            "duplicate",
            r#"[{"url": "https://e.org/a", "file": null}, {"url": "https://E.org:443/a", "file": null}]"#.into(),
            vec!["entries [0] and [1]", "remove one of them"],
        ),
    ];
    for (name, json, want) in cases {
        let file = s.path(&format!("{name}.json"));
        std::fs::write(&file, json).unwrap();
        let ran = s.path(&format!("{name}.ran"));
        let out = Command::new(BIN)
            .args(["replay", "--content", file.to_str().unwrap()])
            .args(["--allow-root", root.to_str().unwrap()])
            .args(["--", "touch", ran.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(!ran.exists(), "{name}: the build ran");
        assert!(
            err.contains(&format!("{name}.json")),
            "{name}: names the file: {err}"
        );
        for w in want {
            assert!(err.contains(w), "{name}: says {w:?}: {err}");
        }
    }

    // A --store index may only name blobs inside the store, by their hash.
    let store = s.path("store");
    std::fs::create_dir_all(store.join("blobs/sha256")).unwrap();
    let index = format!(
        r#"[{{"url": "https://e.org/a", "file": "{}", "hash": "{}"}}]"#,
        secret.display(),
        sri(b"not for the build")
    );
    std::fs::write(store.join("index.json"), index).unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--store", store.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for w in [
        "index.json",
        "entry [0] (https://e.org/a)",
        "blobs/sha256/",
        "capture into the store again",
    ] {
        assert!(err.contains(w), "says {w:?}: {err}");
    }
}

/// Runs `script` (sh) in a user and mount namespace with a 1 MiB tmpfs
/// mounted on `mnt`: a real full disk, without root on the host.
fn with_small_disk(mnt: &std::path::Path, script: &str) {
    std::fs::create_dir_all(mnt).unwrap();
    let full = format!(
        "set -e\nmount -t tmpfs -o size=1m tmpfs '{}'\n{script}",
        mnt.display()
    );
    let out = tool("unshare")
        .args(["-rm", "sh", "-c", &full])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the namespace script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_full_disk_while_storing_a_body_fails_that_download_names_the_file_and_leaves_no_partial_blob()
{
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let mnt = s.path("disk");
    let (big, small) = (
        up.https_url("/bytes/3000000?big"),
        up.https_url("/bytes/2000?small"),
    );
    std::fs::write(
        s.path("build.sh"),
        format!(
            "curl -sS -o /dev/null '{big}'; echo $? > big.exit\n\
             curl -sS -f -o small '{small}'\n"
        ),
    )
    .unwrap();
    let store = mnt.join("store");
    with_small_disk(
        &mnt,
        &format!(
            "cd '{dir}'\n\
             set +e\n\
             {BIN} capture --proxy-loopback --upstream-ca '{ca}' --store '{store}' -- sh build.sh 2> capture.err\n\
             echo $? > capture.exit\n\
             ls -A '{store}/tmp' > tmp.list\n\
             ls -A '{store}/blobs/sha256' > blobs.list\n",
            dir = s.dir.path().display(),
            ca = ca.pem_path.display(),
            store = store.display(),
        ),
    );
    let read = |name: &str| std::fs::read_to_string(s.path(name)).unwrap();
    let err = read("capture.err");
    assert_eq!(read("capture.exit").trim(), "0", "{err}");
    let exit = read("big.exit");
    // 18: partial file, 56: receive failure (HTTP/1.1); 92: stream reset (h2).
    assert!(
        matches!(exit.trim(), "18" | "56" | "92"),
        "the big download failed: {exit} {err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("buildproxy:   error:") && l.contains(&big))
        .unwrap_or_else(|| panic!("the summary lists the failed download: {err}"));
    assert!(
        line.contains(&format!("{}/tmp/blob-", store.display()))
            && line.contains("No space left on device")
            && line.contains("the disk is full: free space and retry"),
        "{line}"
    );
    assert_eq!(read("tmp.list"), "", "a partial blob was left behind");
    let small_hex: String = sha2::Sha256::digest(std::fs::read(s.path("small")).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        read("blobs.list").trim(),
        small_hex,
        "only the whole body is stored"
    );
    let text = read("proxy_content.nix");
    assert!(text.contains(&small) && !text.contains(&big), "{text}");
}

#[test]
fn a_full_disk_while_writing_the_output_keeps_the_previous_file_and_recover_writes_it_later() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let mnt = s.path("disk");
    let (first, second) = (
        up.https_url("/bytes/100?first"),
        up.https_url("/bytes/100?second"),
    );
    let output = mnt.join("proxy_content.nix");
    // The second build fills the disk once its download is journaled.
    std::fs::write(
        s.path("fill.sh"),
        format!(
            "curl -sS -f -o /dev/null '{second}'\n\
             n=0; until grep -qF '{second}' '{journal}' 2>/dev/null; do\n\
               n=$((n+1)); [ $n -lt 400 ] || exit 3; sleep 0.05\n\
             done\n\
             dd if=/dev/zero of='{mnt}/filler' bs=64k 2>/dev/null || true\n",
            journal = journal_path(&output).display(),
            mnt = mnt.display(),
        ),
    )
    .unwrap();
    let capture = format!(
        "{BIN} capture --proxy-loopback --upstream-ca '{}' --output '{}'",
        ca.pem_path.display(),
        output.display()
    );
    with_small_disk(
        &mnt,
        &format!(
            "cd '{dir}'\n\
             {capture} -- curl -sS -f -o /dev/null '{first}' 2> first.err\n\
             cp '{out}' before.nix\n\
             set +e\n\
             {capture} -- sh fill.sh 2> full.err\n\
             echo $? > full.exit\n\
             cp '{out}' after.nix\n\
             ls -A '{mnt}' > listing\n\
             rm '{mnt}/filler'\n\
             {BIN} capture --recover --output '{out}' 2> recover.err\n\
             echo $? > recover.exit\n\
             cp '{out}' recovered.nix\n",
            dir = s.dir.path().display(),
            out = output.display(),
            mnt = mnt.display(),
        ),
    );
    let read = |name: &str| std::fs::read_to_string(s.path(name)).unwrap();
    let err = read("full.err");
    assert_eq!(read("full.exit").trim(), "2", "{err}");
    assert!(
        err.contains(&format!("{}: cannot write", output.display()))
            && err.contains("the disk is full: free space and retry")
            && err.contains("entries are kept in")
            && err.contains("buildproxy capture --recover --output"),
        "{err}"
    );
    assert_eq!(
        read("after.nix"),
        read("before.nix"),
        "the previous file changed"
    );
    assert!(read("before.nix").contains(&first));
    let listing = read("listing");
    assert!(
        !listing.contains(".tmp") && listing.contains("proxy_content.nix.journal"),
        "no temporary file is left, the journal is kept: {listing}"
    );
    assert_eq!(read("recover.exit").trim(), "0", "{}", read("recover.err"));
    assert!(
        read("recovered.nix").contains(&second),
        "{}",
        read("recovered.nix")
    );
}

fn journal_path(output: &std::path::Path) -> std::path::PathBuf {
    let mut name = output.file_name().unwrap().to_os_string();
    name.push(".journal");
    output.with_file_name(name)
}

/// `capture --merge` reads the file it will update before the build runs:
/// a broken one stops it at start, naming the place and the fix, and is
/// left as it was.
#[test]
fn a_broken_file_to_merge_into_stops_capture_before_the_build_runs() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let broken = "{ fetchurl }:\n[\n  { url = \"https://e.org/a\" file = null; }\n]\n";
    std::fs::write(s.path("proxy_content.nix"), broken).unwrap();
    let out = capture_command(s.dir.path(), &ca, &["--merge"], "touch ran")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!s.path("ran").exists(), "the build ran");
    assert!(
        err.contains("proxy_content.nix:3:") && err.contains("expected `;`"),
        "names the place: {err}"
    );
    assert!(
        err.contains("regenerate it with `buildproxy capture`"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("proxy_content.nix")).unwrap(),
        broken
    );
}

/// curl's exit codes for a transfer that ended early: 16 (HTTP/2 framing),
/// 18 (partial file), 56 (receive failure), 92 (HTTP/2 stream error).
const CUT_SHORT: [&str; 4] = ["16", "18", "56", "92"];

/// `curl --http1.1` and `curl --http2` of `url`, each leaving
/// `<version>.{body,version,exit}` behind.
fn curl_both_versions(url: &str) -> String {
    ["http1.1", "http2"]
        .iter()
        .map(|v| {
            format!(
                "curl --{v} -sS -o {v}.body -w '%{{http_version}}' '{url}' > {v}.version; \
                 echo $? > {v}.exit\n"
            )
        })
        .collect()
}

/// Asserts both versions' transfers failed, over the protocol they asked
/// for, short of `size` bytes.
fn assert_both_cut_short(s: &Scratch, size: usize, log: &str) {
    let read = |f: &str| std::fs::read_to_string(s.path(f)).unwrap_or_default();
    for (v, version) in [("http1.1", "1.1"), ("http2", "2")] {
        let exit = read(&format!("{v}.exit"));
        assert!(
            CUT_SHORT.contains(&exit.trim()),
            "{v}: curl exit {exit:?}: a body cut short must never end cleanly: {log}"
        );
        // "0": no response head reached curl before the stream was reset
        // (the error came first), still not a clean end and not a
        // downgrade to another protocol.
        let got_version = read(&format!("{v}.version"));
        assert!(
            got_version == version || got_version == "0",
            "{v}: answered over HTTP/{got_version}"
        );
        let got = std::fs::metadata(s.path(&format!("{v}.body"))).map_or(0, |m| m.len());
        assert!((got as usize) < size, "{v}: {got} bytes");
    }
}

#[test]
fn a_file_shorter_than_its_recorded_size_ends_the_transfer_with_an_error() {
    // Content loaded whole at start (`--content` JSON, as a nix-buildproxy
    // JSON is): replay took the file's size then, and the file shrinks
    // afterwards, while the build runs. (A damaged file found before its
    // transfer starts is the hash check's: see security::.)
    let s = Scratch::new();
    let body = payload(300_000, 11);
    let file = s.path("files/body.bin");
    std::fs::create_dir_all(s.path("files")).unwrap();
    std::fs::write(&file, &body).unwrap();
    let url = "https://example.invalid/body.bin";
    let content = serde_json::json!([{
        "url": url, "status_code": 200, "headers": {},
        "file": file, "hash": sri(&body),
    }]);
    std::fs::write(s.path("content.json"), content.to_string()).unwrap();
    let script = format!(
        "truncate -s 100000 '{}' && {}",
        file.display(),
        curl_both_versions(url)
    );
    let files = s.path("files").display().to_string();
    let args = ["--content", "content.json", "--allow-root", &files];
    let (_, err) = replay_offline(s.dir.path(), &args, &script);
    assert_both_cut_short(&s, 300_000, &err);
}

#[test]
fn an_upstream_that_fails_mid_body_never_looks_whole_to_an_h2_client() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Sends 100,000 bytes with no content-length (so only the proxy's error
    // can tell the client the body is cut short), and fails the body a
    // moment later, once the head and those bytes have reached the proxy.
    let addr = spawn_server(&rt, Some(ca.server.clone()), |_req| async {
        let frames = futures_util::stream::unfold(0, |step| async move {
            let frame: Result<Frame<bytes::Bytes>, std::io::Error> = match step {
                0 => Ok(Frame::data(bytes::Bytes::from(payload(100_000, 7)))),
                1 => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Err(std::io::Error::other("upstream cut off on purpose"))
                }
                _ => return None,
            };
            Some((frame, step + 1))
        });
        let body = StreamBody::new(frames);
        Ok::<_, std::convert::Infallible>(hyper::Response::builder().body(body).unwrap())
    });
    let url = format!("https://{addr}/cut.bin");
    let (code, err) = capture(s.dir.path(), &ca, &[], &curl_both_versions(&url));
    assert_eq!(code, 0, "{err}");
    assert_both_cut_short(&s, 200_000, &err);
    let content = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(
        !content.contains("cut.bin"),
        "a cut body was recorded: {content}"
    );
}
