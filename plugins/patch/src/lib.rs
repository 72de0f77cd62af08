//! The bundled `patch` plugin: rewrites response bodies by declarative rules
//! (`buildproxy replay --patch RULES.json`, see docs/plugins.md).
//!
//! - `on-response`: a 200 to GET or HEAD whose URL some rule matches asks
//!   for the body. A content-encoded body is left alone (rules are written
//!   against the bytes a build sees once decoded) and counted as such.
//! - `on-response-body`: every matching rule, in order, each on the output
//!   of the one before. The host then fixes the length, drops the validators
//!   and serves Range and HEAD from the new bytes.
//! - `report`: at exit, every rule that changed nothing, and why.
//!
//! Whether a rule applied is counted with the host's `counters`, never in
//! the instance: the host pools several instances, and a report from one of
//! them would miss what the others did.
//!
//! Config: what the host builds from the `--patch` files (see [`rules`]).

pub mod rules;

use buildproxy_plugin_sdk::{
    Hooks, Host, Level, Mode, Plugin, Request, ResponseAction, ResponseHead, headers,
};

use rules::{Action, Applied, Rules};

#[derive(Default)]
pub struct Patch {
    rules: Rules,
}

/// Counter names: per rule index.
fn url_counter(i: usize) -> String {
    format!("url#{i}")
}
fn hit_counter(i: usize) -> String {
    format!("hit#{i}")
}
fn encoded_counter(i: usize) -> String {
    format!("encoded#{i}")
}
const BODIES: &str = "bodies";

impl Patch {
    /// Whether this response is one to patch; counts encoded ones.
    pub fn wants(&self, host: &dyn Host, method: &str, url: &str, head: &ResponseHead) -> bool {
        if self.rules.is_empty() || head.status != 200 || !matches!(method, "GET" | "HEAD") {
            return false;
        }
        let matching: Vec<usize> = self.rules.matching(url).collect();
        if matching.is_empty() {
            return false;
        }
        match headers::get(&head.headers, "content-encoding").map(str::trim) {
            None | Some("") | Some("identity") => true,
            Some(encoding) => {
                for &i in &matching {
                    host.count(&encoded_counter(i), 1);
                }
                host.log(
                    Level::Warn,
                    &format!(
                        "not patching {url}: the body is {encoding}-encoded, and rules apply to plain bodies"
                    ),
                );
                false
            }
        }
    }

    /// The patched body, or none when no rule changed it.
    pub fn patch(&self, host: &dyn Host, url: &str, body: &[u8]) -> Option<Vec<u8>> {
        let new = self.rules.apply(url, body, |i, applied| {
            host.count(&url_counter(i), 1);
            if applied == Applied::Hit {
                host.count(&hit_counter(i), 1);
            }
        });
        if new.is_some() {
            host.count(BODIES, 1);
        }
        new
    }

    /// Lines for the user at exit: a summary, and each rule that changed
    /// nothing with the likely reason.
    pub fn summarize(&self, counters: &[(String, u64)]) -> Vec<String> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let get = |name: &str| {
            counters
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v)
        };
        let mut lines = Vec::new();
        let applied = (0..self.rules.rules.len())
            .filter(|&i| get(&hit_counter(i)) > 0)
            .count();
        lines.push(format!(
            "patched {} responses; {applied} of {} rules applied",
            get(BODIES),
            self.rules.rules.len()
        ));
        for (i, rule) in self.rules.rules.iter().enumerate() {
            if get(&hit_counter(i)) > 0 {
                continue;
            }
            let (urls, encoded) = (get(&url_counter(i)), get(&encoded_counter(i)));
            let why = if urls > 0 {
                let what = rule.action.describe();
                let fix = match rule.action {
                    Action::Regex { .. } => "the file changed upstream, or the regex is wrong",
                    _ => "the file changed upstream, or the rule is stale",
                };
                format!(
                    "its URL matched {urls} response(s), but {what} occurred in none of them: {fix}"
                )
            } else if encoded > 0 {
                format!(
                    "its URL matched {encoded} response(s), all content-encoded, which rules do not touch: capture without the capture plugin's `keep-encoding`"
                )
            } else {
                "no response's URL matched its pattern: check it against the URLs the build downloads (they are the `url`s in proxy_content.nix)".to_string()
            };
            lines.push(format!("{rule} matched nothing: {why}"));
        }
        lines
    }
}

impl Plugin for Patch {
    fn configure(&mut self, _host: &dyn Host, _mode: Mode, config: &str) -> Result<(), String> {
        self.rules = Rules::parse(config)?;
        Ok(())
    }

    /// It changes bodies and reports rules that changed nothing.
    /// Nothing without rules: every response would otherwise cost a call
    /// that converts its request and head only to hear "no" (a third of
    /// what replay spent per request with the bundled chain).
    fn hooks(&self) -> Hooks {
        if self.rules.is_empty() {
            Hooks::empty()
        } else {
            Hooks::ON_RESPONSE | Hooks::REPORT
        }
    }

    fn on_response(
        &mut self,
        host: &dyn Host,
        _id: u64,
        req: Request,
        head: ResponseHead,
    ) -> ResponseAction {
        if self.wants(host, &req.method, &req.url, &head) {
            ResponseAction::WantBody
        } else {
            ResponseAction::Pass
        }
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        _id: u64,
        req: Request,
        _head: ResponseHead,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        self.patch(host, &req.url, &body)
    }

    fn report(&mut self, _host: &dyn Host, counters: Vec<(String, u64)>) -> Vec<String> {
        self.summarize(&counters)
    }
}

buildproxy_plugin_sdk::export_plugin!(Patch);

#[cfg(test)]
mod tests;
