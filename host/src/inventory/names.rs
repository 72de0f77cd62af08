//! Nix store names for `fetchurl` calls.
//!
//! nixpkgs' `fetchurl` names its output after the URL (`baseNameOf url`).
//! Many download URLs end in a query string, a percent escape or a slash,
//! which make that name invalid (evaluation fails) or merely surprising, so
//! the writer passes an explicit `name` for them.

/// Longest store name Nix accepts: a store path's base name is at most 211
/// bytes after the 32-character hash and the dash.
pub const MAX_STORE_NAME: usize = 211;

/// Whether Nix accepts `s` as the name part of a store path.
pub fn is_valid_store_name(s: &str) -> bool {
    (1..=MAX_STORE_NAME).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes().all(is_store_name_byte)
}

fn is_store_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+-._?=".contains(&b)
}

/// The name `fetchurl` derives from `url` by itself, if Nix accepts it.
///
/// That is Nix's `baseNameOf` of the whole URL string, query included: the
/// text after the last `/`, ignoring one trailing `/`.
pub fn url_store_name(url: &str) -> Option<&str> {
    let name = base_name_of(url);
    is_valid_store_name(name).then_some(name)
}

/// Nix's `baseNameOf` on a string (libutil's `baseNameOf`).
pub fn base_name_of(s: &str) -> &str {
    let trimmed = match s.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => s,
    };
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// The `name` to pass to `fetchurl` for `url`, or `None` when its default
/// name is fine.
///
/// Stricter than Nix: a last segment with `%`, `?` or `&`, a leading dot, an
/// empty one (trailing slash) or an overlong one gets a name even when Nix
/// would accept the default, because those defaults are query strings or
/// escapes that make poor file names (and `unpackPhase` picks the unpacker
/// by the name's extension).
pub fn store_name_for(url: &str) -> Option<String> {
    let last = match (url.rfind('/'), url.find("://")) {
        // `scheme://host` has no path, so no last segment to name it by.
        (Some(slash), Some(sep)) if slash == sep + 2 => "",
        (Some(slash), _) => &url[slash + 1..],
        (None, _) => url,
    };
    let plain = !last.is_empty() && !last.contains(['%', '?', '&']) && is_valid_store_name(last);
    if plain {
        return None;
    }
    Some(derive_name(last_path_segment(url)))
}

/// The last non-empty segment of `url`'s path, still percent-encoded.
fn last_path_segment(url: &str) -> &str {
    let rest = match url.find("://") {
        // Skip the authority: the path starts at the next '/'.
        Some(i) => {
            let after = &url[i + 3..];
            match after.find(['/', '?', '#']) {
                Some(j) if after.as_bytes()[j] == b'/' => &after[j..],
                _ => "",
            }
        }
        None => url,
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("")
}

/// A valid store name made from a percent-encoded path segment.
fn derive_name(segment: &str) -> String {
    let decoded = percent_decode(segment);
    // '?' is legal for Nix but still confusing in a file name: replace it.
    let mut name: String = decoded
        .iter()
        .map(|&b| {
            if is_store_name_byte(b) && b != b'?' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    let start = name.len() - name.trim_start_matches('.').len();
    name.drain(..start);
    if name.len() > MAX_STORE_NAME {
        name = truncate_keeping_extension(&name);
    }
    if name.is_empty() {
        name = "download".to_owned();
    }
    debug_assert!(is_valid_store_name(&name), "{name}");
    name
}

/// Cuts an ASCII name to [`MAX_STORE_NAME`], keeping a short extension such
/// as `.tar.gz` so unpacking still recognises the file.
fn truncate_keeping_extension(name: &str) -> String {
    const MAX_EXT: usize = 16;
    let tail_start = name.len() - MAX_EXT;
    let ext = match name[tail_start..].find('.') {
        Some(i) => &name[tail_start + i..],
        None => "",
    };
    let mut out = name[..MAX_STORE_NAME - ext.len()].to_owned();
    out.push_str(ext);
    out
}

/// Decodes `%XX` escapes; a malformed escape stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_store_names() {
        assert!(is_valid_store_name("hello-2.12.tar.gz"));
        assert!(is_valid_store_name("a?b=c+d_e"));
        assert!(!is_valid_store_name(""));
        assert!(!is_valid_store_name(".hidden"));
        assert!(!is_valid_store_name("a b"));
        assert!(!is_valid_store_name("a%20b"));
        assert!(!is_valid_store_name("ü"));
        assert!(is_valid_store_name(&"x".repeat(211)));
        assert!(!is_valid_store_name(&"x".repeat(212)));
    }

    #[test]
    fn fetchurl_default_name() {
        assert_eq!(url_store_name("https://e.org/a/b.tar.gz"), Some("b.tar.gz"));
        // baseNameOf ignores one trailing slash.
        assert_eq!(url_store_name("https://e.org/dir/"), Some("dir"));
        assert_eq!(url_store_name("https://e.org/f?x=1"), Some("f?x=1"));
        assert_eq!(url_store_name("https://e.org/f?a=1&b=2"), None);
        assert_eq!(url_store_name("https://e.org/a%20b"), None);
    }

    #[test]
    fn plain_urls_need_no_name() {
        assert_eq!(store_name_for("https://e.org/hello-2.12.tar.gz"), None);
        assert_eq!(store_name_for("https://e.org/x/a=b"), None);
    }

    #[test]
    fn query_strings_get_a_name() {
        assert_eq!(
            store_name_for("https://e.org/dl/pkg.tar.gz?raw=true").as_deref(),
            Some("pkg.tar.gz")
        );
        assert_eq!(
            store_name_for("https://e.org/get?a=1&b=2").as_deref(),
            Some("get")
        );
        assert_eq!(
            store_name_for("https://e.org/?a=b").as_deref(),
            Some("download")
        );
    }

    #[test]
    fn percent_escapes_are_decoded_and_cleaned() {
        assert_eq!(
            store_name_for("https://e.org/My%20File%2B1.zip").as_deref(),
            Some("My_File+1.zip")
        );
        assert_eq!(
            store_name_for("https://e.org/caf%C3%A9.txt").as_deref(),
            Some("caf__.txt")
        );
        assert_eq!(
            store_name_for("https://e.org/%2E%2Erc").as_deref(),
            Some("rc")
        );
    }

    #[test]
    fn trailing_slash_dot_and_empty() {
        assert_eq!(
            store_name_for("https://e.org/pkgs/foo/").as_deref(),
            Some("foo")
        );
        assert_eq!(
            store_name_for("https://e.org/").as_deref(),
            Some("download")
        );
        assert_eq!(store_name_for("https://e.org").as_deref(), Some("download"));
        assert_eq!(
            store_name_for("https://e.org/.gitignore").as_deref(),
            Some("gitignore")
        );
        assert_eq!(
            store_name_for("https://e.org/...").as_deref(),
            Some("download")
        );
    }

    #[test]
    fn long_names_keep_their_extension() {
        let url = format!("https://e.org/{}.tar.gz?x", "a".repeat(300));
        let name = store_name_for(&url).unwrap();
        assert_eq!(name.len(), MAX_STORE_NAME);
        assert!(name.ends_with(".tar.gz"));
        assert!(is_valid_store_name(&name));
        let plain = format!("https://e.org/{}", "b".repeat(250));
        assert_eq!(store_name_for(&plain), Some("b".repeat(211)));
    }
}
