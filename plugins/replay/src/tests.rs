use super::*;
use buildproxy_plugin_sdk::Blob;
use buildproxy_plugin_sdk::testing::MemoryHost;

const URL: &str = "https://example.org/f.tar.gz?x=1";

fn host() -> MemoryHost {
    MemoryHost::with_entries([Entry {
        method: "GET".into(),
        url: URL.into(),
        fetch_url: None,
        status: 200,
        headers: vec![
            ("etag".into(), "\"abc\"".into()),
            (
                "last-modified".into(),
                "Tue, 01 Jan 2030 00:00:00 GMT".into(),
            ),
        ],
        request_headers: vec![],
        body: Some(Blob {
            id: "sha256-x".into(),
            size: 7,
        }),
    }])
}

fn req(method: &str, url: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        chain: vec![],
    }
}

#[test]
fn a_hit_answers_with_the_recorded_status_headers_and_blob() {
    let r = Replay::answer(&host(), &req("GET", URL, &[]));
    assert_eq!(r.head.status, 200);
    assert_eq!(
        r.body,
        Body::Blob(Blob {
            id: "sha256-x".into(),
            size: 7
        })
    );
}

#[test]
fn head_is_answered_from_the_get_entry() {
    let r = Replay::answer(&host(), &req("HEAD", URL, &[]));
    assert_eq!(r.head.status, 200);
    assert!(matches!(r.body, Body::Blob(_)));
}

#[test]
fn a_miss_is_a_404_that_says_what_to_do_and_is_reported() {
    let h = host();
    let r = Replay::answer(&h, &req("GET", "https://example.org/other", &[]));
    assert_eq!(r.head.status, 404);
    let Body::Bytes(text) = r.body else { panic!() };
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("https://example.org/other") && text.contains("buildproxy capture"));
    assert_eq!(
        h.misses.borrow().as_slice(),
        [("GET".to_string(), "https://example.org/other".to_string())]
    );
}

#[test]
fn the_query_is_part_of_the_match() {
    let r = Replay::answer(
        &host(),
        &req("GET", "https://example.org/f.tar.gz?x=2", &[]),
    );
    assert_eq!(r.head.status, 404);
}

#[test]
fn conditional_requests_get_304_only_when_validators_match() {
    let h = host();
    let status = |hs: &[(&str, &str)]| Replay::answer(&h, &req("GET", URL, hs)).head.status;
    assert_eq!(status(&[("if-none-match", "\"abc\"")]), 304);
    assert_eq!(status(&[("if-none-match", "W/\"abc\", \"zzz\"")]), 304);
    assert_eq!(status(&[("if-none-match", "\"zzz\"")]), 200);
    assert_eq!(
        status(&[("if-modified-since", "Tue, 01 Jan 2030 00:00:00 GMT")]),
        304
    );
    assert_eq!(
        status(&[("if-modified-since", "Mon, 01 Jan 2029 00:00:00 GMT")]),
        200
    );
    // If-None-Match takes precedence over If-Modified-Since.
    assert_eq!(
        status(&[
            ("if-none-match", "\"zzz\""),
            ("if-modified-since", "Tue, 01 Jan 2030 00:00:00 GMT")
        ]),
        200
    );
}

#[test]
fn passes_when_not_replaying() {
    let h = host();
    let mut p = Replay::default();
    p.configure(&h, Mode::Capture, "").unwrap();
    assert_eq!(
        p.on_request(&h, 1, req("GET", URL, &[])),
        RequestAction::Pass
    );
}

#[test]
fn each_representation_answers_only_the_request_that_selects_it() {
    const JSON: &str = "application/vnd.pypi.simple.v1+json";
    let index = "https://example.org/simple/a/";
    let rep = |selecting: Vec<(String, String)>, id: &str| Entry {
        method: "GET".into(),
        url: index.into(),
        fetch_url: None,
        status: 200,
        headers: vec![],
        request_headers: selecting,
        body: Some(Blob {
            id: id.into(),
            size: 1,
        }),
    };
    let json = rep(vec![("accept".into(), JSON.into())], "json");
    let h = MemoryHost::with_entries([json.clone(), rep(vec![], "html")]);
    let id = |h: &MemoryHost, hs: &[(&str, &str)]| match Replay::answer(h, &req("GET", index, hs))
        .body
    {
        Body::Blob(b) => b.id,
        other => panic!("{other:?}"),
    };
    assert_eq!(id(&h, &[("accept", JSON)]), "json");
    assert_eq!(id(&h, &[("accept", "*/*")]), "html");
    assert_eq!(id(&h, &[]), "html");

    // Only the JSON was captured: curl's `*/*` is a miss that says why.
    let h = MemoryHost::with_entries([json]);
    let r = Replay::answer(&h, &req("GET", index, &[("accept", "*/*")]));
    assert_eq!(r.head.status, 404);
    let Body::Bytes(text) = r.body else { panic!() };
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains(&format!("accept: {JSON}")), "{text}");
    assert!(text.contains("this request sent: accept: */*"), "{text}");
    assert_eq!(h.misses.borrow().len(), 1);
}

#[test]
fn a_post_miss_says_it_cannot_be_replayed_and_what_to_do() {
    let h = host();
    let r = Replay::answer(
        &h,
        &req(
            "POST",
            "https://example.org/-/npm/v1/security/audits/quick",
            &[],
        ),
    );
    assert_eq!(r.head.status, 404);
    let Body::Bytes(text) = r.body else { panic!() };
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("cannot be replayed"), "{text}");
    assert!(text.contains("--no-audit"), "{text}");
    assert!(!text.contains("Re-run the capture"), "{text}");
}

/// Only in replay does it let the host answer plainly recorded requests
/// (host/src/plugin/recorded.rs holds the host's answers to the plugin's).
#[test]
fn it_lets_the_host_answer_recorded_requests_in_replay_only() {
    let host = host();
    for (mode, answers) in [
        (Mode::Replay, true),
        (Mode::Capture, false),
        (Mode::Proxy, false),
    ] {
        let mut plugin = Replay::default();
        plugin.configure(&host, mode, "").unwrap();
        assert_eq!(plugin.answers_recorded(), answers, "{mode:?}");
    }
}
