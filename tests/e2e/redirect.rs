//! Redirects and non-success statuses: the host links a chain's exchanges,
//! the redirect plugin records and replays them (faithful or flattened).

use url::form_urlencoded::byte_serialize;

use crate::support::*;

fn enc(s: &str) -> String {
    byte_serialize(s.as_bytes()).collect()
}

/// `http://H/redirect/301` → `https://S/redirect/302` → (path-absolute)
/// `/redirect/303` → (relative path) `307` → (absolute, another host name)
/// `https://localhost:S/redirect/308` → (path-absolute) `/bytes/5000?v=chain`.
/// Returns the URLs the client requests, in order.
fn mixed_chain(up: &Upstream) -> Vec<String> {
    let port = up.https.port();
    let fin = format!("https://localhost:{port}/bytes/5000?v=chain");
    let hop5 = format!(
        "https://localhost:{port}/redirect/308?to={}",
        enc("/bytes/5000?v=chain")
    );
    let hop4 = up.https_url(&format!("/redirect/307?to={}", enc(&hop5)));
    let hop3_location = format!("307?to={}", enc(&hop5));
    let hop3_path = format!("/redirect/303?to={}", enc(&hop3_location));
    let hop3 = up.https_url(&hop3_path);
    let hop2 = up.https_url(&format!("/redirect/302?to={}", enc(&hop3_path)));
    let hop1 = up.http_url(&format!("/redirect/301?to={}", enc(&hop2)));
    vec![hop1, hop2, hop3, hop4, hop5, fin]
}

#[test]
fn a_mixed_chain_is_recorded_hop_by_hop_fetched_from_its_first_url_and_replays_offline() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let urls = mixed_chain(&up);
    let first = &urls[0];
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -sSfL '{first}' -o captured"),
    );
    assert_eq!(code, 0, "{err}");
    let captured = std::fs::read(s.path("captured")).unwrap();
    assert_eq!(captured, direct(&ca, &urls[5]));

    let entries = eval_content(&s.path("proxy_content.nix"));
    assert_eq!(entries.len(), 6, "{entries:#?}");
    for (url, status) in urls.iter().zip([301, 302, 303, 307, 308]) {
        let hop = entry(&entries, url);
        assert_eq!(hop["status"], status, "{url}");
        assert!(hop["file"].is_null(), "{url} is status-only");
        assert!(
            hop["headers"]["location"].is_string(),
            "{url} keeps location"
        );
    }
    // Locations are kept as the server sent them, relative ones included.
    assert_eq!(
        entry(&entries, &urls[2])["headers"]["location"],
        format!("307?to={}", enc(&urls[4]))
    );
    let last = entry(&entries, &urls[5]);
    assert_eq!(last["status"], 200);
    assert_eq!(
        last["file"]["url"],
        first.as_str(),
        "fetched from the first URL"
    );
    assert_eq!(last["file"]["hash"], sri(&captured));

    let hits = up.hits();
    let (code, err) = replay_offline(
        s.dir.path(),
        &["--store", "store", "--strict"],
        &format!("curl -sSfL '{first}' -o replayed"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(s.path("replayed")).unwrap(), captured);
    assert_eq!(up.hits(), hits, "replay must not reach the upstream");
}

#[test]
fn a_404_probe_replays_as_404_and_5xx_are_reported_not_recorded() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let probe = up.https_url("/status/404");
    let failed = up.https_url("/status/500");
    let to_503 = up.https_url(&format!("/redirect/302?to={}", enc("/status/503")));
    let script =
        format!("for u in '{probe}' '{failed}' '{to_503}'; do curl -sSL -o /dev/null \"$u\"; done");
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    let entries = eval_content(&s.path("proxy_content.nix"));
    let urls: Vec<&str> = entries.iter().map(|e| e["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert_eq!(entry(&entries, &probe)["status"], 404);
    assert_eq!(entry(&entries, &to_503)["status"], 302);
    // The summary lists both failures, by URL, once each.
    let listed = |url: &str, why: &str| {
        err.lines()
            .filter(|l| l.starts_with("buildproxy:   error: ") && l.contains(url))
            .inspect(|l| assert!(l.contains(why), "{l}"))
            .count()
    };
    assert_eq!(
        listed(&failed, "not recorded: upstream answered 500"),
        1,
        "{err}"
    );
    let failed_503 = up.https_url("/status/503");
    assert_eq!(
        listed(&failed_503, "not recorded: upstream answered 503"),
        1,
        "{err}"
    );
    assert!(err.contains("2 errors"), "{err}");

    let (code, err) = replay_offline(
        s.dir.path(),
        &["--store", "store"],
        &format!("curl -sS -o /dev/null -w %{{http_code}} '{probe}' > probe"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(s.path("probe")).unwrap(), "404");
}

#[test]
fn a_redirect_loop_is_stopped_with_508_and_reported_in_capture_and_replay() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let a = up.https_url("/loop/a");
    let hits = up.hits();
    let script = format!("curl -sSL -o body -w %{{http_code}} '{a}' > status");
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(s.path("status")).unwrap(), "508");
    // a -> b -> (a: stopped): two upstream requests, not curl's fifty.
    assert_eq!(up.hits() - hits, 2);
    let b = up.https_url("/loop/b");
    let said: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.starts_with("buildproxy:") && l.contains(&format!("redirect loop: {a} -> {b} -> {a}"))
        })
        .collect();
    assert_eq!(said.len(), 1, "listed once: {err}");
    assert!(said[0].starts_with("buildproxy:   error: "), "{err}");
    let entries = eval_content(&s.path("proxy_content.nix"));
    assert_eq!(entries.len(), 2, "{entries:#?}");

    let (code, err) = replay_offline(s.dir.path(), &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(s.path("status")).unwrap(), "508");
    assert!(err.contains("redirect loop"), "{err}");
}

