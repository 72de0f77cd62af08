//! `pin-cmake-deps`: a buildproxy plugin a packager writes for one project.
//!
//! The project's build downloads CMake files that declare dependencies with
//! `FetchContent_Declare` and follow a branch (`GIT_TAG main`, or an archive
//! of `refs/heads/main`). A branch moves: what the build fetches today is not
//! what it fetched at capture. This plugin rewrites, in every downloaded
//! `*.cmake` file and `CMakeLists.txt`, the declarations of the dependencies
//! named in its config so they name a commit instead:
//!
//! ```text
//! GIT_TAG main                                  ->  GIT_TAG 1a2b3c4
//! …/archive/refs/heads/main.tar.gz              ->  …/archive/1a2b3c4.tar.gz
//! ```
//!
//! Only the named dependency's block changes, which a find/replace rule
//! (`buildproxy --patch`) cannot express when several blocks say `main`.
//!
//! Config: `NAME=COMMIT[,NAME=COMMIT…]`, e.g. `fmt=1a2b3c4,json=9f8e7d6`.

use buildproxy_plugin_sdk::{
    Hooks, Host, Mode, Plugin, Request, ResponseAction, ResponseHead, headers,
};

/// Branches that move; a tag or a commit is left alone.
const BRANCHES: &[&str] = &["main", "master"];

#[derive(Default)]
pub struct PinCmakeDeps {
    /// (dependency name, commit), from the config.
    pins: Vec<(String, String)>,
}

/// `fmt=1a2b3c4,json=9f8e7d6` → pins, or what is wrong with it.
pub fn parse_config(config: &str) -> Result<Vec<(String, String)>, String> {
    let mut pins = Vec::new();
    for item in config.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some((name, commit))
                if !name.trim().is_empty()
                    && !commit.trim().is_empty()
                    && commit.trim().chars().all(|c| c.is_ascii_hexdigit()) =>
            {
                pins.push((name.trim().to_string(), commit.trim().to_string()));
            }
            _ => {
                return Err(format!(
                    "{item:?} is not NAME=COMMIT (a FetchContent name and a hex commit id), \
                     e.g. --plugin pin-cmake-deps.wasm=fmt=1a2b3c4,json=9f8e7d6"
                ));
            }
        }
    }
    if pins.is_empty() {
        return Err("no pins: give NAME=COMMIT[,NAME=COMMIT…], e.g. fmt=1a2b3c4".into());
    }
    Ok(pins)
}

/// The text with the named dependencies pinned, and which names were.
pub fn pin(text: &str, pins: &[(String, String)]) -> (String, Vec<String>) {
    const DECLARE: &str = "FetchContent_Declare(";
    let mut out = String::with_capacity(text.len());
    let mut pinned = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(DECLARE) {
        let open = at + DECLARE.len();
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let end = rest.find(')').unwrap_or(rest.len());
        let (block, after) = rest.split_at(end);
        let name = block.split_whitespace().next().unwrap_or("");
        match pins.iter().find(|(n, _)| n == name) {
            Some((_, commit)) => {
                let new = pin_block(block, commit);
                if new != block {
                    pinned.push(name.to_string());
                }
                out.push_str(&new);
            }
            None => out.push_str(block),
        }
        rest = after;
    }
    out.push_str(rest);
    (out, pinned)
}

/// One declaration's arguments, with branch references made `commit`.
fn pin_block(block: &str, commit: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut previous = "";
    // Split keeping whitespace, so the file's layout is unchanged.
    for piece in block.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        let space = &piece[word.len()..];
        let new = if previous == "GIT_TAG" && BRANCHES.contains(&word) {
            commit.to_string()
        } else {
            BRANCHES.iter().fold(word.to_string(), |w, b| {
                w.replace(
                    &format!("/archive/refs/heads/{b}."),
                    &format!("/archive/{commit}."),
                )
            })
        };
        if !word.is_empty() {
            previous = word;
        }
        words.push(new + space);
    }
    words.concat()
}

/// A plain (not content-encoded) CMake file: the bodies worth asking for.
pub fn wants(url: &str, head: &ResponseHead) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let cmake = path.ends_with(".cmake") || path.ends_with("/CMakeLists.txt");
    let plain = headers::get(&head.headers, "content-encoding").is_none();
    head.status == 200 && plain && cmake
}

impl PinCmakeDeps {
    /// The pinned body, or none if nothing was pinned; counts each pin.
    pub fn pin_body(&self, host: &dyn Host, body: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(body).ok()?;
        let (new, pinned) = pin(text, &self.pins);
        for name in &pinned {
            // Counted by the host across instances; read back in `report`.
            host.count(name, 1);
        }
        (!pinned.is_empty()).then(|| new.into_bytes())
    }
}

