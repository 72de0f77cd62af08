# A proxy_content.nix fetched the way a package fetches it: `mkContent`
# builds every body's fixed-output derivation (with network, against the
# test's local servers) and writes the replay JSON naming them. A hash that
# does not match what the fetcher downloads fails the build. Driven by
# tests/e2e/registries.rs.
#
#   content: a proxy_content.nix (absolute path), written by `capture`
{ content }:
let
  pkgs = import ./stand-ins.nix { };
  lib = import ../../nix pkgs;
in
lib.mkContent (/. + content)
