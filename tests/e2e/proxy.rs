//! The proxy host: forwarding, TLS interception, HTTP versions, errors, and
//! plugin faults contained to one exchange.

use crate::support::*;

fn proxy_with(scratch: &Scratch, ca: &TestCa, extra: &[&str]) -> Running {
    let _ = scratch;
    let mut args = vec![
        "proxy",
        "--proxy-loopback",
        "--upstream-ca",
        ca.pem_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Running::start(&args)
}

#[test]
fn curl_gets_identical_bytes_over_http_and_intercepted_https_with_http1_and_h2() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    let proxy = proxy_with(&scratch, &ca, &[]);
    for url in [
        up.http_url("/bytes/300000"),
        up.https_url("/bytes/300000?v=1"),
    ] {
        let want = direct(&ca, &url);
        assert_eq!(want.len(), 300_000);
        for version in ["--http1.1", "--http2"] {
            let got = fetch(&proxy.env, &[version, "-f", &url]);
            assert!(got == want, "{url} {version}: bytes differ");
        }
    }
}

#[test]
fn the_client_side_speaks_h2_when_offered() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    let proxy = proxy_with(&scratch, &ca, &[]);
    let out = curl(
        &proxy.env,
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            &up.https_url("/bytes/10"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2");
    let out = curl(
        &proxy.env,
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            &up.https_url("/bytes/10"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1");
}

#[test]
fn an_unreachable_upstream_is_a_502_naming_the_url_and_the_cause() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let proxy = proxy_with(&scratch, &ca, &[]);
    // A port nobody listens on: bind one, drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("https://127.0.0.1:{port}/y"),
    ] {
        let (status, body) = status_and_body(&proxy.env, &[&url]);
        if url.starts_with("http:") {
            assert_eq!(status, 502, "{body}");
            assert!(body.contains(&url), "{body}");
            assert!(body.to_lowercase().contains("refused"), "{body}");
        } else {
            // The tunnel is established before the upstream is contacted:
            // the error arrives as a 502 inside it.
            assert_eq!(status, 502, "{body}");
            assert!(body.contains(&url), "{body}");
        }
    }
}

#[test]
fn an_upstream_with_an_unknown_ca_is_a_502_that_says_tls() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    // No --upstream-ca: the upstream's certificate is not trusted.
    let proxy = Running::start(&["proxy", "--proxy-loopback"]);
    let (status, body) = status_and_body(&proxy.env, &[&up.https_url("/bytes/5")]);
    assert_eq!(status, 502, "{body}");
    assert!(body.to_lowercase().contains("certificate"), "{body}");
}

/// One misbehaving plugin per fault; each fails only its exchange.
#[test]
fn a_trapping_looping_or_hoarding_plugin_fails_one_exchange_and_the_next_succeeds() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    let plugin = fixture_plugin("misbehave");
    // The deadline is short where it is the point, and generous where it
    // must not fire first (a loaded machine allocates slowly).
    // `dropped`: a fault leaves the instance in any state, so it is dropped;
    // an invalid answer is the host's to refuse, the instance is sound.
    for (how, expect, deadline_ms, dropped) in [
        ("trap", "unreachable", "5000", 2),
        ("loop", "deadline", "200", 2),
        ("grow", "memory", "10000", 2),
        ("bad-status", "1000", "5000", 0),
        ("bad-header", "bad name", "5000", 0),
    ] {
        let arg = format!("{}={how}", plugin.display());
        let proxy = proxy_with(
            &scratch,
            &ca,
            &[
                "--plugin",
                &arg,
                "--plugin-deadline-ms",
                deadline_ms,
                "--plugin-memory-mib",
                "32",
            ],
        );
        // Twice: the second /boom meets a fresh instance, which handles the
        // same request the same way (a trapped instance cannot be entered
        // again, and would fail differently).
        for attempt in 0..2 {
            let (status, body) = status_and_body(&proxy.env, &[&up.https_url("/boom")]);
            assert_eq!(status, 502, "{how} #{attempt}: {body}");
            assert!(
                body.contains("misbehave"),
                "{how} #{attempt}: the 502 names the plugin: {body}"
            );
            assert!(
                body.contains(expect),
                "{how} #{attempt}: the 502 says why ({expect}): {body}"
            );
        }
        let want = direct(&ca, &up.https_url("/bytes/1000"));
        for _ in 0..2 {
            assert_eq!(
                fetch(&proxy.env, &["-f", &up.https_url("/bytes/1000")]),
                want,
                "{how}: next request"
            );
        }
        let (_, log) = proxy.stop();
        assert_eq!(
            log.matches("plugin misbehave: dropped the instance that faulted in on-request")
                .count(),
            dropped,
            "{how}: each faulted instance is dropped and said so: {log}"
        );
    }
}

