//! The command line. Flags shared by every mode live in [`Common`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "buildproxy",
    version,
    about = "Capture a build's downloads as Nix fetchurl calls, and replay them in the sandbox"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run COMMAND (or a shell) behind the proxy and record what it downloads.
    Capture(CaptureArgs),
    /// Answer COMMAND's downloads from captured content, with no network.
    Replay(ReplayArgs),
    /// A plain intercepting proxy: plugins run, nothing is recorded or replayed.
    Proxy(ProxyArgs),
    /// Check a content JSON (what Nix builds from a proxy_content.nix) and
    /// write it prepared for replay, which then starts in constant time.
    Prepare(PrepareArgs),
    /// List the bundled plugins, or precompile them into a directory.
    Plugins(PluginsArgs),
    /// Turn a plugin's core wasm module (what `cargo build --target
    /// wasm32-unknown-unknown` makes) into a component `--plugin` loads, and
    /// check that it fits this buildproxy's interface.
    Component(ComponentArgs),
    /// Say, entry by entry, what will go wrong with a proxy_content.nix
    /// (buildproxy's or nix-buildproxy's), a content JSON or a store, and
    /// how to fix it. Exits 0 when it is sound, 1 when it has errors.
    Check(CheckArgs),
    /// Fetch one commit (or annotated tag) of a git repository over smart
    /// HTTP and write the objects it needs in buildproxy's canonical form,
    /// whose hash depends only on the object IDs: the fixed-output fetcher
    /// of a captured git dependency.
    GitFetch(GitFetchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Address to listen on. The default picks a free loopback port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Allow --listen on an address other machines can reach. They are
    /// refused unless they send the run's credentials (the proxy URL this
    /// run exports); warns.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Refuse every request without the run's credentials, even from the
    /// user who started buildproxy (by default that user's processes are
    /// admitted without them: the JVM cannot send proxy credentials).
    #[arg(long)]
    pub require_secret: bool,
    /// Add a plugin (a WebAssembly component) to the chain, after the
    /// bundled ones; `=CONFIG` passes it a config string. Repeatable.
    #[arg(long = "plugin", value_name = "PATH.wasm[=CONFIG]")]
    pub plugins: Vec<String>,
    /// Start from an empty chain instead of the bundled plugins.
    #[arg(long)]
    pub no_default_plugins: bool,
    /// Set the config string of a plugin in the chain, by name (a bundled
    /// one, e.g. `redirect=flatten`, or a --plugin's file stem). Repeatable;
    /// the last one for a name wins.
    #[arg(long = "plugin-config", value_name = "NAME=CONFIG")]
    pub plugin_configs: Vec<String>,
    /// Rewrite bodies by the rules in RULES.json (a JSON list of
    /// `{"url": REGEX, "find"|"regex": …, "replace": …}` or
    /// `{"url": REGEX, "body_file": PATH}`), with the bundled patch plugin.
    /// Repeatable; rules apply in order. See docs/plugins.md.
    #[arg(long = "patch", value_name = "RULES.json")]
    pub patches: Vec<PathBuf>,
    /// Use this CA certificate (PEM) instead of a fresh one per run.
    #[arg(long, requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The key of --ca-cert (PKCS#8 PEM).
    #[arg(long, requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Wall-clock budget of one plugin hook call.
    #[arg(long, default_value_t = 1000)]
    pub plugin_deadline_ms: u64,
    /// Memory one plugin instance may use.
    #[arg(long, default_value_t = 256)]
    pub plugin_memory_mib: usize,
    /// Instances of one plugin at most, so at most this many of its hook
    /// calls at once (each may use --plugin-memory-mib).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub plugin_instances: u32,
    /// Largest body buffered for a plugin that asks for one.
    #[arg(long, default_value_t = 64)]
    pub plugin_body_limit_mib: usize,
    /// Compiled-plugin cache directory [default: $XDG_CACHE_HOME/buildproxy/plugins].
    #[arg(long, env = "BUILDPROXY_PLUGIN_CACHE")]
    pub plugin_cache: Option<PathBuf>,
    /// Seconds to wait for a connection to an upstream.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub connect_timeout_secs: f64,
    /// Seconds to wait from sending a request upstream to its response
    /// head; past it the client gets a 504.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub response_timeout_secs: f64,
    /// Seconds an upstream body may send nothing, mid-transfer, before the
    /// download fails (and is not recorded).
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub idle_timeout_secs: f64,
    /// Seconds a client has to send a request head; an idle or stalled
    /// connection is closed after it.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub client_header_timeout_secs: f64,
    /// Send loopback traffic (localhost, 127.0.0.1, ::1) through the proxy
    /// too; by default clients reach loopback directly.
    #[arg(long)]
    pub proxy_loopback: bool,
    /// Print `export` lines for the client environment on stdout.
    #[arg(long)]
    pub print_env: bool,
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub common: Common,
    /// The file to write (nix-buildproxy's format).
    #[arg(long, short, default_value = "proxy_content.nix")]
    pub output: PathBuf,
    /// Also keep every captured body in DIR, content-addressed, so replay
    /// works without Nix (`replay --store DIR`).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Keep the entries already in the output file and add the new ones.
    #[arg(long)]
    pub merge: bool,
    /// Write the output file from the journal an interrupted capture left
    /// (`<output>.journal`), and exit. A plain capture does this too before
    /// it starts.
    #[arg(long, conflicts_with = "command")]
    pub recover: bool,
    /// After the command, download every recorded body again the way Nix's
    /// fetchurl will (no Accept-Encoding, the entry's recorded request
    /// headers, redirects followed) and report each entry whose bytes
    /// differ, with the fix; the run then fails (exit 1 if the command
    /// succeeded).
    #[arg(long)]
    pub verify: bool,
    /// Trust this CA for upstream servers too (PEM). Repeatable.
    #[arg(long = "upstream-ca", value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,
    /// The command to run; a shell when absent.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: Common,
    /// The JSON Nix builds from a proxy_content.nix (`mkContent`), or the
    /// file `buildproxy prepare` makes from it (`prepareContent`).
    #[arg(long, required_unless_present = "store", conflicts_with = "store")]
    pub content: Option<PathBuf>,
    /// A directory written by `capture --store`.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Besides /nix/store, directories `--content` files may point into.
    #[arg(long = "allow-root", value_name = "DIR")]
    pub allow_roots: Vec<PathBuf>,
    /// Exit non-zero when any request was not in the content.
    #[arg(long)]
    pub strict: bool,
    /// Start in the background, print `export` lines, return once listening.
    /// The proxy exits when the calling process (the shell) exits.
    #[arg(long, conflicts_with = "command")]
    pub detach: bool,
    /// Internal: serve until this process exits (used by --detach).
    #[arg(long, hide = true)]
    pub serve_for_pid: Option<i32>,
    /// The command to run; with neither this nor --detach, serve until
    /// interrupted.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Trust this CA for upstream servers too (PEM). Repeatable.
    #[arg(long = "upstream-ca", value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,
    /// The command to run; with none, serve until interrupted.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// The content JSON (`mkContent`'s output).
    #[arg(value_name = "CONTENT.json")]
    pub content: PathBuf,
    /// The prepared file to write (`replay --content` reads it).
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Besides /nix/store, directories the content's files may point into.
    #[arg(long = "allow-root", value_name = "DIR")]
    pub allow_roots: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PluginsArgs {
    /// Compile the bundled plugins into DIR (for packaging: point
    /// BUILDPROXY_PLUGIN_CACHE at it and start-up does not compile).
    #[arg(long, value_name = "DIR")]
    pub precompile: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ComponentArgs {
    /// The core module, e.g. target/wasm32-unknown-unknown/release/my_plugin.wasm.
    #[arg(value_name = "IN.wasm")]
    pub input: PathBuf,
    /// The component to write.
    #[arg(value_name = "OUT.wasm")]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A proxy_content.nix, a content JSON (`*.json`), or a store directory.
    #[arg(value_name = "FILE", required_unless_present = "store")]
    pub file: Option<PathBuf>,
    /// A directory written by `capture --store` (its bodies are hashed).
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    pub store: Option<PathBuf>,
    /// Download every body the proxy_content.nix FILE names the way Nix's
    /// fetchurl will (no Accept-Encoding, the entry's request headers,
    /// redirects followed) and list each whose bytes differ from its hash,
    /// with the fix; exit 1 if any does.
    #[arg(long, requires = "file", conflicts_with = "store")]
    pub fetch: bool,
    /// With --fetch: trust this CA for upstream servers too (PEM). Repeatable.
    #[arg(long = "upstream-ca", value_name = "PEM", requires = "fetch")]
    pub upstream_ca: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GitFetchArgs {
    /// The repository's URL, as given to `git clone`.
    #[arg(value_name = "URL")]
    pub url: String,
    /// The full IDs of the commits or annotated tags (one file holds them
    /// all, each object once).
    #[arg(value_name = "REV", required = true)]
    pub revs: Vec<String>,
    /// The file to write.
    #[arg(long, short)]
    pub output: std::path::PathBuf,
    /// Trust this CA for the server too (PEM). Repeatable.
    #[arg(long = "upstream-ca", value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,
    /// Do not check who signed the server's certificate, as nixpkgs'
    /// fetchurl without a CA bundle: for a fixed-output derivation, whose
    /// output Nix checks against its hash.
    #[arg(long)]
    pub insecure: bool,
}
