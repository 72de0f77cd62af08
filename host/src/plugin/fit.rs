//! Why a component does not fit `wit/plugin.wit`, in words its author can
//! act on. wasmtime's link errors name the first missing item; a plugin
//! author needs the cause (built with WASI, against another version of the
//! interface, without `export_plugin!`) and the change to make.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The interface this host speaks.
pub const PACKAGE: &str = "buildproxy:plugin";
pub const VERSION: &str = "0.2.1";
/// Versions of one track link: a later 0.2 only adds, and wasmtime's
/// linker matches a plugin's 0.2.0 names to this host's 0.2.1.
const TRACK: &str = "0.2.";

/// The last number of `version` when it is of this host's track.
fn patch(version: &str) -> Option<u32> {
    version.strip_prefix(TRACK)?.parse().ok()
}

/// Whether a plugin built against `version` is of this host's track.
fn same_track(version: &str) -> bool {
    patch(version).is_some()
}

/// What a plugin may import: the interfaces the host implements.
const IMPORTS: &[&str] = &[
    "types",
    "log",
    "inventory",
    "counters",
    "report",
    "exchange-state",
    "requests",
];
/// The functions of the `hooks` export, all required.
const HOOKS: &[&str] = &[
    "configure",
    "on-request",
    "on-request-body",
    "on-response",
    "on-response-body",
    "on-complete",
    "report",
];

