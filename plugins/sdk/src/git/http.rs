//! Which requests are git's smart HTTP, and for which repository: the one
//! rule the `git` plugin (which records and answers them) and the `capture`
//! plugin (which leaves them to it) share.

use std::io::Read;

/// The two requests a fetch over smart HTTP makes (gitprotocol-http(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `GET …/info/refs?service=git-upload-pack`: the refs (v0) or the
    /// capabilities (v2).
    Advertisement,
    /// `POST …/git-upload-pack`: `ls-refs` or a fetch.
    UploadPack,
}

/// What the path of every [`smart_http`] request contains (a plugin's
/// request filter).
pub const SMART_PATHS: [&str; 2] = ["/info/refs", "/git-upload-pack"];

/// The service a request is, and its repository's URL (what the client
/// cloned, without `/info/refs` or `/git-upload-pack`); `None` for
/// anything else, the dumb protocol's plain GETs included.
pub fn smart_http(method: &str, url: &str) -> Option<(Service, String)> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match method {
        "GET" | "HEAD" => {
            let repo = path.strip_suffix("/info/refs")?;
            query
                .split('&')
                .any(|p| p == "service=git-upload-pack")
                .then(|| (Service::Advertisement, repo.to_owned()))
        }
        "POST" => {
            let repo = path.strip_suffix("/git-upload-pack")?;
            Some((Service::UploadPack, repo.to_owned()))
        }
        _ => None,
    }
}

/// Whether an exchange was smart HTTP on both sides: a dumb server answers
/// `info/refs?service=git-upload-pack` with its static `info/refs` (any
/// content type but the advertisement's), which is an ordinary download.
pub fn is_smart(method: &str, url: &str, head: &crate::ResponseHead) -> bool {
    match smart_http(method, url) {
        Some((Service::Advertisement, _)) => crate::headers::get(&head.headers, "content-type")
            .is_some_and(|t| t.trim() == super::upload_pack::ADVERTISEMENT_TYPE),
        Some((Service::UploadPack, _)) => true,
        None => false,
    }
}

/// A body as git sent it, decoded when `content-encoding` says gzip (git
/// compresses large requests); `None` when it cannot be decoded.
pub fn decoded(content_encoding: Option<&str>, body: Vec<u8>) -> Option<Vec<u8>> {
    match content_encoding.map(str::trim) {
        None | Some("") | Some("identity") => Some(body),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .ok()?;
            Some(out)
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_http_requests_name_their_repository() {
        let r = "https://example.org/group/repo.git";
        assert_eq!(
            smart_http("GET", &format!("{r}/info/refs?service=git-upload-pack")),
            Some((Service::Advertisement, r.to_owned()))
        );
        assert_eq!(
            smart_http("POST", &format!("{r}/git-upload-pack")),
            Some((Service::UploadPack, r.to_owned()))
        );
        // The dumb protocol and pushes are not ours.
        assert_eq!(smart_http("GET", &format!("{r}/info/refs")), None);
        assert_eq!(
            smart_http("GET", &format!("{r}/info/refs?service=git-receive-pack")),
            None
        );
        assert_eq!(smart_http("POST", &format!("{r}/git-receive-pack")), None);
        assert_eq!(smart_http("GET", &format!("{r}/objects/info/packs")), None);
    }

    #[test]
    fn gzip_requests_are_decoded() {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b"0009done\n").unwrap();
        let gz = z.finish().unwrap();
        assert_eq!(decoded(Some("gzip"), gz).unwrap(), b"0009done\n");
        assert_eq!(decoded(None, b"x".to_vec()).unwrap(), b"x");
        assert_eq!(decoded(Some("br"), b"x".to_vec()), None);
    }
}
