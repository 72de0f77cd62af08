//! The exchange in process, with a Rust policy instead of plugins: no wasm,
//! no sockets, no client. What the proxy itself does with an answer (HEAD,
//! Range and 416, 304, changed bytes, unusable answers) is checked here.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Empty};

use super::*;
use crate::catalog::Catalog;
use crate::proxy::body::ProxyBody;
use crate::proxy::policy::{Body, BoxFuture, Policy, Response as Answered, ResponseOutcome};
use crate::proxy::{Proxy, Timeouts};
use crate::tls::Authority;

type Answerer = dyn Fn(&Request) -> RequestOutcome + Send + Sync;
type Patcher = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync;

/// Answers every request with `answer`; with `patch`, asks for every body
/// and replaces it. Keeps every summary.
struct Fake {
    answer: Box<Answerer>,
    patch: Option<Box<Patcher>>,
    completed: Mutex<Vec<Summary>>,
}

impl Policy for Fake {
    fn on_request(&self, _id: u64, req: Request) -> BoxFuture<'_, Result<RequestOutcome, Fault>> {
        let outcome = (self.answer)(&req);
        Box::pin(async move { Ok(outcome) })
    }

    fn on_request_body(
        &self,
        _id: u64,
        req: Request,
        body: Bytes,
        _resume: crate::proxy::policy::Resume,
    ) -> BoxFuture<'_, Result<RequestOutcome, Fault>> {
        let said = format!("{} {} bytes", req.method, body.len());
        Box::pin(async move { Ok(respond(200, &[], Body::Bytes(said.into_bytes()))) })
    }

    fn on_response<'a>(
        &'a self,
        _id: u64,
        _req: &'a Request,
        head: ResponseHead,
    ) -> BoxFuture<'a, Result<ResponseOutcome, Fault>> {
        let want_body = if self.patch.is_some() {
            vec![0]
        } else {
            vec![]
        };
        Box::pin(async move { Ok(ResponseOutcome { head, want_body }) })
    }

    fn on_response_body<'a>(
        &'a self,
        _id: u64,
        _req: &'a Request,
        _head: &'a ResponseHead,
        _want_body: &'a [usize],
        body: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Fault>> {
        let new = self.patch.as_ref().map(|p| Bytes::from(p(&body)));
        Box::pin(async move { Ok(new) })
    }

    fn on_complete<'a>(&'a self, _id: u64, summary: &'a Summary) -> BoxFuture<'a, ()> {
        self.completed.lock().unwrap().push(summary.clone());
        Box::pin(async {})
    }
}

struct Harness {
    proxy: Arc<Proxy>,
    fake: Arc<Fake>,
    _dir: tempfile::TempDir,
}

fn harness(
    answer: impl Fn(&Request) -> RequestOutcome + Send + Sync + 'static,
    patch: Option<Box<Patcher>>,
) -> Harness {
    let catalog = Arc::new(Catalog::default());
    harness_in(catalog, tempfile::tempdir().unwrap(), answer, patch)
}

fn harness_in(
    catalog: Arc<Catalog>,
    dir: tempfile::TempDir,
    answer: impl Fn(&Request) -> RequestOutcome + Send + Sync + 'static,
    patch: Option<Box<Patcher>>,
) -> Harness {
    let fake = Arc::new(Fake {
        answer: Box::new(answer),
        patch,
        completed: Mutex::default(),
    });
    let proxy = Arc::new(Proxy::new(
        fake.clone(),
        catalog,
        Arc::new(Authority::generate().unwrap()),
        None,
        None,
        1 << 20,
        Timeouts::default(),
        crate::proxy::auth::Access::new(false).unwrap(),
    ));
    Harness {
        proxy,
        fake,
        _dir: dir,
    }
}

fn respond(status: u16, headers: &[(&str, &str)], body: Body) -> RequestOutcome {
    RequestOutcome::Respond {
        by: "fake".into(),
        response: Answered {
            head: ResponseHead {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            },
            body,
        },
    }
}

fn request(method: &str, headers: &[(&str, &str)]) -> hyper::Request<Empty<Bytes>> {
    let mut b = hyper::Request::builder().method(method).uri("/file");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Empty::new()).unwrap()
}

fn target() -> Target {
    Target {
        scheme: "https",
        host: "a.test".into(),
        port: Some(443),
        client: None,
    }
}

async fn send(h: &Harness, method: &str, headers: &[(&str, &str)]) -> (Response<()>, Vec<u8>) {
    let resp: Response<ProxyBody> =
        handle(h.proxy.clone(), request(method, headers), target()).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, ()), bytes)
}

