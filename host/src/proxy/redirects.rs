//! Which exchanges belong to one redirect chain.
//!
//! A client follows a redirect with a new request, often on a new
//! connection, sometimes to another host or scheme: nothing in HTTP ties the
//! two exchanges together. The proxy does: when it relays a redirect (301,
//! 302, 303, 307, 308 with a `location`), it remembers the resolved target
//! with the chain that led there; when a request for that exact URL arrives
//! shortly after, that request carries the chain (`request.chain` in the
//! WIT: the URLs before it, the first one first). Plugins decide what a
//! chain means (the redirect plugin records the final entry with the first
//! URL as its fetch URL, and stops loops); this module only links.
//!
//! Keyed by URL and client: a link is followed only by the client the
//! redirect was relayed to (the process that owns the connection, looked up
//! only when a redirect is relayed or a request asks for a remembered URL),
//! so one client's redirect never becomes part of another's chain; for one
//! client, the latest redirect to a URL wins. Memory is
//! bounded in time (a redirect is followed at once, or not at all) and in
//! size (the oldest links go first), so a long capture never grows it
//! without bound. This module never decides anything about content.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use buildproxy_plugin_sdk::location::resolve;

/// How long a relayed redirect waits for its follow-up request. Clients
/// follow at once; the margin covers a slow connect to another host.
pub const LINK_TTL: Duration = Duration::from_secs(120);
/// How many relayed redirects are remembered at once.
pub const CAPACITY: usize = 4096;
/// A chain is not extended past this many URLs: a plugin stops a loop long
/// before (the redirect plugin at 20 hops); this only bounds memory when no
/// plugin does.
pub const MAX_CHAIN: usize = 64;

/// The statuses a client follows with a new request to `location`.
pub use buildproxy_plugin_sdk::location::is_redirect_status as is_redirect;

pub struct Redirects {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Links>,
}

/// Who a redirect was relayed to: the process owning the client's socket
/// (`auth::Peer::process`), `None` when unknown.
pub type Client = Option<u32>;

#[derive(Default)]
struct Links {
    /// Target URL → per client, the chain that led to it (origin first,
    /// ending with the URL that redirected there).
    by_target: HashMap<String, Vec<(Client, Vec<String>, Instant)>>,
    /// Insertion order, for eviction; may hold stale keys of overwritten
    /// links (checked against the stored instant).
    order: VecDeque<(String, Client, Instant)>,
    /// Links held, over all targets.
    len: usize,
}

impl Default for Redirects {
    fn default() -> Self {
        Self::new(LINK_TTL, CAPACITY)
    }
}

