# prepareContent: a `proxy_content.nix` -> the file `buildproxy replay
# --content` starts from in constant time (see importContent for the
# accepted forms).
#
# The content JSON is checked and indexed once, by `buildproxy prepare` in
# this derivation, instead of at every replay start: parsing, resolving
# every body and building the lookup table grow with the content (a second
# at 100,000 entries), and Nix caches this output like any other. A bad
# entry fails this build, naming the entry and the fix.
#
# Evaluation cost is what the issue of speed is about here: Nix hashes and
# rewrites a derivation's whole environment several times while
# instantiating it, so the JSON (the bulk: headers, URLs) goes in as a plain
# file (`toFile`, hashed once) rather than as a derivation's text, and the
# bodies become this derivation's inputs through `bodies` alone (their
# store paths; passed as a file, as an environment variable that large
# would exceed the kernel's limit). Same JSON as mkContent's.
{ buildproxy, importContent }:
content:
let
  entries = importContent content;
  # Its store paths are only text here; `bodies` makes them dependencies.
  json = builtins.toFile "proxy_content.json" (
    builtins.unsafeDiscardStringContext (builtins.toJSON entries)
  );
in
builtins.derivation {
  name = "proxy_content.prepared";
  system = buildproxy.system or builtins.currentSystem;
  builder = "${buildproxy}/bin/buildproxy";
  args = [
    "prepare"
    json
    "--output"
    (builtins.placeholder "out")
  ];
  bodies = map (e: e.file) (builtins.filter (e: e.file != null) entries);
  passAsFile = [ "bodies" ];
}
