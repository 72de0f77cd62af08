# mkBuildproxy / mkBuildproxyShell scripts over ./local-content.nix (no
# fetching), built with the cargo-built binary and run outside Nix by
# tests/e2e/nix.rs to watch the proxy's life cycle.
{ binary }:
let
  pkgs = import ./stand-ins.nix { inherit binary; };
  lib = import ../../nix pkgs;
in
{
  script = lib.mkBuildproxy ./local-content.nix;
  patched = lib.mkBuildproxy {
    content = ./local-content.nix;
    patches = [
      {
        url = "hello\\.txt$";
        find = "repository";
        replace = "sandbox";
      }
    ];
  };
  # Not a WebAssembly component: the proxy cannot start.
  broken = lib.mkBuildproxy {
    content = ./local-content.nix;
    plugins = [ ./fixtures/broken.wasm ];
  };
  shell = lib.mkBuildproxyShell {
    content = ./local-content.nix;
    strict = true;
  };
}
