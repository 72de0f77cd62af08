//! Attacks from issue 16, each reproduced and now refused: another local
//! user on the proxy's port, a tampered or planted store, a crowd of
//! clients that never read, a umask that capture ignored.
//!
//! Another user is `nobody`, by `setpriv` (these tests run as root, as CI
//! does).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

/// curl run as `nobody`, with no environment but PATH and `args`.
fn curl_as_nobody(args: &[&str]) -> Output {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests switch to the user nobody: run them as root (CI does)"
    );
    tool("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "curl",
            "-sS",
            "--max-time",
            "20",
        ])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .current_dir("/")
        .output()
        .unwrap()
}

fn code_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Row 1: another user sends requests to a running capture's port, plain
/// and CONNECT, with no credentials or guessed ones: 407, nothing reaches
/// the upstream, nothing is recorded; the run's own client is served and
/// the secret lands in no file.
#[test]
fn another_user_cannot_use_a_running_capture_or_record_into_it() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let own = up.https_url("/bytes/1000?own");
    let script = format!(
        "echo \"$BUILDPROXY_ADDR\" > addr; echo \"$https_proxy\" > url; \
         while [ ! -e go ]; do sleep 0.05; done; curl -sSf -o own '{own}'; \
         while [ ! -e done ]; do sleep 0.05; done"
    );
    let child = capture_command(s.dir.path(), &ca, &["--store", "store"], &script)
        .spawn()
        .unwrap();
    wait_for(&s.path("url"));
    let addr = std::fs::read_to_string(s.path("addr")).unwrap();
    let proxy = format!("http://{}", addr.trim());
    let guessed = format!("http://buildproxy:0123456789abcdef@{}", addr.trim());
    let stolen_http = up.http_url("/bytes/500?other-user");
    let stolen_https = up.https_url("/bytes/600?other-user");
    let hits = up.hits();
    for p in [&proxy, &guessed] {
        let out = curl_as_nobody(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            p,
            &stolen_http,
        ]);
        assert_eq!(code_of(&out), "407", "{p}: {out:?}");
        let out = curl_as_nobody(&["-k", "-o", "/dev/null", "-x", p, &stolen_https]);
        assert!(!out.status.success(), "{p}: CONNECT went through: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("407"),
            "{p}: {out:?}"
        );
    }
    // The refusal says how to get the environment.
    let out = curl_as_nobody(&["-x", &proxy, &stolen_http]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("--print-env"), "{body}");
    assert_eq!(up.hits(), hits, "a refused request reached the upstream");

    std::fs::write(s.path("go"), "").unwrap();
    wait_for(&s.path("own"));
    std::fs::write(s.path("done"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let content = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(content.contains(&own), "{content}");
    assert!(!content.contains("other-user"), "{content}");
    // The secret: in the exported URL, nowhere on disk or in the log.
    let url = std::fs::read_to_string(s.path("url")).unwrap();
    let secret = url
        .trim()
        .strip_prefix("http://buildproxy:")
        .and_then(|r| r.split_once('@'))
        .map(|(s, _)| s.to_string())
        .unwrap_or_else(|| panic!("no credentials in the exported URL {url:?}"));
    assert!(secret.len() >= 32, "{secret}");
    let index = std::fs::read_to_string(s.path("store/index.json")).unwrap();
    for (what, text) in [
        ("content", &content),
        ("index", &index),
        ("stderr", &err.to_string()),
    ] {
        assert!(!text.contains(&secret), "the secret is in the {what}");
    }
}

/// Row 1, replay: another user cannot read a private store through the
/// proxy; `--require-secret` refuses the owner's own processes without the
/// credentials too; the exported environment works.
#[test]
fn another_user_cannot_read_a_private_store_through_replay() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url("/bytes/2000?private");
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -sSf -o /dev/null '{url}'"),
    );
    assert_eq!(code, 0, "{err}");
    std::fs::set_permissions(s.path("store"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let store = s.path("store");
    for strict in [false, true] {
        let mut args = vec![
            "replay",
            "--proxy-loopback",
            "--store",
            store.to_str().unwrap(),
        ];
        if strict {
            args.push("--require-secret");
        }
        let replay = Running::start(&args);
        let bare = format!("http://{}", replay.var("BUILDPROXY_ADDR"));
        let out = curl_as_nobody(&["-k", "-x", &bare, &url]);
        assert!(!out.status.success(), "nobody read the store: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("407"),
            "{out:?}"
        );
        // Our own uid without credentials: served unless --require-secret.
        let out = curl(
            &[],
            &[
                "-k",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-x",
                &bare,
                &url,
            ],
        );
        let refused = String::from_utf8_lossy(&out.stderr).contains("407");
        assert_eq!(refused, strict, "strict={strict}: {out:?}");
        assert_eq!(
            fetch(&replay.env, &[&url]),
            direct(&ca, &url),
            "strict={strict}"
        );
        let (_, log) = replay.stop();
        let secret = replay_secret(&log);
        assert!(secret.is_none(), "the log holds the proxy URL: {log}");
    }
}

/// The log must never print the proxy URL with credentials.
fn replay_secret(log: &str) -> Option<&str> {
    log.find("buildproxy:").and_then(|i| {
        let rest = &log[i..];
        rest.contains("@127.0.0.1").then_some(rest)
    })
}

/// A non-loopback listener must be asked for, and warns.
#[test]
fn listening_beyond_loopback_needs_a_flag_and_warns() {
    let out = Command::new(BIN)
        .args(["proxy", "--listen", "0.0.0.0:0", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--allow-non-loopback"), "{err}");
    let out = Command::new(BIN)
        .args([
            "proxy",
            "--listen",
            "0.0.0.0:0",
            "--allow-non-loopback",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("warning: listening on 0.0.0.0"), "{err}");
}

/// A store captured with one small and one large body (the two ways a
/// file is served), and their blob paths.
struct Captured {
    s: Scratch,
    ca: TestCa,
    _up: Upstream,
    urls: [String; 2],
    blobs: [std::path::PathBuf; 2],
}

/// Where `--store store` in `s` keeps the body of `url`.
fn blob_of(s: &Scratch, ca: &TestCa, url: &str) -> std::path::PathBuf {
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(direct(ca, url))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    s.path("store/blobs/sha256").join(hex)
}

fn captured() -> Captured {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let urls = [
        up.https_url("/bytes/3000?small"),
        up.http_url("/bytes/3000000?large"),
    ];
    let script: String = urls
        .iter()
        .map(|u| format!("curl -sSf -o /dev/null '{u}'; "))
        .collect();
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    let blobs = urls.clone().map(|u| blob_of(&s, &ca, &u));
    Captured {
        s,
        ca,
        _up: up,
        urls,
        blobs,
    }
}

/// Row 3: a blob replaced by a symlink, `blobs/` replaced by a symlink, a
/// blob with other bytes: never served; the client's transfer fails, the
/// log names the file, and the exit summary lists it. The untouched store
/// replays.
#[test]
fn a_tampered_store_is_never_served() {
    let c = captured();
    let store = c.s.path("store");
    let replay_each = |what: &str| {
        let replay = Running::start(&[
            "replay",
            "--proxy-loopback",
            "--store",
            store.to_str().unwrap(),
        ]);
        let outs: Vec<Output> = c
            .urls
            .iter()
            .map(|u| curl(&replay.env, &["-f", "-o", "/dev/null", u]))
            .collect();
        let (_, log) = replay.stop();
        (outs, log, what.to_string())
    };
    let (outs, log, _) = replay_each("untouched");
    assert!(outs.iter().all(|o| o.status.success()), "{log}");

    // Other bytes, same size.
    for blob in &c.blobs {
        let mut bytes = std::fs::read(blob).unwrap();
        let i = bytes.len() - 1;
        bytes[i] ^= 1;
        std::fs::set_permissions(blob, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(blob, &bytes).unwrap();
    }
    let (outs, log, _) = replay_each("other bytes");
    for (o, blob) in outs.iter().zip(&c.blobs) {
        assert!(!o.status.success(), "served a changed blob: {o:?}");
        assert!(log.contains(&blob.display().to_string()), "{log}");
    }
    assert!(log.contains("do not match the recorded hash"), "{log}");

    // A blob that is a symlink to another file with the right bytes.
    let decoy = c.s.path("decoy");
    std::fs::write(&decoy, direct(&c.ca, &c.urls[0])).unwrap();
    std::fs::remove_file(&c.blobs[0]).unwrap();
    std::os::unix::fs::symlink(&decoy, &c.blobs[0]).unwrap();
    let (outs, log, _) = replay_each("symlinked blob");
    assert!(!outs[0].status.success(), "served through a symlink: {log}");
    // Refused at serve time (no symlink followed), or earlier by the
    // prepared index's lookup (the link resolves outside the store).
    assert!(
        log.contains("symlink") || log.contains("outside the allowed roots"),
        "{log}"
    );

    // blobs/ itself a symlink to a directory of correct blobs.
    std::fs::remove_file(&c.blobs[0]).unwrap();
    std::fs::write(&c.blobs[0], direct(&c.ca, &c.urls[0])).unwrap();
    std::fs::write(&c.blobs[1], direct(&c.ca, &c.urls[1])).unwrap();
    let (outs, log, _) = replay_each("restored");
    assert!(outs.iter().all(|o| o.status.success()), "{log}");
    std::fs::rename(store.join("blobs"), c.s.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(c.s.path("elsewhere"), store.join("blobs")).unwrap();
    let (outs, log, _) = replay_each("symlinked blobs/");
    assert!(outs.iter().all(|o| !o.status.success()), "{log}");
    // Refused at serve time (no symlink followed), or earlier by the
    // prepared index's lookup (the link resolves outside the store).
    assert!(
        log.contains("symlink") || log.contains("outside the allowed roots"),
        "{log}"
    );
}

/// The exit summary lists what failed verification.
#[test]
fn a_mismatch_is_listed_at_exit() {
    let c = captured();
    std::fs::write(&c.blobs[1], vec![0u8; 3_000_000]).unwrap();
    let store = c.s.path("store");
    let (code, err) = replay_offline(
        c.s.dir.path(),
        &["--store", store.to_str().unwrap()],
        &format!("curl -sS -o got '{}'; echo $? > rc", c.urls[1]),
    );
    assert_eq!(code, 0, "{err}");
    let rc = std::fs::read_to_string(c.s.path("rc")).unwrap();
    assert_ne!(rc.trim(), "0", "curl saw a clean end: {err}");
    let summary = err
        .split("failed verification")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    assert!(summary.contains(&c.blobs[1].display().to_string()), "{err}");
    // The client got at most the body less its last chunk, never all of it.
    let got = std::fs::read(c.s.path("got")).unwrap_or_default();
    assert!(got.len() < 3_000_000, "{}", got.len());
}

/// Row 4: a blob planted in a shared store before capture (other bytes,
/// or a symlink) is replaced by the bytes capture verified.
#[test]
fn a_blob_planted_before_capture_is_replaced_not_trusted() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let urls = [
        up.https_url("/bytes/4000?planted"),
        up.https_url("/bytes/5000?linked"),
    ];
    let blobs = urls.clone().map(|u| blob_of(&s, &ca, &u));
    std::fs::create_dir_all(blobs[0].parent().unwrap()).unwrap();
    std::fs::write(&blobs[0], b"planted bytes").unwrap();
    std::fs::write(s.path("target"), b"something else").unwrap();
    std::os::unix::fs::symlink(s.path("target"), &blobs[1]).unwrap();
    let script: String = urls
        .iter()
        .map(|u| format!("curl -sSf -o /dev/null '{u}'; "))
        .collect();
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    for (u, b) in urls.iter().zip(&blobs) {
        assert!(
            !b.symlink_metadata().unwrap().file_type().is_symlink(),
            "{}",
            b.display()
        );
        assert_eq!(std::fs::read(b).unwrap(), direct(&ca, u), "{}", b.display());
    }
    assert_eq!(std::fs::read(s.path("target")).unwrap(), b"something else");
}

/// Row 11: what capture writes honours the umask.
#[test]
fn capture_creates_files_honouring_the_umask() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url("/bytes/100?umask");
    let out = Command::new("sh")
        .current_dir(s.dir.path())
        .arg("-c")
        .arg(format!(
            "umask 077; exec '{BIN}' capture --proxy-loopback --upstream-ca '{}' --store store \
             -- curl -sSf -o /dev/null '{url}'",
            ca.pem_path.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob = std::fs::read_dir(s.path("store/blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in [
        s.path("proxy_content.nix"),
        s.path("store/index.json"),
        blob,
    ] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
}

/// A connection whose receive window is tiny: a client that does not read
/// stalls the sender after a few KiB, as a slow or hostile one does,
/// instead of having the kernel buffer megabytes for it.
fn connect_small_window(addr: &str) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let addr: std::net::SocketAddrV4 = addr.parse().unwrap();
    // SAFETY: plain socket calls on a descriptor we create and hand to
    // TcpStream, which then owns it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = addr.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(addr.ip().octets());
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), len),
            0
        );
        std::net::TcpStream::from_raw_fd(fd)
    }
}

/// Row 5: hundreds of clients ask for a large file and never read; a
/// download started after them still completes, promptly, and a client
/// that takes nothing is given up on after `--idle-timeout-secs`.
#[test]
fn clients_that_never_read_do_not_starve_the_others() {
    use std::io::{Read, Write};
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    // Larger than the chunks in flight; and one larger than what socket
    // buffers hold, so a client that never reads really stalls the sender.
    let (url, huge) = (
        up.http_url("/bytes/3000000?large"),
        up.http_url("/bytes/67108864?huge"),
    );
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -sSf -o /dev/null '{url}'; curl -sSf -o /dev/null '{huge}'"),
    );
    assert_eq!(code, 0, "{err}");
    let replay = Running::start(&[
        "replay",
        "--proxy-loopback",
        "--idle-timeout-secs",
        "3",
        "--store",
        s.path("store").to_str().unwrap(),
    ]);
    let addr = replay.var("BUILDPROXY_ADDR").to_string();
    let url = &url;
    let host = url.split('/').nth(2).unwrap();
    let mut stalled = Vec::new();
    for _ in 0..600 {
        let mut s = connect_small_window(&addr);
        write!(s, "GET {url} HTTP/1.1\r\nhost: {host}\r\n\r\n").unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let out = curl(
        &replay.env,
        &["-f", "--max-time", "30", "-o", "/dev/null", url],
    );
    assert!(out.status.success(), "starved: {out:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let rss = std::fs::read_to_string(format!("/proc/{}/status", replay.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap()
        .to_string();
    eprintln!("peak with 600 stalled clients: {rss}");
    drop(stalled);
    // A stalled client is closed once it took nothing for the idle time.
    let mut first = connect_small_window(&addr);
    let host = huge.split('/').nth(2).unwrap();
    write!(first, "GET {huge} HTTP/1.1\r\nhost: {host}\r\n\r\n").unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match first.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "still open after {total} bytes"
                );
                break;
            }
        }
    }
    assert!(total < 67_108_864, "a stalled client got the whole body");
}

