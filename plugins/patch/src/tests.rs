use super::*;
use buildproxy_plugin_sdk::testing::MemoryHost;

const DEPS: &str = "https://example.org/proj/cmake/deps.cmake";
const CMAKE: &str = "FetchContent_Declare(fmt\n  GIT_REPOSITORY https://example.org/fmt.git\n  GIT_TAG main\n)\nFetchContent_Declare(json\n  GIT_TAG main\n)\n";

/// The config the host writes for one RULES.json.
fn config(rules: &str) -> String {
    format!(r#"[{{"source": "rules.json", "rules": {rules}}}]"#)
}

fn patch(rules: &str) -> Patch {
    let mut p = Patch::default();
    p.configure(&MemoryHost::default(), Mode::Replay, &config(rules))
        .unwrap_or_else(|e| panic!("{e}"));
    p
}

fn rejected(rules: &str) -> String {
    Rules::parse(&config(rules)).expect_err("the rules are invalid")
}

fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
    ResponseHead {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
    }
}

#[test]
fn a_literal_rule_replaces_every_occurrence_on_matching_urls_only() {
    let p = patch(
        r#"[{"url": "cmake/deps\\.cmake$", "find": "GIT_TAG main", "replace": "GIT_TAG 1a2b3c4"}]"#,
    );
    let host = MemoryHost::default();
    let out = p.patch(&host, DEPS, CMAKE.as_bytes()).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("GIT_TAG 1a2b3c4").count(), 2, "{text}");
    assert!(!text.contains("GIT_TAG main"));
    assert_eq!(
        p.patch(&host, "https://example.org/other.cmake", CMAKE.as_bytes()),
        None
    );
}

#[test]
fn a_literal_rule_takes_dollars_and_regex_characters_literally() {
    let p = patch(r#"[{"url": "x", "find": "a.b*(c)", "replace": "$1 ${x} $$"}]"#);
    let out = p
        .patch(&MemoryHost::default(), "http://x/", b"a.b*(c) axbbc")
        .unwrap();
    assert_eq!(out, b"$1 ${x} $$ axbbc");
}

#[test]
fn a_regex_rule_expands_numbered_and_named_groups() {
    let p = patch(
        r#"[{"url": "deps", "regex": "(GIT_REPOSITORY https://example\\.org/)(?P<name>\\w+)\\.git", "replace": "${1}mirror/${name}.git"}]"#,
    );
    let out = p
        .patch(&MemoryHost::default(), DEPS, CMAKE.as_bytes())
        .unwrap();
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("GIT_REPOSITORY https://example.org/mirror/fmt.git")
    );
}

