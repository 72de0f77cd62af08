//! `--patch RULES.json`: the host's half of the bundled patch plugin.
//!
//! Plugins cannot read files, so the host reads the rules files and every
//! `body_file` they name (relative to the rules file's directory) at start,
//! and hands the lot to the patch plugin as its config string:
//! `[{"source": PATH, "rules": [RULE, ...]}, ...]`, each `body_file` rule
//! carrying the file's bytes as `"body": BASE64`. What a rule means, and
//! whether it is well formed, is the plugin's business: it refuses bad rules
//! at start with the file, the rule number and the fix.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};

/// The bundled plugin the rules go to.
pub const PLUGIN: &str = "patch";

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("reading the patch rules {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a JSON list of patch rules: {reason}\n  \
         Write e.g. [{{\"url\": \"cmake/deps\\\\.cmake$\", \"find\": \"GIT_TAG main\", \"replace\": \"GIT_TAG 1a2b3c4\"}}]"
    )]
    Json { path: PathBuf, reason: String },
    #[error(
        "{path}: rule #{number}: cannot read its body_file {file}: {source}\n  \
         A relative body_file is relative to the directory of {path}."
    )]
    BodyFile {
        path: PathBuf,
        number: usize,
        file: PathBuf,
        source: std::io::Error,
    },
}

/// The patch plugin's config for these rules files, in order.
pub fn config(files: &[PathBuf]) -> Result<String, RulesError> {
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        out.push(json!({
            "source": path.display().to_string(),
            "rules": load(path)?,
        }));
    }
    Ok(Value::Array(out).to_string())
}

fn load(path: &Path) -> Result<Vec<Value>, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let json_err = |reason: String| RulesError::Json {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| json_err(e.to_string()))?;
    let Value::Array(mut rules) = value else {
        return Err(json_err(format!("the top level is {}", kind(&value))));
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, rule) in rules.iter_mut().enumerate() {
        let Some(file) = rule.get("body_file").and_then(Value::as_str) else {
            continue;
        };
        let file = dir.join(file);
        let bytes = std::fs::read(&file).map_err(|source| RulesError::BodyFile {
            path: path.to_path_buf(),
            number: i + 1,
            file: file.clone(),
            source,
        })?;
        if let Some(obj) = rule.as_object_mut() {
            obj.insert(
                "body".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            );
        }
    }
    Ok(rules)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object, not a list",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_files_are_read_relative_to_the_rules_file_and_inlined() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/deps.cmake"), [0u8, 1, 2, 255]).unwrap();
        let rules = dir.path().join("rules.json");
        std::fs::write(
            &rules,
            r#"[{"url": "a", "find": "x", "replace": "y"}, {"url": "b", "body_file": "sub/deps.cmake"}]"#,
        )
        .unwrap();
        let config: Value =
            serde_json::from_str(&config(std::slice::from_ref(&rules)).unwrap()).unwrap();
        assert_eq!(config[0]["source"], rules.display().to_string());
        assert_eq!(config[0]["rules"][0]["find"], "x");
        assert_eq!(config[0]["rules"][1]["body"], "AAEC/w==");
        assert_eq!(config[0]["rules"][1]["body_file"], "sub/deps.cmake");
    }

    #[test]
    fn a_missing_body_file_names_the_rules_file_the_rule_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.json");
        std::fs::write(
            &rules,
            r#"[{"url": "a", "find": "x", "replace": "y"}, {"url": "b", "body_file": "gone.txt"}]"#,
        )
        .unwrap();
        let err = config(&[rules]).unwrap_err().to_string();
        assert!(
            err.contains("rules.json: rule #2") && err.contains("gone.txt"),
            "{err}"
        );
        assert!(err.contains("relative to the directory"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_json_list_says_what_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules.json");
        std::fs::write(&rules, r#"{"url": "a"}"#).unwrap();
        let err = config(std::slice::from_ref(&rules))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a JSON list") && err.contains("an object"),
            "{err}"
        );
        std::fs::write(&rules, "[{").unwrap();
        let err = config(std::slice::from_ref(&rules))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rules.json") && err.contains("\"find\""),
            "{err}"
        );
        let err = config(&[dir.path().join("nope.json")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.json"), "{err}");
    }
}