#[test]
fn flatten_answers_a_client_that_does_not_follow_with_the_final_body() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let urls = mixed_chain(&up);
    let first = &urls[0];
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -sSfL '{first}' -o captured"),
    );
    assert_eq!(code, 0, "{err}");
    let captured = std::fs::read(s.path("captured")).unwrap();

    // Faithful (the default): without -L the client sees the first redirect.
    let no_follow = format!("curl -sS -o body -w %{{http_code}} '{first}' > status");
    let (code, err) = replay_offline(s.dir.path(), &["--store", "store"], &no_follow);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(s.path("status")).unwrap(), "301");

    for config in [
        "redirect=flatten",
        r#"redirect={"flatten": ["/redirect/301\\?"]}"#,
    ] {
        let (code, err) = replay_offline(
            s.dir.path(),
            &["--store", "store", "--strict", "--plugin-config", config],
            &no_follow,
        );
        assert_eq!(code, 0, "{config}: {err}");
        assert_eq!(
            std::fs::read_to_string(s.path("status")).unwrap(),
            "200",
            "{config}"
        );
        assert_eq!(std::fs::read(s.path("body")).unwrap(), captured, "{config}");
    }
}

#[test]
fn a_nix_buildproxy_file_whose_entry_says_302_and_location_replays_as_a_redirect() {
    let s = Scratch::new();
    let body = payload(3000, 42);
    std::fs::write(s.path("tool.tar.gz"), &body).unwrap();
    std::fs::write(s.path("empty"), b"").unwrap();
    // Stand-ins for Nix store paths: read-only, in the directory replay is
    // told is the store, so the hash-less JSON nix-buildproxy writes is
    // served as from /nix/store.
    for f in ["tool.tar.gz", "empty"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(s.path(f), std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let old = "https://downloads.example.org/old/tool.tar.gz";
    let mirror = "https://downloads.example.org/mirror/tool.tar.gz";
    let new = "https://cdn.example.net/tool.tar.gz";
    // Two ways such a file says "redirect": no file at all, or (as
    // nix-buildproxy leaves it) the hash of the empty body it saw.
    let seed = format!(
        r#"{{ fetchurl }}:
[
  {{
    url = "{old}";
    status_code = 302;
    headers = {{ location = "/mirror/tool.tar.gz"; }};
    file = null;
  }}
  {{
    url = "{mirror}";
    status_code = 302;
    headers = {{ location = "{new}"; }};
    file = fetchurl {{ url = "{mirror}"; hash = "{empty}"; }};
  }}
  {{
    url = "{new}";
    file = fetchurl {{ url = "{new}"; hash = "{hash}"; }};
  }}
]
"#,
        empty = sri(b""),
        hash = sri(&body)
    );
    std::fs::write(s.path("proxy_content.nix"), seed).unwrap();
    // Nix turns it into replay's JSON, each fetchurl into its file (here a
    // stand-in for the store path).
    let root = s.dir.path().display().to_string();
    let expr = format!(
        "builtins.toJSON (import {root}/proxy_content.nix {{ fetchurl = a: if a.hash == \"{}\" \
         then \"{root}/empty\" else \"{root}/tool.tar.gz\"; }})",
        sri(b"")
    );
    let out = nix_tool("nix-instantiate")
        .args(["--eval", "--strict", "--raw", "-E", &expr])
        .output()
        .unwrap();
    let json = if out.status.success() {
        out.stdout
    } else {
        // Nix 2.8 has no --raw: read the JSON string it prints.
        let out = nix_tool("nix-instantiate")
            .args(["--eval", "--strict", "--json", "-E", &expr])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text: String = serde_json::from_slice(&out.stdout).unwrap();
        text.into_bytes()
    };
    std::fs::write(s.path("content.json"), json).unwrap();

    let content = [
        "--content",
        "content.json",
        "--allow-root",
        &root,
        "--strict",
    ];
    let script = format!(
        "curl -sS -D first.head -o /dev/null '{old}'; \
         curl -sS -D second.head -o /dev/null '{mirror}'; \
         curl -sSfL -o followed '{old}'"
    );
    let store = [("NIX_STORE_DIR", root.as_str())];
    let (code, err) = replay_offline_with(s.dir.path(), &store, &content, &script);
    assert_eq!(code, 0, "{err}");
    let first = std::fs::read_to_string(s.path("first.head"))
        .unwrap()
        .to_lowercase();
    // After the tunnel's own "200 connection established".
    let status_302 = |head: &str| {
        head.lines()
            .any(|l| l.starts_with("http/") && l.contains(" 302"))
    };
    assert!(status_302(&first), "{first}");
    assert!(
        first.contains("location: /mirror/tool.tar.gz\r\n"),
        "{first}"
    );
    let second = std::fs::read_to_string(s.path("second.head"))
        .unwrap()
        .to_lowercase();
    assert!(status_302(&second), "{second}");
    assert!(second.contains(&format!("location: {new}\r\n")), "{second}");
    assert_eq!(std::fs::read(s.path("followed")).unwrap(), body);
    // The same file, flattened, for a client that does not follow.
    let mut flat = content.to_vec();
    flat.extend(["--plugin-config", "redirect=flatten"]);
    let (code, err) = replay_offline_with(
        s.dir.path(),
        &store,
        &flat,
        &format!("curl -sSf -o flat '{old}'"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(s.path("flat")).unwrap(), body);
}

#[test]
fn a_release_download_through_a_signed_cdn_url_captures_and_replays() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let release = up.https_url("/releases/download/v1.2.0/tool-1.2.0.tar.gz");
    let script = format!("curl -sSfL -o tool.tar.gz '{release}'");
    let want = direct(
        &ca,
        &release.replace("/releases/download/v1.2.0/", "/objects/"),
    );

    // Faithful: the signed URL is recorded, fetched from the release URL.
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(s.path("tool.tar.gz")).unwrap(), want);
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    eprintln!("faithful capture of a release download:\n{text}");
    let entries = eval_content(&s.path("proxy_content.nix"));
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let signed = entries
        .iter()
        .find(|e| e["url"].as_str().unwrap().contains("X-Amz-Signature="))
        .expect("the signed URL is the final entry");
    assert!(
        signed["url"]
            .as_str()
            .unwrap()
            .starts_with("https://localhost:")
    );
    assert_eq!(signed["file"]["url"], release.as_str());
    assert_eq!(signed["file"]["hash"], sri(&want));
    assert_eq!(entry(&entries, &release)["status"], 302);
    let (code, err) = replay_offline(
        s.dir.path(),
        &["--store", "store", "--strict"],
        &"curl -sSfL -o replayed '{release}'".replace("{release}", &release),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(s.path("replayed")).unwrap(), want);

    // Forget: the file holds no signed URL, so capturing again gives the
    // same file although the signature changed.
    let forget = [
        "--store",
        "store",
        "--plugin-config",
        r#"redirect={"forget": ["X-Amz-Signature="]}"#,
    ];
    let mut files = Vec::new();
    for name in ["one.nix", "two.nix"] {
        let mut args = forget.to_vec();
        args.extend(["-o", name]);
        let (code, err) = capture(s.dir.path(), &ca, &args, &script);
        assert_eq!(code, 0, "{err}");
        files.push(std::fs::read_to_string(s.path(name)).unwrap());
    }
    eprintln!("forgetful capture of a release download:\n{}", files[0]);
    assert_eq!(files[0], files[1]);
    let entries = eval_content(&s.path("one.nix"));
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let only = entry(&entries, &release);
    assert_eq!(only["status"], 200);
    assert_eq!(only["file"]["url"], release.as_str());
    assert_eq!(only["file"]["hash"], sri(&want));
    let (code, err) = replay_offline(
        s.dir.path(),
        &["--store", "store", "--strict"],
        &format!("curl -sSf -o replayed '{release}'"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(s.path("replayed")).unwrap(), want);
}

#[test]
fn rejected_sidecars_get_404_are_not_fetched_nor_recorded_nor_missed() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let jar = up.https_url("/bytes/100/lib.jar");
    let sha1 = up.https_url("/bytes/40/lib.jar.sha1");
    let reject = [
        "--plugin-config",
        r#"redirect={"reject": ["\\.(md5|sha1)$"]}"#,
    ];
    let script = format!(
        "curl -sS -o /dev/null -w %{{http_code}} '{sha1}' > sidecar; curl -sSf -o jar '{jar}'"
    );
    let hits = up.hits();
    let mut args = vec!["--store", "store"];
    args.extend(reject);
    let (code, err) = capture(s.dir.path(), &ca, &args, &script);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(s.path("sidecar")).unwrap(), "404");
    assert_eq!(up.hits() - hits, 1, "only the jar went upstream");
    let entries = eval_content(&s.path("proxy_content.nix"));
    assert_eq!(entries.len(), 1, "{entries:#?}");
    entry(&entries, &jar);

    args.push("--strict");
    let (code, err) = replay_offline(s.dir.path(), &args, &script);
    assert_eq!(code, 0, "a rejected URL is no miss: {err}");
    assert_eq!(std::fs::read_to_string(s.path("sidecar")).unwrap(), "404");
}
