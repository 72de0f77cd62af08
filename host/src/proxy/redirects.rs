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
//! Keyed by URL, not by client: whichever client asks for a remembered
//! target gets its chain, and the latest redirect to a URL wins. Memory is
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
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

pub struct Redirects {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Links>,
}

#[derive(Default)]
struct Links {
    /// Target URL → the chain that led to it (origin first, ending with the
    /// URL that redirected there).
    by_target: HashMap<String, (Vec<String>, Instant)>,
    /// Insertion order, for eviction; may hold stale keys of overwritten
    /// links (checked against the stored instant).
    order: VecDeque<(String, Instant)>,
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
    pub fn chain_to(&self, url: &str) -> Vec<String> {
        self.chain_at(url, Instant::now())
    }

    fn chain_at(&self, url: &str, now: Instant) -> Vec<String> {
        let links = self.inner.lock().unwrap();
        match links.by_target.get(url) {
            Some((chain, at)) if now.duration_since(*at) <= self.ttl => chain.clone(),
            _ => Vec::new(),
        }
    }

    /// Remembers that `url`, reached through `chain`, redirected to
    /// `location` (as the response said it: relative or absolute). Returns
    /// the resolved target, or `None` when `location` is not a URL we can
    /// resolve or the chain is already at [`MAX_CHAIN`].
    pub fn remember(&self, url: &str, chain: &[String], location: &str) -> Option<String> {
        self.remember_at(url, chain, location, Instant::now())
    }

    fn remember_at(
        &self,
        url: &str,
        chain: &[String],
        location: &str,
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
        while let Some((key, at)) = links.order.front() {
            let expired = now.duration_since(*at) > self.ttl;
            let full =
                links.by_target.len() >= self.capacity || links.order.len() >= 2 * self.capacity;
            if !expired && !full {
                break;
            }
            let (key, at) = (key.clone(), *at);
            links.order.pop_front();
            if links.by_target.get(&key).is_some_and(|(_, t)| *t == at) {
                links.by_target.remove(&key);
            }
        }
        links.by_target.insert(target.clone(), (to_target, now));
        links.order.push_back((target.clone(), now));
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_followed_redirect_carries_its_chain_from_the_first_url() {
        let r = Redirects::default();
        let a = "http://a.example/dl";
        let b = r.remember(a, &[], "https://b.example/x").unwrap();
        assert_eq!(r.chain_to(&b), [a]);
        let c = r.remember(&b, &r.chain_to(&b), "/final?sig=1").unwrap();
        assert_eq!(c, "https://b.example/final?sig=1");
        assert_eq!(r.chain_to(&c), [a, b.as_str()]);
        assert!(r.chain_to(a).is_empty());
        assert!(r.chain_to("https://b.example/other").is_empty());
    }

    #[test]
    fn a_loop_shows_as_a_url_already_in_its_own_chain() {
        let r = Redirects::default();
        let (a, b) = ("http://e.example/a", "http://e.example/b");
        r.remember(a, &r.chain_to(a), "/b");
        r.remember(b, &r.chain_to(b), "/a");
        assert_eq!(r.chain_to(a), [a, b]);
        assert!(r.chain_to(a).contains(&a.to_string()));
    }

    #[test]
    fn links_expire_and_are_bounded() {
        let r = Redirects::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        r.remember_at("http://e.example/0", &[], "/t0", t0);
        assert_eq!(r.chain_at("http://e.example/t0", t0).len(), 1);
        let later = t0 + Duration::from_secs(11);
        assert!(r.chain_at("http://e.example/t0", later).is_empty());
        for i in 1..=5 {
            r.remember_at(
                &format!("http://e.example/{i}"),
                &[],
                &format!("/t{i}"),
                later,
            );
        }
        let links = r.inner.lock().unwrap();
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
        assert_eq!(r.remember("http://e.example/x", &chain, "/y"), None);
        assert!(r.chain_to("http://e.example/y").is_empty());
    }
}
