# The buildproxy package: the host binary with its bundled plugins, and
# those plugins precompiled for this machine so replay in the sandbox starts
# without compiling WebAssembly.
#
# host/build.rs builds the plugins with a nested `cargo build --target
# wasm32-unknown-unknown`. That works inside this derivation because:
# - nixpkgs' rustc ships the wasm32-unknown-unknown standard library, and
#   links wasm with `lld` from PATH (nixpkgs patches rustc's `rust-lld`
#   default to `lld`), hence `lld` below;
# - the nested cargo runs in the source tree, so it reads the vendoring
#   config cargoSetupHook wrote (every crate in Cargo.lock is vendored,
#   wasm-only ones included), and CARGO_NET_OFFLINE keeps it from ever
#   trying the network;
# - build.rs inherits RUSTC and CARGO from the outer build and drops the
#   host-only flags (RUSTFLAGS, CARGO_BUILD_TARGET, …) before recursing.
{
  lib,
  stdenv,
  rustPlatform,
  lld,
  makeBinaryWrapper,
}:
let
  root = ../.;
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);

  # Only what cargo reads: editing Nix files, docs or examples must not
  # rebuild the package.
  wanted = [
    "Cargo.toml"
    "Cargo.lock"
    "host"
    "plugins"
    "wit"
    "tests"
  ];
  src = builtins.path {
    path = root;
    name = "buildproxy-source";
    filter =
      path: type:
      let
        rel = builtins.substring (builtins.stringLength (toString root) + 1) (-1) (toString path);
        parts = builtins.filter builtins.isString (builtins.split "/" rel);
        top = builtins.head parts;
      in
      builtins.elem top wanted
      # the e2e test target must exist for cargo to read host/Cargo.toml;
      # its Nix fixtures need not.
      && !(top == "tests" && builtins.length parts > 1 && builtins.elemAt parts 1 != "e2e")
      && !(builtins.elem "target" parts);
  };

  plugins = "share/buildproxy/plugins";
in
rustPlatform.buildRustPackage {
  pname = "buildproxy";
  inherit (cargoToml.workspace.package) version;
  inherit src;

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [
    lld
    makeBinaryWrapper
  ];

  env.CARGO_NET_OFFLINE = "true";

  cargoBuildFlags = [
    "--package"
    "buildproxy"
  ];
  # Unit tests of the host and of every plugin (run natively). The
  # end-to-end tests need curl, wget, git, … and a Nix; they run in CI
  # (tests/run.sh).
  cargoTestFlags = [
    "--workspace"
    "--lib"
  ];
  # A unit test that runs an outside program (a real nix-instantiate, say)
  # lives in a module named `needs_tools`: this build has none of them. The
  # e2e test `suite::the_package_check_phase_runs_no_test_that_needs_an_outside_program`
  # runs this selection with an empty PATH and fails if one is missed.
  checkFlags = [
    "--skip"
    "needs_tools::"
  ];
  # Tests bind 127.0.0.1.
  __darwinAllowLocalNetworking = true;

  # Precompiled plugins are only used by a machine whose CPU features match
  # the builder's; any other compiles them at start-up, as without a cache.
  postInstall =
    if stdenv.buildPlatform.canExecute stdenv.hostPlatform then
      ''
        $out/bin/buildproxy plugins --precompile $out/${plugins}
        wrapProgram $out/bin/buildproxy --set-default BUILDPROXY_PLUGIN_CACHE $out/${plugins}
      ''
    else
      "";

  meta = {
    description = "HTTP/HTTPS proxy that captures a build's downloads as Nix fetchurl calls and replays them in the sandbox";
    license = lib.licenses.mit;
    mainProgram = "buildproxy";
    # `replay --detach` follows its shell through a pidfd (Linux).
    platforms = lib.platforms.linux;
  };
}
