use super::*;
use buildproxy_plugin_sdk::testing::MemoryHost;
use buildproxy_plugin_sdk::{Blob, ResponseHead};

fn exchange(method: &str, status: u16, body: Option<Blob>) -> Exchange {
    Exchange {
        request: Request {
            method: method.into(),
            url: "https://example.org/f.tar.gz".into(),
            headers: vec![],
            chain: vec![],
        },
        sent_url: "https://example.org/f.tar.gz".into(),
        head: Some(ResponseHead {
            status,
            headers: vec![
                ("content-type".into(), b"application/gzip".to_vec()),
                ("content-length".into(), b"3".to_vec()),
                ("set-cookie".into(), b"secret".to_vec()),
            ],
        }),
        body,
        error: None,
        source: Source::Upstream,
        request_body: None,
    }
}

fn blob(id: &str) -> Option<Blob> {
    Some(Blob {
        id: id.into(),
        size: 3,
    })
}

#[test]
fn records_a_complete_200_with_only_the_headers_that_matter() {
    let Decision::Record(e) = Capture::decide(&exchange("GET", 200, blob("sha256-a"))) else {
        panic!("not recorded")
    };
    assert_eq!(e.status, 200);
    assert_eq!(e.body, blob("sha256-a"));
    let names: Vec<_> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["content-type", "content-length"]);
}

#[test]
fn records_404_and_other_3xx_status_only_and_skips_5xx_and_429() {
    for status in [404, 410, 300, 301] {
        let Decision::Record(e) = Capture::decide(&exchange("GET", status, blob("x"))) else {
            panic!("{status} not recorded")
        };
        assert_eq!(e.body, None, "{status}");
        assert!(!e.headers.iter().any(|(n, _)| n == "content-length"));
    }
    for status in [500, 503, 429, 401] {
        assert!(matches!(
            Capture::decide(&exchange("GET", status, blob("x"))),
            Decision::Skip(_)
        ));
    }
}

#[test]
fn never_records_a_failed_transfer_or_a_local_answer() {
    let mut ex = exchange("GET", 200, None);
    ex.error = Some("upstream reset".into());
    assert!(matches!(Capture::decide(&ex), Decision::Skip(_)));
    let mut ex = exchange("GET", 200, blob("x"));
    ex.source = Source::Plugin;
    assert!(matches!(Capture::decide(&ex), Decision::Skip(_)));
    assert!(matches!(
        Capture::decide(&exchange("POST", 200, blob("x"))),
        Decision::Skip(_)
    ));
}

#[test]
fn strips_encoding_range_and_conditionals_in_capture_only() {
    let host = MemoryHost::default();
    let req = Request {
        method: "GET".into(),
        url: "https://example.org/".into(),
        headers: vec![
            ("accept-encoding".into(), b"gzip".to_vec()),
            ("range".into(), b"bytes=0-1".to_vec()),
            ("user-agent".into(), b"curl".to_vec()),
        ],
        chain: vec![],
    };
    let mut p = Capture::default();
    p.configure(&host, Mode::Capture, "").unwrap();
    let RequestAction::Rewrite(r) = p.on_request(&host, 1, req.clone()) else {
        panic!("not rewritten")
    };
    assert_eq!(r.headers, vec![("user-agent".into(), b"curl".to_vec())]);

    let mut p = Capture::default();
    p.configure(&host, Mode::Replay, "").unwrap();
    assert_eq!(p.on_request(&host, 1, req), RequestAction::Pass);
}

#[test]
fn keeps_the_first_body_and_warns_on_a_changed_one() {
    let host = MemoryHost::default();
    let mut p = Capture::default();
    p.configure(&host, Mode::Capture, "").unwrap();
    p.on_complete(&host, 1, exchange("GET", 200, blob("sha256-a")));
    p.on_complete(&host, 2, exchange("GET", 200, blob("sha256-b")));
    let stored = host.get("GET", "https://example.org/f.tar.gz").unwrap();
    assert_eq!(stored.body, blob("sha256-a"));
    assert!(
        host.logs
            .borrow()
            .iter()
            .any(|(l, m)| *l == Level::Warn && m.contains("different body"))
    );
}

#[test]
fn rejects_an_unknown_config_with_the_options_it_takes() {
    let err = Capture::default()
        .configure(&MemoryHost::default(), Mode::Capture, "fast")
        .unwrap_err();
    assert!(err.contains("keep-encoding"), "{err}");
}

#[test]
fn leaves_redirects_and_what_they_led_to_to_the_redirect_plugin() {
    let mut redirect = exchange("GET", 302, None);
    let head = redirect.head.as_mut().unwrap();
    head.headers
        .push(("location".into(), b"/elsewhere".to_vec()));
    assert!(matches!(Capture::decide(&redirect), Decision::Skip(_)));
    let mut followed = exchange("GET", 200, blob("sha256-a"));
    followed.request.chain = vec!["https://example.org/dl".into()];
    assert!(matches!(Capture::decide(&followed), Decision::Skip(_)));
}

#[test]
fn tells_the_host_what_upstream_failed_to_give() {
    let host = MemoryHost::default();
    let mut p = Capture::default();
    p.configure(&host, Mode::Capture, "").unwrap();
    for status in [500, 429] {
        let mut ex = exchange("GET", status, None);
        ex.request.url = format!("https://example.org/{status}");
        p.on_complete(&host, 1, ex);
    }
    let mut local = exchange("GET", 404, None);
    local.source = Source::Plugin;
    p.on_complete(&host, 2, local);
    let told = host.told.borrow();
    assert_eq!(told.len(), 2, "{told:?}");
    for (kind, url, reason) in told.iter() {
        assert_eq!(*kind, Kind::Failed);
        let status = url.as_deref().unwrap().rsplit('/').next().unwrap();
        assert!(
            reason.contains(&format!("upstream answered {status}")),
            "{reason}"
        );
    }
}

#[test]
fn a_client_that_stopped_reading_is_left_to_the_host_to_report() {
    let host = MemoryHost::default();
    let mut p = Capture::default();
    p.configure(&host, Mode::Capture, "").unwrap();
    let mut left = exchange("GET", 200, None);
    left.error = Some("client went away after 64928 bytes".into());
    p.on_complete(&host, 1, left.clone());
    assert!(host.told.borrow().is_empty(), "{:?}", host.told.borrow());
    // An upstream failure is reported.
    left.error = Some("upstream reset the connection".into());
    p.on_complete(&host, 2, left);
    let told = host.told.borrow();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0, Kind::Failed);
    assert!(told[0].2.contains("upstream reset"), "{told:?}");
}
