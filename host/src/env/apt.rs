//! apt: a configuration file named by `APT_CONFIG`.
//!
//! apt's https transport (GnuTLS) reads no CA variable, only
//! `Acquire::https::CaInfo`; its proxy comes from the proxy variables.
//! apt reads the file `APT_CONFIG` names first, then `apt.conf.d/` and
//! `apt.conf`, so the system's configuration still applies (and a
//! `CaInfo` set there would win); a user's own `APT_CONFIG` would be
//! hidden by ours, so its text comes first.

use std::path::Path;

/// The file's text: the user's configuration, then our CA.
pub fn config_text(existing: Option<&(std::path::PathBuf, String)>, bundle: &Path) -> String {
    let mut text = String::new();
    if let Some((path, user)) = existing {
        text.push_str(&format!("// from {}\n{user}\n", path.display()));
    }
    text.push_str(&format!(
        "// buildproxy: apt's TLS trusts only this, not SSL_CERT_FILE\n\
         Acquire::https::CaInfo \"{}\";\n",
        bundle.display()
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_apt_config_comes_first_and_our_ca_after() {
        let user = (
            std::path::PathBuf::from("/home/u/apt.conf"),
            "Acquire::Retries \"3\";\n".to_string(),
        );
        let text = config_text(Some(&user), Path::new("/tmp/b.pem"));
        let ours = text.find("Acquire::https::CaInfo \"/tmp/b.pem\";").unwrap();
        assert!(text.find("Acquire::Retries").unwrap() < ours, "{text}");
        assert!(config_text(None, Path::new("/b")).starts_with("// buildproxy"));
    }
}