/// Hook calls yield to the runtime at every epoch tick: plugins looping to
/// their deadline on more exchanges than the runtime has worker threads
/// must not hold back an unrelated request.
#[test]
fn a_plugin_looping_to_its_deadline_delays_only_its_own_exchanges() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    let arg = fixture_arg("loop");
    let deadline_ms = 6000;
    let proxy = proxy_with(
        &scratch,
        &ca,
        &[
            "--plugin",
            &arg,
            "--plugin-deadline-ms",
            &deadline_ms.to_string(),
        ],
    );
    let url = up.https_url("/bytes/1000");
    let want = direct(&ca, &url);
    // Warm: the connection pool, the TLS leaf, an instance.
    assert_eq!(fetch(&proxy.env, &["-f", &url]), want);
    let calm = std::time::Instant::now();
    assert_eq!(fetch(&proxy.env, &["-f", &url]), want);
    let calm = calm.elapsed();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = std::time::Instant::now();
    let loops: Vec<_> = (0..workers * 2)
        .map(|i| {
            let env = proxy.env.clone();
            let boom = up.https_url(&format!("/boom/{i}"));
            std::thread::spawn(move || status_and_body(&env, &[&boom]))
        })
        .collect();
    // Let every loop start (the fixture loops in `on-request`).
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Up to three tries, until one is quick: one request can be slow
    // because another test builds a crate on the same cores; a runtime held
    // by the loops makes every try wait for them.
    let mut took = std::time::Duration::MAX;
    for _ in 0..3 {
        let asked = std::time::Instant::now();
        assert_eq!(fetch(&proxy.env, &["-f", &url]), want);
        took = took.min(asked.elapsed());
        if took < std::time::Duration::from_millis(1000) {
            break;
        }
    }
    eprintln!("an unrelated request took {took:?} while plugin calls looped ({calm:?} before)");
    let loops_running = started.elapsed() < std::time::Duration::from_millis(deadline_ms);
    for l in loops {
        let (status, body) = l.join().unwrap();
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("deadline"), "{body}");
    }
    assert!(
        took < std::time::Duration::from_millis(1000),
        "an unrelated request took {took:?} while {} plugin calls looped",
        workers * 2
    );
    assert!(
        loops_running,
        "the loops ended before the request was served: the machine is too slow for this test"
    );
}

