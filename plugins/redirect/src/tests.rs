use super::*;
use buildproxy_plugin_capture::{Capture, Decision as CaptureDecision};
use buildproxy_plugin_sdk::testing::MemoryHost;
use buildproxy_plugin_sdk::{Blob, Entry, Source};

const A: &str = "http://example.org/download/tool.tar.gz";
const B: &str = "https://mirror.example.org/tool.tar.gz";
const C: &str = "https://cdn.example.net/obj/tool.tar.gz?sig=abc&exp=1";

fn req(method: &str, url: &str, chain: &[&str]) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers: vec![],
        chain: chain.iter().map(|s| s.to_string()).collect(),
    }
}

fn head(status: u16, location: Option<&str>) -> ResponseHead {
    let mut headers = vec![
        ("content-type".into(), b"application/gzip".to_vec()),
        ("content-length".into(), b"3".to_vec()),
        ("set-cookie".into(), b"secret".to_vec()),
    ];
    if let Some(l) = location {
        headers.push(("location".into(), l.as_bytes().to_vec()));
    }
    ResponseHead { status, headers }
}

fn blob() -> Option<Blob> {
    Some(Blob {
        id: "sha256-a".into(),
        size: 3,
    })
}

fn exchange(url: &str, chain: &[&str], head: ResponseHead, body: Option<Blob>) -> Exchange {
    Exchange {
        request: req("GET", url, chain),
        sent_url: url.into(),
        head: Some(head),
        body,
        error: None,
        source: Source::Upstream,
        request_body: None,
    }
}

/// What the plugin told the host's summary, as "URL: reason" lines.
fn told(host: &MemoryHost) -> Vec<String> {
    host.told
        .borrow()
        .iter()
        .map(|(_, url, reason)| format!("{}: {reason}", url.as_deref().unwrap_or("-")))
        .collect()
}

fn plugin(mode: Mode, config: &str) -> (Redirect, MemoryHost) {
    let host = MemoryHost::default();
    let mut p = Redirect::default();
    p.configure(&host, mode, config).unwrap();
    (p, host)
}

/// The chain A -302-> B (relative location) -301-> C (200), as the host
/// hands it to the plugin.
fn capture_chain(p: &mut Redirect, host: &MemoryHost) {
    p.on_complete(host, 1, exchange(A, &[], head(302, Some(B)), None));
    p.on_complete(host, 2, exchange(B, &[A], head(301, Some(C)), None));
    p.on_complete(host, 3, exchange(C, &[A, B], head(200, None), blob()));
}

#[test]
fn each_hop_is_status_only_and_the_final_entry_is_fetched_from_the_first_url() {
    let (mut p, host) = plugin(Mode::Capture, "");
    capture_chain(&mut p, &host);
    let a = host.get("GET", A).unwrap();
    assert_eq!(
        (a.status, a.body.clone(), a.fetch_url.clone()),
        (302, None, None)
    );
    assert!(a.headers.contains(&("location".into(), B.into())));
    assert!(
        !a.headers
            .iter()
            .any(|(n, _)| n == "content-length" || n == "set-cookie")
    );
    assert_eq!(host.get("GET", B).unwrap().status, 301);
    let c = host.get("GET", C).unwrap();
    assert_eq!((c.status, c.body.clone()), (200, blob()));
    assert_eq!(c.fetch_url.as_deref(), Some(A));
    assert_eq!(host.entries.borrow().len(), 3);
}

#[test]
fn entries_look_like_the_capture_plugins_but_for_the_fetch_url() {
    let config = Config::default();
    for (status, body) in [(200, blob()), (404, None), (410, None), (204, blob())] {
        let chained = exchange(C, &[A], head(status, None), body.clone());
        let plain = exchange(C, &[], head(status, None), body);
        let Decision::Record(ours) = record::decide(&config, &chained) else {
            panic!("{status} not recorded")
        };
        let CaptureDecision::Record(theirs) = Capture::decide(&plain) else {
            panic!("{status} not recorded by capture")
        };
        let want_fetch = ours.body.as_ref().map(|_| A.to_string());
        assert_eq!(ours.fetch_url, want_fetch, "{status}");
        assert_eq!(
            Entry {
                fetch_url: None,
                ..ours
            },
            theirs,
            "{status}"
        );
    }
}

#[test]
fn exchanges_outside_any_chain_are_the_capture_plugins() {
    let config = Config::default();
    for ex in [
        exchange(A, &[], head(200, None), blob()),
        exchange(A, &[], head(404, None), None),
        // 300 and 304 are not followed with a new request.
        exchange(A, &[], head(300, Some(B)), None),
        exchange(A, &[], head(302, None), None),
    ] {
        assert_eq!(record::decide(&config, &ex), Decision::NotMine);
    }
    let mut local = exchange(A, &[], head(302, Some(B)), None);
    local.source = Source::Plugin;
    assert_eq!(record::decide(&config, &local), Decision::NotMine);
}