/// The typed outcome of one exchange's phases, before it is answered.
async fn run(h: &Harness) -> Result<Answer, ExchangeError> {
    let (parts, body) = request("GET", &[]).into_parts();
    let mut flow = Flow::new(h.proxy.clone(), &parts, &target());
    flow.run(body).await
}

fn header<'a>(r: &'a Response<()>, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

/// A recorded body the policy may name: ten bytes in a file.
fn blob(catalog: &Catalog, dir: &tempfile::TempDir) -> Body {
    let path = dir.path().join("blob");
    std::fs::write(&path, b"0123456789").unwrap();
    let id = catalog.register_blob(BlobRef {
        file: Some(path),
        size: 10,
        // Served bodies are verified against their recorded hash.
        hash: Some(local::digest(b"0123456789").id),
    });
    Body::Blob(Blob { id, size: 10 })
}

#[tokio::test]
async fn head_gets_the_length_of_a_local_answer_and_no_body() {
    let h = harness(|_| respond(200, &[], Body::Bytes(b"hello".to_vec())), None);
    let (resp, body) = send(&h, "HEAD", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), Some("5"));
    assert!(body.is_empty());
    let (resp, body) = send(&h, "GET", &[]).await;
    assert_eq!((resp.status().as_u16(), &body[..]), (200, &b"hello"[..]));
    let done = h.fake.completed.lock().unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(done[1].source, Source::Policy);
    assert_eq!(done[1].body.as_ref().map(|b| b.size), Some(5));
}