/// An upstream on raw sockets that answers every request with both a
/// `content-length: 5` and a chunked 10-byte body.
fn two_lengths_upstream() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut b), Ok(1)) {
                head.push(b[0]);
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\
                  connection: close\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
            );
        }
    });
    addr
}

/// Row 7: two lengths from upstream: a 502, nothing relayed truncated,
/// nothing recorded, the summary says why.
#[test]
fn a_response_with_two_lengths_is_refused_and_never_recorded() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let url = format!("http://{}/two-lengths", two_lengths_upstream());
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &[],
        &format!("curl -sS -o got -w '%{{http_code}}' '{url}' > status"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(s.path("status")).unwrap(),
        "502",
        "{err}"
    );
    assert!(
        err.contains("both Content-Length and Transfer-Encoding"),
        "{err}"
    );
    let content = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(!content.contains("two-lengths"), "{content}");
}

/// Row 8: a second capture of the same output stops at start, naming the
/// first's PID, before its build runs; the first's entries are all kept.
#[test]
fn a_second_capture_of_one_output_stops_at_start_naming_the_first() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let first_url = up.https_url("/bytes/100?first");
    let first = capture_command(
        s.dir.path(),
        &ca,
        &["--merge"],
        &format!(
            "curl -sSf -o /dev/null '{first_url}'; touch started; \
             while [ ! -e done ]; do sleep 0.05; done"
        ),
    )
    .spawn()
    .unwrap();
    wait_for(&s.path("started"));
    let (code, err) = capture(s.dir.path(), &ca, &["--merge"], "touch second-ran");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("PID {}", first.id())), "{err}");
    assert!(!s.path("second-ran").exists(), "the second build ran");
    std::fs::write(s.path("done"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let content = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(content.contains(&first_url), "{content}");
    assert!(!s.path("proxy_content.nix.lock").exists());
    assert!(!s.path("proxy_content.nix.journal").exists());
}

/// Row 10: 10,000 misses: the log and the summary keep the first ones and
/// count the rest.
#[test]
fn ten_thousand_misses_are_counted_not_kept() {
    use std::io::{BufRead, BufReader, Read, Write};
    let s = Scratch::new();
    std::fs::write(s.path("content.json"), "[]").unwrap();
    let replay = Running::start(&[
        "replay",
        "--content",
        s.path("content.json").to_str().unwrap(),
    ]);
    let c = std::net::TcpStream::connect(replay.var("BUILDPROXY_ADDR")).unwrap();
    let n = 10_000;
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            write!(
                w,
                "GET http://miss.invalid/{i} HTTP/1.1\r\nhost: miss.invalid\r\n\r\n"
            )
            .unwrap();
        }
    });
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r = BufReader::new(c);
    let mut seen = 0;
    let mut line = String::new();
    while seen < n {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.starts_with("HTTP/1.1 404") {
            seen += 1;
        }
        if line.to_ascii_lowercase().starts_with("content-length:") {
            let len: usize = line[15..].trim().parse().unwrap();
            let mut blank = String::new();
            r.read_line(&mut blank).unwrap();
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
        }
    }
    writer.join().unwrap();
    let (_, err) = replay.stop();
    assert!(err.len() < 400_000, "{} bytes of log", err.len());
    assert!(
        err.contains("… and 9000 more"),
        "{}",
        &err[err.len().saturating_sub(500)..]
    );
}