#[test]
fn a_body_rule_replaces_the_whole_body_with_the_bytes_the_host_read() {
    // "AAEC/w==" is the bytes 0, 1, 2, 255: body files may be binary.
    let p = patch(r#"[{"url": "deps", "body_file": "deps.cmake", "body": "AAEC/w=="}]"#);
    assert_eq!(
        p.patch(&MemoryHost::default(), DEPS, CMAKE.as_bytes())
            .unwrap(),
        vec![0, 1, 2, 255]
    );
}

#[test]
fn rules_apply_in_order_each_to_the_output_of_the_one_before() {
    let p = patch(
        r#"[{"url": "deps", "find": "main", "replace": "dev"},
            {"url": "deps", "regex": "GIT_TAG (dev)", "replace": "GIT_TAG pinned-$1"},
            {"url": "nothing-matches-this", "find": "GIT", "replace": "git"}]"#,
    );
    let out = String::from_utf8(
        p.patch(&MemoryHost::default(), DEPS, CMAKE.as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out.matches("GIT_TAG pinned-dev").count(), 2, "{out}");
}

#[test]
fn a_rule_that_finds_nothing_leaves_the_body_alone() {
    let p = patch(r#"[{"url": "deps", "find": "GIT_TAG v1", "replace": "x"}]"#);
    assert_eq!(
        p.patch(&MemoryHost::default(), DEPS, CMAKE.as_bytes()),
        None
    );
}

#[test]
fn only_plain_200s_to_get_or_head_on_matching_urls_are_asked_for() {
    let p = patch(r#"[{"url": "deps", "find": "a", "replace": "b"}]"#);
    let host = MemoryHost::default();
    assert!(p.wants(&host, "GET", DEPS, &head(200, &[])));
    assert!(p.wants(
        &host,
        "HEAD",
        DEPS,
        &head(200, &[("content-encoding", "identity")])
    ));
    assert!(!p.wants(&host, "GET", DEPS, &head(404, &[])));
    assert!(!p.wants(&host, "GET", DEPS, &head(304, &[])));
    assert!(!p.wants(&host, "POST", DEPS, &head(200, &[])));
    assert!(!p.wants(&host, "GET", "https://example.org/x", &head(200, &[])));
    assert!(!p.wants(
        &host,
        "GET",
        DEPS,
        &head(200, &[("content-encoding", "gzip")])
    ));
    assert_eq!(host.totals(), vec![("encoded#0".to_string(), 1)]);
    assert!(!Patch::default().wants(&host, "GET", DEPS, &head(200, &[])));
}

#[test]
fn the_report_names_each_rule_that_changed_nothing_and_why() {
    let p = patch(
        r#"[{"url": "deps", "find": "GIT_TAG main", "replace": "GIT_TAG abc"},
            {"url": "deps", "find": "GIT_TAG v9", "replace": "GIT_TAG abc"},
            {"url": "other\\.cmake", "regex": "x(y)", "replace": "$1"},
            {"url": "zipped", "find": "a", "replace": "b"}]"#,
    );
    let host = MemoryHost::default();
    p.patch(&host, DEPS, CMAKE.as_bytes()).unwrap();
    p.wants(
        &host,
        "GET",
        "https://e/zipped",
        &head(200, &[("content-encoding", "br")]),
    );
    let lines = p.summarize(&host.totals());
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0], "patched 1 responses; 1 of 4 rules applied");
    assert!(
        lines[1].starts_with("rules.json: rule #2 (url \"deps\") matched nothing"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("matched 1 response(s), but the text \"GIT_TAG v9\" occurred in none"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("rules.json: rule #3"), "{}", lines[2]);
    assert!(
        lines[2].contains("no response's URL matched"),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("content-encoded"), "{}", lines[3]);
}

#[test]
fn counters_from_several_instances_add_up_in_the_report() {
    // Two instances, one host: the host sums, so a hit in either counts.
    let rules = r#"[{"url": "deps", "find": "GIT_TAG main", "replace": "x"}]"#;
    let (a, b) = (patch(rules), patch(rules));
    let host = MemoryHost::default();
    a.patch(&host, DEPS, CMAKE.as_bytes());
    assert_eq!(
        b.summarize(&host.totals()),
        vec!["patched 1 responses; 1 of 1 rules applied"]
    );
}

#[test]
fn no_rules_means_no_opinion_and_nothing_to_report() {
    let mut p = Patch::default();
    p.configure(&MemoryHost::default(), Mode::Replay, "")
        .unwrap();
    assert!(p.summarize(&[]).is_empty());
    // Not even asked: every response would cost a call that hears `pass`.
    assert_eq!(p.hooks(), Hooks::empty());
    let rules = r#"[{"url": "deps", "find": "a", "replace": "b"}]"#;
    assert_eq!(patch(rules).hooks(), Hooks::ON_RESPONSE | Hooks::REPORT);
}

#[test]
fn bad_rules_are_refused_naming_the_file_the_rule_and_the_fix() {
    for (rules, expect) in [
        (
            r#"[{"url": "(", "find": "a", "replace": "b"}]"#,
            "\"url\" is not a valid regex",
        ),
        (
            r#"[{"url": "x", "regex": "(", "replace": "b"}]"#,
            "\"regex\" is not a valid regex",
        ),
        (
            r#"[{"url": "x", "fnd": "a", "replace": "b"}]"#,
            "unknown key \"fnd\"",
        ),
        (r#"[{"find": "a", "replace": "b"}]"#, "no \"url\""),
        (
            r#"[{"url": "x", "find": "a"}]"#,
            "\"find\" without \"replace\"",
        ),
        (
            r#"[{"url": "x", "find": "a", "regex": "b", "replace": "c"}]"#,
            "one action",
        ),
        (r#"[{"url": "x"}]"#, "no action"),
        (
            r#"[{"url": "x", "find": "", "replace": "c"}]"#,
            "\"find\" is empty",
        ),
        (
            r#"[{"url": "x", "find": 3, "replace": "c"}]"#,
            "must be a JSON string",
        ),
        (
            r#"[{"url": "x", "body_file": "f"}]"#,
            "not from a plugin config",
        ),
        (
            r#"[{"url": "x", "body_file": "f", "body": "", "replace": "c"}]"#,
            "remove it",
        ),
        (
            r#"[{"url": "x", "regex": "(a)", "replace": "$1b"}]"#,
            "${1}text",
        ),
        (
            r#"[{"url": "x", "regex": "(a)", "replace": "${name}"}]"#,
            "not a group",
        ),
        (r#"["x"]"#, "not a JSON object"),
    ] {
        let err = rejected(rules);
        assert!(err.starts_with("rules.json: rule #1"), "{rules}: {err}");
        assert!(
            err.contains(expect),
            "{rules}: expected {expect:?} in {err}"
        );
    }
    assert!(
        Rules::parse("GIT_TAG")
            .unwrap_err()
            .contains("--patch RULES.json")
    );
}

#[test]
fn valid_group_references_and_literal_dollars_are_accepted() {
    for replace in [
        "$1", "${1}x", "$0", "${name}", "$name", "$$1", "cost: $", "$ 5",
    ] {
        let rules = format!(
            r#"[{{"url": "x", "regex": "(?P<name>a)", "replace": {}}}]"#,
            serde_json::to_string(replace).unwrap()
        );
        Rules::parse(&config(&rules)).unwrap_or_else(|e| panic!("{replace}: {e}"));
    }
}

#[test]
fn rules_from_several_files_keep_their_order_and_their_file_in_messages() {
    let cfg = r#"[{"source": "a.json", "rules": [{"url": "deps", "find": "main", "replace": "one"}]},
                 {"source": "b.json", "rules": [{"url": "deps", "find": "one", "replace": "two"}, {"url": "nope", "find": "a", "replace": "b"}]}]"#;
    let rules = Rules::parse(cfg).unwrap();
    let out = rules.apply(DEPS, CMAKE.as_bytes(), |_, _| {}).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("GIT_TAG two"));
    assert_eq!(rules.rules[2].label, "b.json: rule #2 (url \"nope\")");
}