#[test]
fn a_relative_location_is_kept_as_sent() {
    let (mut p, host) = plugin(Mode::Capture, "");
    p.on_complete(
        &host,
        1,
        exchange(A, &[], head(303, Some("../mirror/x")), None),
    );
    let a = host.get("GET", A).unwrap();
    assert!(
        a.headers
            .contains(&("location".into(), "../mirror/x".into()))
    );
}

#[test]
fn unstable_urls_are_passed_over_for_the_fetch_url() {
    let (mut p, host) = plugin(Mode::Capture, r#"{"unstable": ["/download/"]}"#);
    capture_chain(&mut p, &host);
    assert_eq!(host.get("GET", C).unwrap().fetch_url.as_deref(), Some(B));
    let (mut p, host) = plugin(Mode::Capture, r#"{"unstable": ["example\\.(org|net)"]}"#);
    capture_chain(&mut p, &host);
    assert_eq!(host.get("GET", C).unwrap().fetch_url, None);
}

#[test]
fn a_forgotten_redirect_records_the_final_response_at_the_url_that_made_it() {
    // Forgetting redirects to the CDN: A's hop stays, B answers with C's body.
    let (mut p, host) = plugin(Mode::Capture, r#"{"forget": ["cdn\\.example\\.net"]}"#);
    capture_chain(&mut p, &host);
    assert_eq!(host.get("GET", A).unwrap().status, 302);
    let b = host.get("GET", B).unwrap();
    assert_eq!((b.status, b.body.clone()), (200, blob()));
    assert_eq!(b.fetch_url.as_deref(), Some(A));
    assert!(host.get("GET", C).is_none());

    // Forgetting everything: only A, with the body, fetched from itself.
    let (mut p, host) = plugin(Mode::Capture, r#"{"forget": [".*"]}"#);
    capture_chain(&mut p, &host);
    let a = host.get("GET", A).unwrap();
    assert_eq!(
        (a.status, a.body.clone(), a.fetch_url.clone()),
        (200, blob(), None)
    );
    assert!(!a.headers.iter().any(|(n, _)| n == "location"));
    assert_eq!(host.entries.borrow().len(), 1);
}

#[test]
fn a_failed_chain_end_is_reported_not_recorded() {
    let (mut p, host) = plugin(Mode::Capture, "");
    p.on_complete(&host, 1, exchange(A, &[], head(302, Some(B)), None));
    p.on_complete(&host, 2, exchange(B, &[A], head(503, None), None));
    let mut broken = exchange(C, &[A], head(200, None), None);
    broken.error = Some("upstream reset".into());
    p.on_complete(&host, 3, broken);
    assert!(host.get("GET", B).is_none());
    assert!(host.get("GET", C).is_none());
    let lines = told(&host);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(B) && l.contains("503")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(C) && l.contains("upstream reset")),
        "{lines:?}"
    );
}

#[test]
fn rejected_urls_get_a_local_404_in_capture_and_replay_only() {
    let config = r#"{"reject": ["\\.(md5|sha1)$"]}"#;
    for mode in [Mode::Capture, Mode::Replay] {
        let (mut p, host) = plugin(mode, config);
        let RequestAction::Respond(r) =
            p.on_request(&host, 1, req("GET", "https://e.org/a.jar.sha1", &[]))
        else {
            panic!("not rejected in {mode:?}")
        };
        assert_eq!(r.head.status, 404);
        assert!(host.misses.borrow().is_empty());
        assert_eq!(
            p.on_request(&host, 2, req("GET", "https://e.org/a.jar", &[])),
            RequestAction::Pass
        );
    }
    let (mut p, host) = plugin(Mode::Proxy, config);
    assert_eq!(
        p.on_request(&host, 1, req("GET", "https://e.org/a.sha1", &[])),
        RequestAction::Pass
    );
}

#[test]
fn a_loop_or_an_overlong_chain_is_stopped_with_508_and_reported() {
    let (mut p, host) = plugin(Mode::Capture, r#"{"max-hops": 3}"#);
    let RequestAction::Respond(r) = p.on_request(&host, 1, req("GET", A, &[A, B])) else {
        panic!("loop not stopped")
    };
    assert_eq!(r.head.status, 508);
    assert_eq!(
        p.on_request(&host, 2, req("GET", C, &[A, B])),
        RequestAction::Pass
    );
    let RequestAction::Respond(r) =
        p.on_request(&host, 3, req("GET", "http://e.org/4", &[A, B, C]))
    else {
        panic!("long chain not stopped")
    };
    assert_eq!(r.head.status, 508);
    let lines = told(&host);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("redirect loop: {A} -> {B} -> {A}"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("reached 3 redirects")),
        "{lines:?}"
    );
}

/// Content as capture wrote it for A -> B -> C, or as a nix-buildproxy
/// file says a redirect (status_code = 302, headers.location, file = null).
fn recorded() -> MemoryHost {
    let hop = |url: &str, status: u16, to: &str| Entry {
        method: "GET".into(),
        url: url.into(),
        fetch_url: None,
        status,
        headers: vec![("location".into(), to.into())],
        request_headers: vec![],
        body: None,
    };
    MemoryHost::with_entries([
        hop(A, 302, B),
        // Relative, as a server may send it.
        hop(B, 307, "//cdn.example.net/obj/tool.tar.gz?sig=abc&exp=1"),
        Entry {
            method: "GET".into(),
            url: C.into(),
            fetch_url: Some(A.into()),
            status: 200,
            headers: vec![],
            request_headers: vec![],
            body: blob(),
        },
        hop("http://e.org/loop1", 302, "/loop2"),
        hop("http://e.org/loop2", 302, "/loop1"),
        hop("http://e.org/gone", 302, "/nowhere"),
    ])
}

#[test]
fn faithful_replay_leaves_every_redirect_to_the_replay_plugin() {
    let (mut p, _) = plugin(Mode::Replay, "");
    let host = recorded();
    assert_eq!(
        p.on_request(&host, 1, req("GET", A, &[])),
        RequestAction::Pass
    );
    assert_eq!(
        p.on_request(&host, 2, req("GET", B, &[A])),
        RequestAction::Pass
    );
}

#[test]
fn flatten_answers_the_first_url_as_the_final_one() {
    for config in [
        "flatten",
        r#"{"replay": "flatten"}"#,
        r#"{"flatten": ["^http://example\\.org/"]}"#,
    ] {
        let (mut p, _) = plugin(Mode::Replay, config);
        let host = recorded();
        for method in ["GET", "HEAD"] {
            let RequestAction::Rewrite(r) = p.on_request(&host, 1, req(method, A, &[])) else {
                panic!("{config}: {method} not flattened")
            };
            assert_eq!((r.method.as_str(), r.url.as_str()), (method, C));
            assert_eq!(r.chain, [A, B]);
        }
        // Not a redirect: nothing to do.
        assert_eq!(
            p.on_request(&host, 2, req("GET", C, &[])),
            RequestAction::Pass
        );
    }
    // Per pattern: other chains stay faithful.
    let (mut p, _) = plugin(Mode::Replay, r#"{"flatten": ["^https://nothing/"]}"#);
    assert_eq!(
        p.on_request(&recorded(), 1, req("GET", A, &[])),
        RequestAction::Pass
    );
}

#[test]
fn a_chain_that_cannot_be_flattened_is_served_as_recorded_and_reported() {
    let (mut p, _) = plugin(Mode::Replay, "flatten");
    let host = recorded();
    for url in ["http://e.org/loop1", "http://e.org/gone"] {
        assert_eq!(
            p.on_request(&host, 1, req("GET", url, &[])),
            RequestAction::Pass
        );
    }
    let lines = told(&host);
    assert!(lines.iter().any(|l| l.contains("loop")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("http://e.org/nowhere, which is not in the content")),
        "{lines:?}"
    );
}

#[test]
fn configs_are_checked_with_messages_that_say_what_is_accepted() {
    for (bad, says) in [
        ("sideways", "unknown option"),
        (r#"{"replay": "sideways"}"#, "\"replay\""),
        (
            r#"{"reject": ["(unclosed"]}"#,
            "\"reject\": pattern \"(unclosed\"",
        ),
        (r#"{"rejects": []}"#, "unknown field"),
        (r#"{"max-hops": 0}"#, "max-hops"),
    ] {
        let err = Redirect::default()
            .configure(&MemoryHost::default(), Mode::Capture, bad)
            .unwrap_err();
        assert!(err.contains(says), "{bad}: {err}");
    }
    assert!(Config::parse(" faithful ").is_ok());
}

#[test]
fn without_reject_or_flatten_only_requests_in_a_chain_are_asked_for() {
    let (p, _) = plugin(Mode::Replay, "");
    let filter = p.requests().expect("the default config narrows on-request");
    // What `on-request` can still stop (a loop) reaches it; the rest, which
    // it would pass, does not.
    assert!(filter.matches(&req("GET", A, &[A, B])));
    assert!(!filter.matches(&req("GET", A, &[])));
    for config in [
        r#"{"reject": ["\\.sha1$"]}"#,
        "flatten",
        r#"{"flatten": ["^https://e\\.org/"]}"#,
    ] {
        let (p, _) = plugin(Mode::Replay, config);
        assert!(p.requests().is_none(), "{config}");
    }
}