impl Redirects {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            inner: Mutex::new(Links::default()),
        }
    }

    /// The chain that led to `url` (normalised as the proxy writes request
    /// URLs), the first URL first; empty when no recent redirect pointed here.
    /// `client` is asked only when some redirect pointed at `url`.
    pub fn chain_to(&self, url: &str, client: impl FnOnce() -> Client) -> Vec<String> {
        self.chain_at(url, client, Instant::now())
    }

    fn chain_at(&self, url: &str, client: impl FnOnce() -> Client, now: Instant) -> Vec<String> {
        if !self.inner.lock().unwrap().by_target.contains_key(url) {
            return Vec::new();
        }
        // Outside the lock: finding the client may read /proc.
        let client = client();
        let links = self.inner.lock().unwrap();
        links
            .by_target
            .get(url)
            .and_then(|v| v.iter().find(|(c, _, _)| *c == client))
            .filter(|(_, _, at)| now.duration_since(*at) <= self.ttl)
            .map(|(_, chain, _)| chain.clone())
            .unwrap_or_default()
    }

    /// Remembers that `url`, reached through `chain`, redirected to
    /// `location` (as the response said it: relative or absolute). Returns
    /// the resolved target, or `None` when `location` is not a URL we can
    /// resolve or the chain is already at [`MAX_CHAIN`].
    pub fn remember(
        &self,
        url: &str,
        chain: &[String],
        location: &str,
        client: Client,
    ) -> Option<String> {
        self.remember_at(url, chain, location, client, Instant::now())
    }

    fn remember_at(
        &self,
        url: &str,
        chain: &[String],
        location: &str,
        client: Client,
        now: Instant,
    ) -> Option<String> {
        if chain.len() + 1 > MAX_CHAIN {
            return None;
        }
        let target = resolve(url, location)?;
        let mut to_target = chain.to_vec();
        to_target.push(url.to_string());
        let mut links = self.inner.lock().unwrap();
        let links = &mut *links;
        // Expired links and, past capacity, the oldest go first.
        while let Some((key, who, at)) = links.order.front() {
            let expired = now.duration_since(*at) > self.ttl;
            let full = links.len >= self.capacity || links.order.len() >= 2 * self.capacity;
            if !expired && !full {
                break;
            }
            let (key, who, at) = (key.clone(), *who, *at);
            links.order.pop_front();
            if let Some(v) = links.by_target.get_mut(&key) {
                let before = v.len();
                v.retain(|(c, _, t)| !(*c == who && *t == at));
                links.len -= before - v.len();
                if v.is_empty() {
                    links.by_target.remove(&key);
                }
            }
        }
        let v = links.by_target.entry(target.clone()).or_default();
        match v.iter_mut().find(|(c, _, _)| *c == client) {
            Some(link) => *link = (client, to_target, now),
            None => {
                v.push((client, to_target, now));
                links.len += 1;
            }
        }
        links.order.push_back((target.clone(), client, now));
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Client = Some(1);
    fn me() -> Client {
        ME
    }

    /// Issue 16, row 2: another client's redirect to a URL this client
    /// later downloads does not become part of this client's chain.
    #[test]
    fn a_redirect_relayed_to_one_client_is_not_another_clients_chain() {
        let r = Redirects::default();
        let target = r
            .remember(
                "http://evil.example/r",
                &[],
                "https://e.example/tool.tgz",
                Some(2),
            )
            .unwrap();
        assert!(r.chain_to(&target, me).is_empty());
        assert!(r.chain_to(&target, || None).is_empty());
        assert_eq!(r.chain_to(&target, || Some(2)), ["http://evil.example/r"]);
        // Both clients redirected to one URL: each keeps its own chain.
        r.remember(
            "http://good.example/dl",
            &[],
            "https://e.example/tool.tgz",
            ME,
        );
        assert_eq!(r.chain_to(&target, me), ["http://good.example/dl"]);
        assert_eq!(r.chain_to(&target, || Some(2)), ["http://evil.example/r"]);
        // No redirect to a URL: the client is never looked up.
        assert!(
            r.chain_to("https://e.example/other", || unreachable!())
                .is_empty()
        );
    }

    #[test]
    fn a_followed_redirect_carries_its_chain_from_the_first_url() {
        let r = Redirects::default();
        let a = "http://a.example/dl";
        let b = r.remember(a, &[], "https://b.example/x", ME).unwrap();
        assert_eq!(r.chain_to(&b, me), [a]);
        let c = r
            .remember(&b, &r.chain_to(&b, me), "/final?sig=1", ME)
            .unwrap();
        assert_eq!(c, "https://b.example/final?sig=1");
        assert_eq!(r.chain_to(&c, me), [a, b.as_str()]);
        assert!(r.chain_to(a, me).is_empty());
        assert!(r.chain_to("https://b.example/other", me).is_empty());
    }

    #[test]
    fn a_loop_shows_as_a_url_already_in_its_own_chain() {
        let r = Redirects::default();
        let (a, b) = ("http://e.example/a", "http://e.example/b");
        r.remember(a, &r.chain_to(a, me), "/b", ME);
        r.remember(b, &r.chain_to(b, me), "/a", ME);
        assert_eq!(r.chain_to(a, me), [a, b]);
        assert!(r.chain_to(a, me).contains(&a.to_string()));
    }

    #[test]
    fn links_expire_and_are_bounded() {
        let r = Redirects::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        r.remember_at("http://e.example/0", &[], "/t0", ME, t0);
        assert_eq!(r.chain_at("http://e.example/t0", me, t0).len(), 1);
        let later = t0 + Duration::from_secs(11);
        assert!(r.chain_at("http://e.example/t0", me, later).is_empty());
        for i in 1..=5 {
            r.remember_at(
                &format!("http://e.example/{i}"),
                &[],
                &format!("/t{i}"),
                ME,
                later,
            );
        }
        let links = r.inner.lock().unwrap();
        assert!(links.len <= 3, "{}", links.len);
        assert!(links.by_target.len() <= 3, "{}", links.by_target.len());
        assert!(links.by_target.contains_key("http://e.example/t5"));
        assert!(!links.by_target.contains_key("http://e.example/t0"));
    }

    #[test]
    fn chains_stop_growing_at_the_cap() {
        let r = Redirects::default();
        let chain: Vec<String> = (0..MAX_CHAIN)
            .map(|i| format!("http://e.example/{i}"))
            .collect();
        assert_eq!(r.remember("http://e.example/x", &chain, "/y", ME), None);
        assert!(r.chain_to("http://e.example/y", me).is_empty());
    }
}
