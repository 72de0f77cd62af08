# fetchGitObjects: the fixed-output fetch of the objects of some commits (or
# annotated tags) of a git repository, in buildproxy's canonical form, as
# the `git` plugin recorded them during capture:
#
#   fetchGitObjects { url = "https://…/repo.git"; revs = [ "<40 hex>" ]; hash = "sha256-…"; }
#
# The form is the objects sorted by ID, uncompressed, each checked against
# its ID (ARCHITECTURE.md, "git over smart HTTP"): its hash depends on the
# IDs alone, so it never changes for the same commits, whatever git version
# the server runs or how it packs. `buildproxy git-fetch` asks the server
# for the commits at depth 1 and writes that form.
#
# `cacert`: a CA bundle (a file) to check the server with. Without one, as
# nixpkgs' fetchurl without `cacert`, the server's certificate is not
# checked: the output's hash is the check.
{
  buildproxy,
  cacert ? null,
}:
{
  url,
  revs,
  hash,
  name ? "git-objects-${builtins.substring 0 12 (builtins.head revs)}",
}:
builtins.derivation {
  inherit name;
  system = buildproxy.system or builtins.currentSystem;
  builder = "${buildproxy}/bin/buildproxy";
  args = [
    "git-fetch"
    url
  ]
  ++ revs
  ++ [
    "--output"
    (builtins.placeholder "out")
  ]
  ++ (if cacert == null then [ "--insecure" ] else [ "--upstream-ca" "${cacert}" ]);
  outputHashMode = "flat";
  outputHashAlgo = "sha256";
  outputHash = hash;
  impureEnvVars = [
    "http_proxy"
    "https_proxy"
    "all_proxy"
    "no_proxy"
  ];
  preferLocalBuild = true;
}