impl Plugin for PinCmakeDeps {
    fn configure(&mut self, _host: &dyn Host, _mode: Mode, config: &str) -> Result<(), String> {
        self.pins = parse_config(config)?;
        Ok(())
    }

    /// Only responses (to pin their bodies) and the report: the proxy then
    /// never calls this plugin for a request.
    fn hooks(&self) -> Hooks {
        Hooks::ON_RESPONSE | Hooks::REPORT
    }

    fn on_response(
        &mut self,
        _host: &dyn Host,
        _id: u64,
        req: Request,
        head: ResponseHead,
    ) -> ResponseAction {
        if wants(&req.url, &head) {
            ResponseAction::WantBody
        } else {
            ResponseAction::Pass
        }
    }

    fn on_response_body(
        &mut self,
        host: &dyn Host,
        _id: u64,
        _req: Request,
        _head: ResponseHead,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        self.pin_body(host, &body)
    }

    fn report(&mut self, _host: &dyn Host, counters: Vec<(String, u64)>) -> Vec<String> {
        self.pins
            .iter()
            .map(
                |(name, commit)| match counters.iter().find(|(n, _)| n == name) {
                    Some((_, files)) => format!("pinned {name} to {commit} in {files} download(s)"),
                    None => format!(
                        "{name} was never pinned: no downloaded CMake file declared it on a branch \
                         (FetchContent_Declare({name} … GIT_TAG main)); check the name"
                    ),
                },
            )
            .collect()
    }
}

buildproxy_plugin_sdk::export_plugin!(PinCmakeDeps);

#[cfg(test)]
mod tests {
    use super::*;
    use buildproxy_plugin_sdk::testing::MemoryHost;

    const DEPS: &str = "\
FetchContent_Declare(fmt
  GIT_REPOSITORY https://example.org/fmtlib/fmt.git
  GIT_TAG        main
)
FetchContent_Declare(json
  URL https://example.org/nlohmann/json/archive/refs/heads/main.tar.gz
)
FetchContent_Declare(zlib
  GIT_TAG main
)
";

    fn plugin(config: &str) -> PinCmakeDeps {
        let mut p = PinCmakeDeps::default();
        p.configure(&MemoryHost::default(), Mode::Replay, config)
            .unwrap();
        p
    }

    #[test]
    fn only_the_named_dependencies_are_pinned_and_the_layout_is_kept() {
        let pins = parse_config("fmt=1a2b3c4, json=9f8e7d6").unwrap();
        let (out, pinned) = pin(DEPS, &pins);
        assert_eq!(pinned, ["fmt", "json"]);
        assert!(out.contains("  GIT_TAG        1a2b3c4\n"), "{out}");
        assert!(out.contains("json/archive/9f8e7d6.tar.gz"), "{out}");
        assert!(
            out.contains("FetchContent_Declare(zlib\n  GIT_TAG main\n)"),
            "{out}"
        );
        assert_eq!(
            out.len(),
            DEPS.len() - 2 * "main".len() + "1a2b3c4".len() + "9f8e7d6".len() - "refs/heads/".len()
        );
    }

    #[test]
    fn a_dependency_on_a_tag_is_left_alone() {
        let pins = parse_config("fmt=1a2b3c4").unwrap();
        let text = "FetchContent_Declare(fmt GIT_TAG v10.2.1)";
        assert_eq!(pin(text, &pins), (text.to_string(), vec![]));
    }

    #[test]
    fn the_plugin_asks_only_for_plain_cmake_files_and_reports_what_it_pinned() {
        let head = |enc: Option<&str>| ResponseHead {
            status: 200,
            headers: enc
                .map(|e| vec![("content-encoding".to_string(), e.as_bytes().to_vec())])
                .unwrap_or_default(),
        };
        let url = "https://example.org/proj/cmake/deps.cmake";
        assert!(wants(url, &head(None)));
        assert!(wants(
            "https://example.org/proj/CMakeLists.txt?x=1",
            &head(None)
        ));
        assert!(!wants(url, &head(Some("gzip"))));
        assert!(!wants("https://example.org/x.tar.gz", &head(None)));

        let mut p = plugin("fmt=1a2b3c4,nosuch=abc");
        let host = MemoryHost::default();
        let out = p.pin_body(&host, DEPS.as_bytes()).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("GIT_TAG        1a2b3c4")
        );
        assert_eq!(p.pin_body(&host, b"no declarations here"), None);
        let lines = p.report(&host, host.totals());
        assert_eq!(lines[0], "pinned fmt to 1a2b3c4 in 1 download(s)");
        assert!(
            lines[1].starts_with("nosuch was never pinned"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn a_bad_config_says_what_to_write() {
        for bad in ["", "fmt", "fmt=", "fmt=main"] {
            let err = parse_config(bad).unwrap_err();
            assert!(err.contains("fmt=1a2b3c4"), "{bad:?}: {err}");
        }
    }
}