/// Git's smart HTTP says what it wants in a POST body: a plugin can read
/// it and answer from it, or read it and let it go upstream whole; state it
/// keeps for the exchange reaches its later hooks.
#[test]
fn a_plugin_reads_a_request_body_and_answers_from_it_or_sends_it_upstream() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    let answer = fixture_arg("answer-body");
    let proxy = proxy_with(&scratch, &ca, &["--plugin", &answer]);
    let hits = up.hits();
    let url = up.https_url("/repo.git/chain/git-upload-pack");
    let got = fetch(
        &proxy.env,
        &["-sS", "--data-binary", "0032want 0123abcd", &url],
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "POST 17 bytes: 0032want 0123abcd"
    );
    assert_eq!(up.hits(), hits, "answered without the upstream");

    let peek = fixture_arg("peek-body");
    let proxy = proxy_with(&scratch, &ca, &["--plugin", &peek]);
    let sent = payload(300_000, 7);
    let file = scratch.path("post");
    std::fs::write(&file, &sent).unwrap();
    let (head, body) = (scratch.path("head"), scratch.path("body"));
    let out = curl(
        &proxy.env,
        &[
            "-sS",
            "--data-binary",
            &format!("@{}", file.display()),
            "-D",
            head.to_str().unwrap(),
            "-o",
            body.to_str().unwrap(),
            &up.https_url("/echo/chain"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(&body).unwrap(),
        sent,
        "the upstream got the body whole"
    );
    let head = std::fs::read_to_string(&head).unwrap().to_lowercase();
    assert!(head.contains("x-echo-method: post"), "{head}");
    assert!(
        head.contains("x-peeked: 300000"),
        "state kept from on-request-body: {head}"
    );
}

/// A request body larger than the limit a plugin asked for is refused
/// with what to raise, before it is read. (Over h2, curl 7.88 reports the
/// stream reset that ends its unsent body as an error instead of showing
/// the 413; HTTP/1.1 shows the answer.)
#[test]
fn a_request_body_past_the_limit_is_a_413_naming_the_flag() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    let answer = fixture_arg("answer-body");
    let proxy = proxy_with(
        &scratch,
        &ca,
        &["--plugin", &answer, "--plugin-body-limit-mib", "1"],
    );
    let file = scratch.path("big");
    std::fs::write(&file, payload(2 << 20, 3)).unwrap();
    let data = format!("@{}", file.display());
    let out = curl(
        &proxy.env,
        &[
            "--http1.1",
            "--data-binary",
            &data,
            "-w",
            "\n%{http_code}",
            &up.https_url("/chain"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("\n413") && text.contains("--plugin-body-limit-mib"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_plugin_that_rejects_its_config_stops_the_proxy_at_start_with_the_reason() {
    let plugin = format!("{}=config-error", fixture_plugin("misbehave").display());
    let out = std::process::Command::new(BIN)
        .args(["proxy", "--plugin", &plugin, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("misbehave") && err.contains("refuses its config on purpose"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_what_to_do() {
    let scratch = Scratch::new();
    let path = scratch.path("junk.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["proxy", "--plugin", path.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk") && err.contains("component"), "{err}");
}

#[test]
fn the_bound_address_is_reported_and_never_fixed() {
    let a = Running::start(&["proxy"]);
    let b = Running::start(&["proxy"]);
    assert_ne!(a.var("BUILDPROXY_ADDR"), b.var("BUILDPROXY_ADDR"));
    assert!(a.var("BUILDPROXY_ADDR").starts_with("127.0.0.1:"));
    assert!(!a.var("https_proxy").ends_with(":8080"));
}

fn fixture_arg(config: &str) -> String {
    format!("{}={config}", fixture_plugin("misbehave").display())
}

#[test]
fn the_first_plugin_to_answer_locally_wins_and_the_upstream_is_not_contacted() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    let (a, b) = (fixture_arg("respond:from A"), fixture_arg("respond:from B"));
    let proxy = proxy_with(&scratch, &ca, &["--plugin", &a, "--plugin", &b]);
    let hits = up.hits();
    assert_eq!(fetch(&proxy.env, &[&up.https_url("/chain")]), b"from A");
    assert_eq!(up.hits(), hits);
    // Requests the plugins have no opinion on still go upstream.
    assert_eq!(fetch(&proxy.env, &[&up.https_url("/bytes/10")]).len(), 10);
}

#[test]
fn a_rewrite_is_seen_by_later_plugins_and_by_the_upstream() {
    let scratch = Scratch::new();
    let ca = TestCa::new(scratch.dir.path());
    let up = Upstream::start(&ca);
    // The first plugin rewrites /chain to /bytes/64/chain: the upstream
    // answers the rewritten URL.
    let rewrite = fixture_arg("rewrite:/bytes/64/chain");
    let proxy = proxy_with(&scratch, &ca, &["--plugin", &rewrite]);
    let got = fetch(&proxy.env, &[&up.https_url("/chain")]);
    assert_eq!(up.hits(), 1, "the upstream was asked once");
    assert_eq!(got, direct(&ca, &up.https_url("/bytes/64/chain")));
    // A second plugin answers with the request it was given: the rewritten
    // URL and the header the first added, not the client's /x/chain.
    let echo = fixture_arg("echo");
    let proxy = proxy_with(&scratch, &ca, &["--plugin", &rewrite, "--plugin", &echo]);
    let seen = String::from_utf8(fetch(&proxy.env, &[&up.https_url("/x/chain")])).unwrap();
    assert_eq!(
        seen,
        format!(
            "{} rewritten-by=rewrite:/bytes/64/chain",
            up.https_url("/bytes/64/chain")
        )
    );
}

#[test]
fn a_warm_start_loads_compiled_plugins_from_the_cache() {
    let scratch = Scratch::new();
    let cache = scratch.path("cache");
    let start = |_: ()| {
        let out = std::process::Command::new(BIN)
            .env("BUILDPROXY_PLUGIN_CACHE", &cache)
            .env("BUILDPROXY_LOG", "buildproxy::plugin=debug")
            .args(["proxy", "--", "true"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cold = start(());
    assert!(cold.contains("compiled plugin capture"), "{cold}");
    let warm = start(());
    assert!(
        warm.contains("loaded plugin capture from the cache"),
        "{warm}"
    );
    assert!(!warm.contains("compiled plugin"), "{warm}");
}