/// Reads until the peer closes; the time it took, or `None` if it was
/// still open after `limit`.
fn closed_within(mut s: impl std::io::Read, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while t.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(t.elapsed()),
        }
    }
    None
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Row 6: h2c on the listener sending nothing after its preface, half a
/// preface, and h2 inside a CONNECT tunnel sending nothing: each closed
/// after `--client-header-timeout-secs`, as an idle HTTP/1.1 client is.
#[test]
fn idle_h2_connections_and_half_prefaces_are_closed() {
    use std::io::Write;
    let proxy = Running::start(&["proxy", "--client-header-timeout-secs", "2"]);
    let addr = proxy.var("BUILDPROXY_ADDR").to_string();
    let connect = || {
        let s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    };
    let limit = Duration::from_secs(15);
    let mut h2c = connect();
    h2c.write_all(H2_PREFACE).unwrap();
    h2c.write_all(H2_SETTINGS).unwrap();
    assert!(closed_within(h2c, limit).is_some(), "idle h2c stayed open");
    let mut half = connect();
    half.write_all(&H2_PREFACE[..16]).unwrap();
    assert!(
        closed_within(half, limit).is_some(),
        "half a preface stayed open"
    );

    // h2 inside a tunnel, trusting the proxy's CA.
    let mut tcp = connect();
    tcp.write_all(b"CONNECT example.invalid:443 HTTP/1.1\r\nhost: example.invalid:443\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut tcp, &mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(proxy.var("SSL_CERT_FILE")).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        "example.invalid".try_into().unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(H2_PREFACE).unwrap();
    tls.write_all(H2_SETTINGS).unwrap();
    tls.flush().unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));
    assert!(
        closed_within(tls, limit).is_some(),
        "idle h2 in a tunnel stayed open"
    );
}
