# prepareContent: a `proxy_content.nix` -> the file `buildproxy replay
# --content` starts from in constant time (see importContent for the
# accepted forms).
#
# The content JSON (mkContent) is checked and indexed once, by `buildproxy
# prepare` in this derivation, instead of at every replay start: parsing,
# resolving every body and building the lookup table grow with the
# content (a second at 100,000 entries), and Nix caches this output like
# any other. A bad entry fails this build, naming the entry and the fix.
{ buildproxy, mkContent }:
content:
let
  json = mkContent content;
in
builtins.derivation {
  name = "proxy_content.prepared";
  system = buildproxy.system or builtins.currentSystem;
  builder = "${buildproxy}/bin/buildproxy";
  args = [
    "prepare"
    "${json}"
    "--output"
    (builtins.placeholder "out")
  ];
}