#[tokio::test]
async fn a_range_of_a_blob_is_a_206_and_an_unsatisfiable_one_a_416() {
    let (catalog, dir) = (Arc::new(Catalog::default()), tempfile::tempdir().unwrap());
    let body = blob(&catalog, &dir);
    let h = harness_in(catalog, dir, move |_| respond(200, &[], body.clone()), None);
    let (resp, got) = send(&h, "GET", &[("range", "bytes=2-4")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(header(&resp, "content-range"), Some("bytes 2-4/10"));
    assert_eq!(got, b"234");
    let (resp, got) = send(&h, "GET", &[("range", "bytes=20-")]).await;
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "content-range"), Some("bytes */10"));
    assert!(got.is_empty());
    let (resp, got) = send(&h, "HEAD", &[("range", "bytes=0-0")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(header(&resp, "content-length"), Some("1"));
    assert!(got.is_empty());
}

#[tokio::test]
async fn head_and_416_fail_as_a_get_would_when_the_body_is_gone_or_short() {
    let (catalog, dir) = (Arc::new(Catalog::default()), tempfile::tempdir().unwrap());
    let body = blob(&catalog, &dir);
    let file = dir.path().join("blob");
    let h = harness_in(catalog, dir, move |_| respond(200, &[], body.clone()), None);
    let (resp, _) = send(&h, "HEAD", &[]).await;
    assert_eq!(resp.status(), 200);
    // Shorter than recorded: a GET reads 10 bytes and cannot.
    std::fs::write(&file, b"01234").unwrap();
    for (method, range) in [("GET", None), ("HEAD", None), ("GET", Some("bytes=20-"))] {
        let headers: Vec<_> = range.map(|r| ("range", r)).into_iter().collect();
        let (resp, got) = send(&h, method, &headers).await;
        let text = String::from_utf8_lossy(&got);
        assert_eq!(resp.status(), 502, "{method} {range:?}: {text}");
        if method == "GET" {
            assert!(text.contains("shorter than its recorded size"), "{text}");
        }
    }
    std::fs::remove_file(&file).unwrap();
    for (method, range) in [("GET", None), ("HEAD", None), ("HEAD", Some("bytes=20-"))] {
        let headers: Vec<_> = range.map(|r| ("range", r)).into_iter().collect();
        let (resp, got) = send(&h, method, &headers).await;
        assert_eq!(resp.status(), 502, "{method} {range:?}");
        if method == "GET" {
            let text = String::from_utf8_lossy(&got);
            assert!(text.contains("the recorded body is gone"), "{text}");
        }
    }
}

#[tokio::test]
async fn a_304_for_a_matching_if_none_match_carries_no_body() {
    let (catalog, dir) = (Arc::new(Catalog::default()), tempfile::tempdir().unwrap());
    let body = blob(&catalog, &dir);
    let answer = move |req: &Request| {
        let matches = req
            .headers
            .iter()
            .any(|(n, v)| n == "if-none-match" && v == b"\"v1\"");
        let status = if matches { 304 } else { 200 };
        respond(status, &[("etag", "\"v1\"")], body.clone())
    };
    let h = harness_in(catalog, dir, answer, None);
    let (resp, got) = send(&h, "GET", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(resp.status(), 304);
    assert!(got.is_empty());
    let (resp, got) = send(&h, "GET", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(got, b"0123456789");
}

#[tokio::test]
async fn changed_bytes_fix_the_length_drop_validators_and_serve_ranges_from_the_new_bytes() {
    let h = harness(
        |_| {
            respond(
                200,
                &[("etag", "\"old\""), ("last-modified", "x"), ("x-keep", "1")],
                Body::Bytes(b"original".to_vec()),
            )
        },
        Some(Box::new(|b: &[u8]| [b, b"+patched"].concat())),
    );
    let (resp, got) = send(&h, "GET", &[]).await;
    assert_eq!(got, b"original+patched");
    assert_eq!(header(&resp, "content-length"), Some("16"));
    assert_eq!(header(&resp, "etag"), None);
    assert_eq!(header(&resp, "last-modified"), None);
    assert_eq!(header(&resp, "x-keep"), Some("1"));
    let (resp, got) = send(&h, "GET", &[("range", "bytes=-7")]).await;
    assert_eq!((resp.status().as_u16(), &got[..]), (206, &b"patched"[..]));
    let (resp, got) = send(&h, "HEAD", &[]).await;
    assert_eq!(header(&resp, "content-length"), Some("16"));
    assert!(got.is_empty());
    // The summary describes the bytes as they came, not as they were sent.
    let done = h.fake.completed.lock().unwrap();
    assert_eq!(done[0].body, Some(local::digest(b"original")));
}

#[tokio::test]
async fn bytes_a_policy_returns_unchanged_keep_their_validators() {
    let h = harness(
        |_| respond(200, &[("etag", "\"same\"")], Body::Bytes(b"same".to_vec())),
        Some(Box::new(|b: &[u8]| b.to_vec())),
    );
    let (resp, got) = send(&h, "GET", &[]).await;
    assert_eq!(got, b"same");
    assert_eq!(header(&resp, "etag"), Some("\"same\""));
}

#[tokio::test]
async fn unusable_answers_are_the_policys_fault_by_kind() {
    type Expect = fn(&ExchangeError) -> bool;
    let cases: Vec<(RequestOutcome, Expect)> = vec![
        (
            respond(1000, &[], Body::None),
            |e| matches!(e, ExchangeError::Policy(Fault { reason: FaultReason::InvalidAnswer(why), .. }) if why.contains("1000")),
        ),
        (respond(200, &[("bad name", "x")], Body::None), |e| {
            matches!(
                e,
                ExchangeError::Policy(Fault {
                    reason: FaultReason::InvalidAnswer(_),
                    ..
                })
            )
        }),
        (
            respond(
                200,
                &[],
                Body::Blob(Blob {
                    id: "sha256-nope".into(),
                    size: 1,
                }),
            ),
            |e| matches!(e, ExchangeError::Policy(Fault { reason: FaultReason::UnknownBlob(id), .. }) if id == "sha256-nope"),
        ),
        (
            RequestOutcome::Forward {
                request: Request {
                    url: "not a url".into(),
                    ..dummy()
                },
                by: Some("rewriter".into()),
            },
            |e| matches!(e, ExchangeError::Policy(Fault { by, reason: FaultReason::InvalidAnswer(_), .. }) if &**by == "rewriter"),
        ),
        (
            RequestOutcome::Forward {
                request: dummy(),
                by: None,
            },
            |e| matches!(e, ExchangeError::NoUpstream),
        ),
    ];
    for (outcome, expected) in cases {
        let outcome = Mutex::new(Some(outcome));
        let h = harness(move |_| outcome.lock().unwrap().take().unwrap(), None);
        match run(&h).await {
            Err(e) => assert!(expected(&e), "{e:?}"),
            Ok(_) => panic!("an unusable answer was used"),
        }
    }
    // Answered, such a fault is a 502 that blames the plugin.
    let h = harness(|_| respond(1000, &[], Body::None), None);
    let (resp, got) = send(&h, "GET", &[]).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "x-buildproxy-error"), Some("plugin"));
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.contains("fake") && text.contains("invalid status 1000"),
        "{text}"
    );
    let done = h.fake.completed.lock().unwrap();
    assert_eq!(done[0].source, Source::Host);
    assert!(done[0].error.as_deref().unwrap().contains("1000"));
}

fn dummy() -> Request {
    Request {
        method: "GET".into(),
        url: "https://a.test/file".into(),
        headers: vec![],
        chain: vec![],
    }
}