/// `buildproxy:plugin/NAME@VERSION` → (NAME, VERSION).
fn ours(item: &str) -> Option<(&str, &str)> {
    let rest = item.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

fn other_version(version: &str, item: &str) -> String {
    let v = if version.is_empty() {
        "an unversioned interface".to_string()
    } else {
        format!("{PACKAGE}@{version}")
    };
    let moving = if version == "0.1.0" {
        " (from 0.1.0: sentences counted with `count` become `Host::tell`, a Host you \
         implement needs `tell`, `state` and `set_state`; see \"Moving from 0.1.0\" in \
         docs/plugins.md)"
    } else {
        ""
    };
    format!(
        "it was built against {v} ({item}), and this buildproxy speaks {PACKAGE}@{VERSION}. \
         Rebuild it with the buildproxy-plugin-sdk of this buildproxy (or its wit/plugin.wit){moving}"
    )
}

/// The reason a component cannot be linked, with the fix; none when the
/// component looks right (then wasmtime's own message is all there is).
pub fn diagnose(engine: &Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let mut newer = None;
    for (name, _) in ty.imports(engine) {
        if name.starts_with("wasi:") {
            return Some(format!(
                "it imports {name}, and plugins get no WASI: build it with \
                 `--target wasm32-unknown-unknown` (not a wasi target), without files, clocks, \
                 environment or randomness"
            ));
        }
        match ours(name) {
            Some((_, version)) if !same_track(version) => {
                return Some(other_version(version, name));
            }
            Some((iface, version)) if IMPORTS.contains(&iface) => {
                if patch(version) > patch(VERSION) {
                    newer = Some(format!(
                        "it was built against {PACKAGE}@{version} ({name}), newer than this \
                         buildproxy's {VERSION}, and may use what this one lacks: run a \
                         buildproxy that speaks {version}, or rebuild it with the \
                         buildproxy-plugin-sdk of this one"
                    ));
                }
            }
            _ => {
                return Some(format!(
                    "it imports {name}, which buildproxy does not provide: a plugin may import \
                     only {PACKAGE}/{{{}}}@{VERSION}",
                    IMPORTS.join(",")
                ));
            }
        }
    }
    let exports: Vec<(String, ComponentItem)> = ty
        .exports(engine)
        .map(|(n, e)| (n.to_string(), e.ty))
        .collect();
    let hooks = format!("{PACKAGE}/hooks@{VERSION}");
    let Some((_, item)) = exports
        .iter()
        .find(|(n, _)| ours(n).is_some_and(|(i, v)| i == "hooks" && same_track(v)))
    else {
        if let Some((name, (_, version))) = exports
            .iter()
            .find_map(|(n, _)| Some((n, ours(n).filter(|(i, _)| *i == "hooks")?)))
        {
            return Some(other_version(version, name));
        }
        let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
        return Some(format!(
            "it does not export {hooks} (it exports: {}). In Rust, implement \
             buildproxy_plugin_sdk::Plugin for a type and add `export_plugin!(Type);`",
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    let ComponentItem::ComponentInstance(instance) = item else {
        return Some(format!("its export {hooks} is not an interface instance"));
    };
    let funcs: Vec<&str> = instance.exports(engine).map(|(n, _)| n).collect();
    let missing: Vec<&str> = HOOKS
        .iter()
        .copied()
        .filter(|h| !funcs.contains(h))
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "its hooks lack {}: it was built against an older wit/plugin.wit. Rebuild it with the \
             buildproxy-plugin-sdk of this buildproxy (its defaults provide every hook)",
            missing.join(", ")
        ));
    }
    newer
}

#[cfg(test)]
mod tests {
    use crate::plugin::{Limits, PluginError, Runtime, chain};
    use wit_component::{ComponentEncoder, StringEncoding};
    use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve};

    const WIT: &str = include_str!("../../../wit/plugin.wit");

    /// A component of world `plugin` in `wit` whose functions all trap: it
    /// only has to link (or not).
    fn component(wit: &str) -> Vec<u8> {
        let mut resolve = Resolve::default();
        let pkg = resolve.push_source("plugin.wit", wit).unwrap();
        let world = resolve.select_world(&[pkg], Some("plugin")).unwrap();
        let mut module = wit_component::dummy_module(
            &resolve,
            world,
            ManglingAndAbi::Legacy(LiftLowerAbi::Sync),
        );
        wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .unwrap();
        ComponentEncoder::default()
            .module(&module)
            .unwrap()
            .validate(true)
            .encode()
            .unwrap()
    }

    fn link_error(wit: &str) -> String {
        let runtime = Runtime::new(Limits::default(), None).unwrap();
        match chain::link(&runtime, "mine", &component(wit), None) {
            Ok(_) => panic!("a component of this WIT links:\n{wit}"),
            Err(e @ PluginError::Link { .. }) => e.to_string(),
            Err(e) => panic!("not a link error: {e}"),
        }
    }

    #[test]
    fn a_component_of_this_wit_links() {
        let runtime = Runtime::new(Limits::default(), None).unwrap();
        chain::link(&runtime, "mine", &component(WIT), None).unwrap();
    }

    #[test]
    fn a_component_of_0_2_0_still_links() {
        let old = WIT
            .replace("@0.2.1", "@0.2.0")
            .replace("answer-recorded: func();", "");
        assert!(!old.contains("answer-recorded: func") && old.contains("plugin@0.2.0;"));
        let runtime = Runtime::new(Limits::default(), None).unwrap();
        chain::link(&runtime, "old", &component(&old), None).unwrap();
    }

    #[test]
    fn a_newer_version_that_does_not_link_says_which_buildproxy_to_run() {
        let newer = WIT.replace("@0.2.1", "@0.2.9").replace(
            "answer-recorded: func();",
            "answer-recorded: func();\n  answer-later: func();",
        );
        let err = link_error(&newer);
        assert!(
            err.contains("built against buildproxy:plugin@0.2.9")
                && err.contains("newer than this buildproxy's 0.2.1")
                && err.contains("run a buildproxy that speaks 0.2.9"),
            "{err}"
        );
    }

    #[test]
    fn another_interface_version_is_named_with_the_fix() {
        let err = link_error(&WIT.replace("@0.2.1", "@0.1.0"));
        assert!(err.contains("plugin mine"), "{err}");
        assert!(
            err.contains("built against buildproxy:plugin@0.1.0")
                && err.contains("speaks buildproxy:plugin@0.2.1")
                && err.contains("Rebuild it with the buildproxy-plugin-sdk of this buildproxy")
                && err.contains("Moving from 0.1.0"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_hook_is_named_with_the_fix() {
        let old = WIT.replace(
            "report: func(counters: list<tuple<string, u64>>) -> list<string>;",
            "",
        );
        assert_ne!(old, WIT, "the WIT still declares report");
        // Built against 0.2.0 as well: the version links, so the hook is
        // what is named.
        let old_version = old
            .replace("@0.2.1", "@0.2.0")
            .replace("answer-recorded: func();", "");
        for wit in [old, old_version] {
            let err = link_error(&wit);
            assert!(
                err.contains("its hooks lack report") && err.contains("older wit/plugin.wit"),
                "{err}"
            );
        }
    }

    #[test]
    fn no_hooks_export_says_how_to_export_them() {
        let err = link_error(&WIT.replace("export hooks;", ""));
        assert!(
            err.contains("does not export buildproxy:plugin/hooks@0.2.1")
                && err.contains("export_plugin!"),
            "{err}"
        );
    }

    #[test]
    fn a_wasi_import_says_to_build_for_wasm32_unknown_unknown() {
        let wit = format!(
            "{}\npackage wasi:cli@0.2.0 {{ interface environment {{ get-arguments: func() -> list<string>; }} }}\n",
            WIT.replace(
                "world plugin {",
                "world plugin {\n  import wasi:cli/environment@0.2.0;"
            )
        );
        let err = link_error(&wit);
        assert!(
            err.contains("imports wasi:cli/environment@0.2.0")
                && err.contains("--target wasm32-unknown-unknown"),
            "{err}"
        );
    }

    #[test]
    fn an_import_the_host_does_not_provide_is_named() {
        let wit = WIT.replace(
            "world plugin {",
            "interface clock { now: func() -> u64; }\nworld plugin {\n  import clock;",
        );
        let err = link_error(&wit);
        assert!(
            err.contains("imports buildproxy:plugin/clock@0.2.1")
                && err.contains("does not provide"),
            "{err}"
        );
    }
}
