//! `proxy_content.nix`: the capture's result, a list of `fetchurl` calls.
//!
//! Nix, not buildproxy, fetches and checks every body listed here, so the
//! file is the build's whole network inventory in a form Nix can verify and
//! cache. It is meant to be committed: the writer is deterministic (sorted
//! entries and headers, fixed layout) so re-capturing the same downloads
//! changes nothing. The reader ([`parse`]) takes our output and
//! nix-buildproxy's files, including nixfmt-formatted ones, for
//! `capture --merge` and inspection; it understands only the subset of Nix
//! these files use and never evaluates anything.

mod hash;
mod lexer;
mod parser;
mod read;

pub use hash::{Digest, digest_of, hex, sri, to_hex, to_sri};
#[cfg(test)]
pub(crate) use read::parse_str;
pub use read::{parse, parse_each};

use super::{Entry, InventoryError, names, write_atomic_bytes};
use std::fmt::Write as _;
use std::path::Path;

/// Renders `entries` as a `proxy_content.nix`.
///
/// Fails when an entry with a body has no hash (Nix could not check it) or
/// has an invalid store name; nothing is written then.
pub fn render(entries: &[Entry]) -> Result<String, InventoryError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let git = sorted.iter().any(|e| is_git_objects(e));
    let mut out = String::from(if git {
        "{ fetchurl, fetchGitObjects }:\n[\n"
    } else {
        "{ fetchurl }:\n[\n"
    });
    for e in sorted {
        render_entry(&mut out, e)?;
    }
    out.push_str("]\n");
    Ok(out)
}

fn render_entry(out: &mut String, e: &Entry) -> Result<(), InventoryError> {
    // Writing to a String cannot fail; `let _` keeps that out of the way.
    let _ = writeln!(out, "  {{");
    let _ = writeln!(out, "    url = {};", quote(&e.url));
    let _ = writeln!(out, "    method = {};", quote(&e.method));
    let _ = writeln!(out, "    status_code = {};", e.status);
    if e.headers.is_empty() {
        out.push_str("    headers = { };\n");
    } else {
        out.push_str("    headers = {\n");
        for (k, v) in &e.headers {
            let _ = writeln!(out, "      {} = {};", quote(k), quote(v));
        }
        out.push_str("    };\n");
    }
    if !e.request_headers.is_empty() {
        out.push_str("    request_headers = {\n");
        for (k, v) in &e.request_headers {
            let _ = writeln!(out, "      {} = {};", quote(k), quote(v));
        }
        out.push_str("    };\n");
    }
    match &e.body {
        None => out.push_str("    file = null;\n"),
        Some(body) => {
            let unrenderable = |problem: String, fix: &'static str| InventoryError::Unrenderable {
                url: e.url.clone(),
                problem,
                fix,
            };
            let hash = body.hash.as_deref().ok_or_else(|| {
                unrenderable(
                    "it has a body but no recorded hash, so Nix could not verify the download"
                        .into(),
                    "capture it again (the proxy hashes every body it records), \
                     or add its hash from `nix store prefetch-file`",
                )
            })?;
            let hash = to_sri(hash).map_err(|p| {
                unrenderable(p, "record the body's sha256 in SRI form (`sha256-…`)")
            })?;
            let name = match &e.name {
                Some(n) if !names::is_valid_store_name(n) => {
                    return Err(unrenderable(
                        format!("`{n}` is not a valid Nix store name"),
                        "use only letters, digits and `+-._?=`, no leading `.`, at most 211 characters",
                    ));
                }
                Some(n) => Some(n.clone()),
                None => names::store_name_for(e.fetch_url()),
            };
            if is_git_objects(e) {
                render_git_objects(out, e, &hash);
                out.push_str("  }\n");
                return Ok(());
            }
            out.push_str("    file = fetchurl {\n");
            let _ = writeln!(out, "      url = {};", quote(e.fetch_url()));
            if let Some(name) = name {
                let _ = writeln!(out, "      name = {};", quote(&name));
            }
            if !e.request_headers.is_empty() {
                // nixpkgs' fetchurl passes these to curl: it asks for the
                // representation the client got, not curl's default one.
                out.push_str("      curlOptsList = [\n");
                for (k, v) in &e.request_headers {
                    let _ = writeln!(out, "        \"--header\" {}", quote(&format!("{k}: {v}")));
                }
                out.push_str("      ];\n");
            }
            let _ = writeln!(out, "      hash = {};", quote(&hash));
            out.push_str("    };\n");
        }
    }
    out.push_str("  }\n");
    Ok(())
}

/// The keys of the entries the `git` plugin records (the SDK's
/// `git::entry`), under the names this module's readers use.
pub use buildproxy_plugin_sdk::git::entry::{METHOD as GIT_METHOD, WANTS as GIT_WANTS};

