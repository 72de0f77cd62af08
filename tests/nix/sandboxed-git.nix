# A build that clones a git repository over smart HTTPS in the Nix sandbox,
# behind mkBuildproxy's script: the `git` plugin answers the clone from the
# objects `fetchGitObjects` fetched. Driven by tests/e2e/git.rs:
#
#   binary:  the cargo-built buildproxy (absolute path)
#   content: a proxy_content.nix (absolute path), written by `capture`
#   url:     the repository, as the build clones it
{
  binary,
  content,
  url,
}:
let
  pkgs = import ./stand-ins.nix { inherit binary; };
  lib = import ../../nix pkgs;

  # The upstream is on 127.0.0.1, which clients reach directly by default.
  script = lib.mkBuildproxy {
    content = /. + content;
    extraArgs = [ "--proxy-loopback" ];
  };
in
{
  # Built first, on its own: `fetchGitObjects` asks the server for the
  # recorded commits (fixed-output, so with network) and must write bytes
  # with the hash capture recorded.
  content = lib.mkContent (/. + content);

  replay = builtins.derivation {
    name = "buildproxy-sandboxed-git";
    system = builtins.currentSystem;
    builder = "/bin/bash";
    args = [
      "-c"
      ''
        set -eEuo pipefail
        /bin/mkdir "$out"
        source ${script}
        export GIT_CONFIG_NOSYSTEM=1 HOME="$TMPDIR"
        /usr/bin/git clone -q --depth 1 ${url} "$TMPDIR/clone"
        /usr/bin/git -C "$TMPDIR/clone" fetch -q --depth 1 origin tag v2
        /usr/bin/git -C "$TMPDIR/clone" rev-parse HEAD > "$out/head"
        /usr/bin/git -C "$TMPDIR/clone" ls-tree -r HEAD > "$out/tree"
        /usr/bin/git -C "$TMPDIR/clone" rev-parse 'v2^{commit}' > "$out/v2"
      ''
    ];
  };
}
