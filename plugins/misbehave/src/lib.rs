//! A test fixture, never bundled: a plugin that misbehaves on purpose when a
//! request's URL contains `/boom`, to prove the host contains plugin faults.
//!
//! Config: `trap` (panics, which traps), `loop` (never returns), `grow`
//! (allocates without bound), `bad-status` (answers status 1000),
//! `bad-header` (answers a header name with a space), `bad-value` (answers
//! a header value with a newline, which would split the head on the wire),
//! `bad-value-response` (replaces an upstream response's head with such a
//! value, in `on-response`), `config-error` (refuses its config).
//!
//! It also behaves, for the chain-semantics tests, on URLs containing
//! `/chain`: `respond:TEXT` answers locally with TEXT; `rewrite:PATH`
//! rewrites the request's path to PATH and adds `x-rewritten-by`; `echo`
//! answers with the URL and the `x-rewritten-by` header it was given, so a
//! test sees what an earlier plugin's rewrite made of the request;
//! `answer-body` asks for the request body and answers with what it read;
//! `peek-body` asks for it, keeps its length as exchange state, lets the
//! request go upstream with its body, and puts the length it kept in the
//! response's `x-peeked` header (a later hook, maybe another instance).
//!
//! `answer-recorded` asks the host to answer plainly recorded requests in
//! its place (`requests.answer-recorded`) and answers every request it is
//! still asked with 418 `asked`: a test sees which requests reached it.

use buildproxy_plugin_sdk::{
    Body, Host, Mode, Plugin, Request, RequestAction, Response, ResponseAction, ResponseHead,
};

fn text(status: u16, body: String) -> RequestAction {
    RequestAction::Respond(Response {
        head: ResponseHead {
            status,
            headers: vec![],
        },
        body: Body::Bytes(body.into_bytes()),
    })
}

#[derive(Default)]
pub struct Misbehave {
    how: String,
}

fn answer(status: u16, headers: Vec<(String, Vec<u8>)>) -> RequestAction {
    RequestAction::Respond(Response {
        head: ResponseHead { status, headers },
        body: Body::Bytes(b"misbehaving".to_vec()),
    })
}

impl Plugin for Misbehave {
    fn configure(&mut self, _host: &dyn Host, _mode: Mode, config: &str) -> Result<(), String> {
        if config == "config-error" {
            return Err("this fixture refuses its config on purpose".into());
        }
        self.how = config.to_string();
        Ok(())
    }

    fn answers_recorded(&self) -> bool {
        self.how == "answer-recorded"
    }

    fn on_request(&mut self, _host: &dyn Host, _id: u64, mut req: Request) -> RequestAction {
        if self.how == "answer-recorded" {
            return text(418, "asked".into());
        }
        if req.url.contains("/chain") {
            if self.how == "answer-body" || self.how == "peek-body" {
                return RequestAction::WantBody;
            }
            if let Some(text) = self.how.strip_prefix("respond:") {
                return RequestAction::Respond(Response {
                    head: ResponseHead {
                        status: 200,
                        headers: vec![],
                    },
                    body: Body::Bytes(text.as_bytes().to_vec()),
                });
            }
            if self.how == "echo" {
                let by = req
                    .headers
                    .iter()
                    .find(|(name, _)| name == "x-rewritten-by")
                    .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
                let text = format!("{} rewritten-by={}", req.url, by.unwrap_or_default());
                return RequestAction::Respond(Response {
                    head: ResponseHead {
                        status: 200,
                        headers: vec![],
                    },
                    body: Body::Bytes(text.into_bytes()),
                });
            }
            if let Some(path) = self.how.strip_prefix("rewrite:") {
                let origin_end = req.url.find("://").map_or(0, |i| i + 3);
                let path_start = req.url[origin_end..]
                    .find('/')
                    .map_or(req.url.len(), |i| origin_end + i);
                req.url = format!("{}{path}", &req.url[..path_start]);
                req.headers
                    .push(("x-rewritten-by".into(), self.how.as_bytes().to_vec()));
                return RequestAction::Rewrite(req);
            }
        }
        if !req.url.contains("/boom") {
            return RequestAction::Pass;
        }
        match self.how.as_str() {
            "trap" => panic!("misbehave: trapping on purpose"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "bad-status" => answer(1000, vec![]),
            "bad-header" => answer(200, vec![("bad name".into(), b"x".to_vec())]),
            "bad-value" => answer(200, vec![("x-injected".into(), SPLIT_VALUE.to_vec())]),
            _ => RequestAction::Pass,
        }
    }

    fn on_request_body(
        &mut self,
        host: &dyn Host,
        _id: u64,
        req: Request,
        body: Vec<u8>,
    ) -> RequestAction {
        if self.how == "peek-body" {
            return match host.set_state(body.len().to_string().as_bytes()) {
                Ok(()) => RequestAction::Pass,
                Err(e) => text(500, e),
            };
        }
        let said = String::from_utf8_lossy(&body);
        text(200, format!("{} {} bytes: {said}", req.method, body.len()))
    }

    fn on_response(
        &mut self,
        host: &dyn Host,
        _id: u64,
        req: Request,
        mut head: ResponseHead,
    ) -> ResponseAction {
        if self.how == "peek-body" && req.url.contains("/chain") {
            let kept = host.state().unwrap_or_else(|| b"nothing".to_vec());
            head.headers.push(("x-peeked".into(), kept));
            return ResponseAction::ReplaceHead(head);
        }
        if !req.url.contains("/boom") || self.how != "bad-value-response" {
            return ResponseAction::Pass;
        }
        head.headers
            .push(("x-injected".into(), SPLIT_VALUE.to_vec()));
        ResponseAction::ReplaceHead(head)
    }
}

/// A header value that, sent as is, would end the head early and smuggle a
/// header of the plugin's choosing.
const SPLIT_VALUE: &[u8] = b"a\r\nset-cookie: smuggled";

buildproxy_plugin_sdk::export_plugin!(Misbehave);