/// An entry whose body is git objects in the canonical form, fetched by
/// `fetchGitObjects` (nix/fetchGitObjects.nix) rather than `fetchurl`: a
/// server has no URL that serves that form.
fn is_git_objects(e: &Entry) -> bool {
    e.method == GIT_METHOD && e.body.is_some() && e.request_headers.contains_key(GIT_WANTS)
}

fn render_git_objects(out: &mut String, e: &Entry, hash: &str) {
    out.push_str("    file = fetchGitObjects {\n");
    let _ = writeln!(out, "      url = {};", quote(e.fetch_url()));
    out.push_str("      revs = [\n");
    for rev in e.request_headers[GIT_WANTS].split_whitespace() {
        let _ = writeln!(out, "        {}", quote(rev));
    }
    out.push_str("      ];\n");
    let _ = writeln!(out, "      hash = {};", quote(hash));
    out.push_str("    };\n");
}

/// `s` as a Nix double-quoted string literal.
///
/// Escapes what Nix would otherwise interpret: `"` and `\`, `${` (which
/// would start interpolation), and CR/LF/tab, which Nix would keep but
/// which break the one-line-per-attribute layout (a raw CR would even be
/// read back as LF).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `entries` to `path` atomically: a reader (or a crash) sees the
/// old file or the new one, never a mix, and a failed write leaves the old
/// file as it was.
pub fn write_atomic(path: &Path, entries: &[Entry]) -> Result<(), InventoryError> {
    let text = render(entries)?;
    write_atomic_bytes(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::super::Body;
    use super::*;

    const SRI_A: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    const SRI_B: &str = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

    fn entry(url: &str, status: u16, hash: Option<&str>) -> Entry {
        Entry::for_test("GET", url, status, hash)
    }

    fn sample() -> Vec<Entry> {
        let mut a = entry("https://example.org/a.tar.gz", 200, Some(SRI_A));
        a.headers
            .insert("content-type".into(), "application/gzip".into());
        a.headers.insert("content-length".into(), "5".into());
        let probe = entry("https://example.org/probe", 404, None);
        let mut q = entry("https://example.org/dl?id=1&x=%20", 200, Some(SRI_B));
        q.fetch_url = Some("https://mirror.example.org/dl/file.zip".into());
        let mut named = entry("https://example.org/pkg", 200, Some(SRI_B));
        named.name = Some("pkg-1.0.tar.gz".into());
        named.method = "POST".into();
        let mut json = entry("https://example.org/a.tar.gz", 200, Some(SRI_B));
        json.request_headers
            .insert("accept".into(), "application/json; q=1, */*".into());
        vec![probe, q, a, named, json]
    }

    fn parse_text(src: &str) -> Result<Vec<Entry>, InventoryError> {
        parse_str(Path::new("proxy_content.nix"), src)
    }

    #[test]
    fn renders_the_documented_shape() {
        let text = render(&sample()[..1]).unwrap();
        let a = render(&sample()[2..3]).unwrap();
        assert_eq!(
            text,
            "{ fetchurl }:\n[\n  {\n    url = \"https://example.org/probe\";\n    method = \"GET\";\n    \
             status_code = 404;\n    headers = { };\n    file = null;\n  }\n]\n"
        );
        assert_eq!(
            a,
            format!(
                "{{ fetchurl }}:\n[\n  {{\n    url = \"https://example.org/a.tar.gz\";\n    method = \"GET\";\n    \
                 status_code = 200;\n    headers = {{\n      \"content-length\" = \"5\";\n      \
                 \"content-type\" = \"application/gzip\";\n    }};\n    file = fetchurl {{\n      \
                 url = \"https://example.org/a.tar.gz\";\n      hash = \"{SRI_A}\";\n    }};\n  }}\n]\n"
            )
        );
        assert_eq!(render(&[]).unwrap(), "{ fetchurl }:\n[\n]\n");
    }

    #[test]
    fn git_objects_render_as_fetch_git_objects_and_read_back() {
        let (a, b) = ("1".repeat(40), "2".repeat(40));
        let mut objects = entry("https://example.org/repo.git", 200, Some(SRI_A));
        objects.method = GIT_METHOD.into();
        objects
            .request_headers
            .insert(GIT_WANTS.into(), format!("{a} {b}"));
        let mut refs = entry("https://example.org/repo.git", 200, None);
        refs.method = GIT_METHOD.into();
        refs.request_headers
            .insert("git-refs".into(), "0123".into());
        refs.headers.insert(
            "git-refs".into(),
            format!("{a} HEAD symref-target:refs/heads/Main\n{a} refs/heads/Main"),
        );
        let all = vec![objects, refs, sample().remove(2)];
        let text = render(&all).unwrap();
        assert!(
            text.starts_with("{ fetchurl, fetchGitObjects }:\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "    file = fetchGitObjects {{\n      url = \"https://example.org/repo.git\";\n      \
                 revs = [\n        \"{a}\"\n        \"{b}\"\n      ];\n      hash = \"{SRI_A}\";\n    }};\n"
            )),
            "{text}"
        );
        let mut back = parse_text(&text).unwrap();
        back.sort_by(|x, y| x.sort_key().cmp(&y.sort_key()));
        let mut want = all;
        want.sort_by(|x, y| x.sort_key().cmp(&y.sort_key()));
        assert_eq!(back, want);
        // Without git entries the header stays nix-buildproxy's.
        assert!(render(&sample()).unwrap().starts_with("{ fetchurl }:\n"));
        // A fetchGitObjects without revs says what to add.
        let broken = text.replace(&format!("        \"{a}\"\n        \"{b}\"\n"), "");
        let err = parse_text(&broken).unwrap_err().to_string();
        assert!(err.contains("no list of `revs`"), "{err}");
    }

    #[test]
    fn rendering_is_deterministic() {
        let mut reversed = sample();
        reversed.reverse();
        let once = render(&sample()).unwrap();
        assert_eq!(once, render(&sample()).unwrap());
        assert_eq!(once, render(&reversed).unwrap());
        let urls: Vec<_> = once.lines().filter(|l| l.starts_with("    url")).collect();
        let mut sorted = urls.clone();
        sorted.sort();
        assert_eq!(urls, sorted);
    }

    #[test]
    fn names_and_fetch_urls_are_written() {
        let text = render(&sample()).unwrap();
        // The fetch URL's query makes fetchurl's own name invalid.
        assert!(
            text.contains("      url = \"https://mirror.example.org/dl/file.zip\";\n      hash =")
        );
        assert!(text.contains(
            "      url = \"https://example.org/pkg\";\n      name = \"pkg-1.0.tar.gz\";\n"
        ));
        let q = entry(
            "https://example.org/get.php?f=a%2Fb.tgz&v=2",
            200,
            Some(SRI_A),
        );
        let text = render(&[q]).unwrap();
        assert!(text.contains("      name = \"get.php\";\n"), "{text}");
        for (url, name) in [
            ("https://e.org/pkgs/foo/", "foo"),
            ("https://e.org/My%20File.txt", "My_File.txt"),
            ("https://e.org/?download=1", "download"),
        ] {
            let text = render(&[entry(url, 200, Some(SRI_A))]).unwrap();
            let want = format!("      url = {};\n      name = \"{name}\";\n", quote(url));
            assert!(text.contains(&want), "{text}");
            assert_eq!(parse_text(&text).unwrap()[0].name, None);
        }
    }

    #[test]
    fn a_negotiated_entry_keeps_its_request_headers_and_fetchurl_sends_them() {
        let text = render(&sample()[4..]).unwrap();
        assert!(
            text.contains(
                "    request_headers = {\n      \"accept\" = \"application/json; q=1, */*\";\n    };\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "      curlOptsList = [\n        \"--header\" \"accept: application/json; q=1, */*\"\n      ];\n"
            ),
            "{text}"
        );
        // Two representations of one URL are two entries, in a stable order.
        let both = render(&sample()[2..]).unwrap();
        assert_eq!(
            both.matches("url = \"https://example.org/a.tar.gz\";")
                .count(),
            4
        );
        assert_eq!(parse_text(&both).unwrap().len(), 3);
    }

    #[test]
    fn round_trip() {
        let mut all = sample();
        all.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let text = render(&all).unwrap();
        assert_eq!(parse_text(&text).unwrap(), all);
        // Names the writer computes are not kept as explicit names.
        assert!(
            parse_text(&text)
                .unwrap()
                .iter()
                .all(|e| e.name.is_none() || e.url.ends_with("/pkg"))
        );
    }

    #[test]
    fn escaping_round_trips() {
        let nasty = [
            "https://e.org/a\"b",
            "https://e.org/back\\slash",
            "https://e.org/${HOME}/x",
            "https://e.org/$${x}/$$/${",
            "https://e.org/tail$",
            "https://e.org/ünïcödé/日本",
            "https://e.org/ctl\n\r\t",
        ];
        let entries: Vec<Entry> = nasty.iter().map(|u| entry(u, 200, Some(SRI_A))).collect();
        let text = render(&entries).unwrap();
        assert!(text.contains(r#""https://e.org/\${HOME}/x""#), "{text}");
        assert!(text.contains(r#""https://e.org/a\"b""#));
        assert!(text.contains(r#""https://e.org/back\\slash""#));
        assert!(text.contains(r#""https://e.org/ctl\n\r\t""#));
        let mut want = entries.clone();
        want.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        let back = parse_text(&text).unwrap();
        assert_eq!(back, want);
        assert_eq!(render(&back).unwrap(), text);
    }

    #[test]
    fn reads_nixfmt_formatted_nix_buildproxy_files() {
        let src = r#"{ fetchurl }: [
  {
    url =
      "https://raw.githubusercontent.com/NixOS/nixpkgs/ba563a/pkgs/by-name/he/hello/package.nix";
    file = fetchurl {
      url =
        "https://raw.githubusercontent.com/NixOS/nixpkgs/ba563a/pkgs/by-name/he/hello/package.nix";
      hash = "sha256-dFkeANLBJW1FWfL0d8ciS4siWP7B4z0vGsj9revgWGw=";
    };
  }
]
"#;
        let got = parse_text(src).unwrap();
        let url = "https://raw.githubusercontent.com/NixOS/nixpkgs/ba563a/pkgs/by-name/he/hello/package.nix";
        assert_eq!(
            got,
            vec![entry(
                url,
                200,
                Some("sha256-dFkeANLBJW1FWfL0d8ciS4siWP7B4z0vGsj9revgWGw=")
            )]
        );
    }

    #[test]
    fn reads_old_style_hashes_comments_and_ellipsis() {
        let src = r#"# captured by hand
{ fetchurl, ... }:
[
  /* the empty file */
  {
    url = "https://e.org/empty";
    method = "get";
    headers = { "Content-Type" = "text/plain"; };
    file = fetchurl {
      url = "https://e.org/empty";
      sha256 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    };
  }
  {
    url = "https://e.org/abc";
    file = fetchurl { url = "https://e.org/abc"; sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; };
  }
  { url = "https://e.org/gone"; status_code = 410; file = null; }
]
"#;
        let got = parse_text(src).unwrap();
        assert_eq!(got[0].method, "GET");
        assert_eq!(
            got[0].headers.get("content-type").map(String::as_str),
            Some("text/plain")
        );
        assert_eq!(got[0].body.as_ref().unwrap().hash.as_deref(), Some(SRI_A));
        assert_eq!(got[1].body.as_ref().unwrap().hash.as_deref(), Some(SRI_B));
        assert_eq!((got[2].status, got[2].body.is_none()), (410, true));
    }

    #[test]
    fn entry_errors_name_position_entry_and_fix() {
        let src = "{ fetchurl }:\n[\n  { url = \"https://e.org/x\"; file = fetchurl { url = \"https://e.org/x\"; hash = \"sha512-abc\"; }; }\n]\n";
        let e = parse_text(src).unwrap_err().to_string();
        assert!(e.starts_with("proxy_content.nix:3:"), "{e}");
        assert!(e.contains("entry [0] (https://e.org/x)"), "{e}");
        assert!(e.contains("sha512"), "{e}");
        let e = parse_text("[ { file = null; } ]").unwrap_err().to_string();
        assert!(e.contains("has no `url`"), "{e}");
        let e = parse_text("[ { url = \"u\"; status_code = \"200\"; file = null; } ]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`status_code` is a string, but must be an integer"),
            "{e}"
        );
        let e = parse_text("[ { url = \"u\"; } ]").unwrap_err().to_string();
        assert!(e.contains("has no `file`"), "{e}");
        let e = parse_text("{ fetchurl }:\n[ { url = \"u\" file = null; } ]")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("proxy_content.nix:2:15: expected `;`"), "{e}");
    }

    #[test]
    fn missing_hash_is_an_error_naming_the_url() {
        let mut e = entry("https://e.org/nohash", 200, None);
        e.body = Some(Body {
            hash: None,
            size: Some(3),
            file: None,
        });
        let err = render(&[e]).unwrap_err().to_string();
        assert!(err.contains("https://e.org/nohash"), "{err}");
        assert!(err.contains("no recorded hash"), "{err}");
    }

    #[test]
    fn write_atomic_writes_rendered_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy_content.nix");
        write_atomic(&path, &sample()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            render(&sample()).unwrap()
        );
        assert_eq!(parse(&path).unwrap().len(), 5);
        // A failed render leaves the old file alone.
        let mut bad = entry("https://e.org/x", 200, None);
        bad.body = Some(Body {
            hash: None,
            size: None,
            file: None,
        });
        assert!(write_atomic(&path, &[bad]).is_err());
        assert_eq!(parse(&path).unwrap().len(), 5);
        let missing = dir.path().join("nope/proxy_content.nix");
        let err = write_atomic(&missing, &sample()).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }
}
