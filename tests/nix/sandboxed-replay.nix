# A build that downloads in the Nix sandbox, behind mkBuildproxy's script.
# Driven by tests/e2e/nix.rs:
#
#   binary:   the cargo-built buildproxy (absolute path)
#   content:  a proxy_content.nix (absolute path), written by `capture`
#   requests: JSON list of { name, args }: curl arguments, and the file in
#             $out the body goes to
#   direct:   a URL the builder then tries without the proxy
#
# The builder is bash like stdenv's, with `set -eEuo pipefail` and an ERR
# trap: with errtrace on, bash runs `$(…)` in a forked subshell, the case
# where the replay proxy must follow the sourcing shell rather than its
# parent process.
{
  binary,
  content,
  requests,
  direct,
}:
let
  pkgs = import ./stand-ins.nix { inherit binary; };
  lib = import ../../nix pkgs;
  inherit (import ../../nix/internal/shell.nix) words;

  # The upstream is on 127.0.0.1, which clients reach directly by default.
  script = lib.mkBuildproxy {
    content = /. + content;
    extraArgs = [ "--proxy-loopback" ];
  };

  downloads = map (
    r: "/usr/bin/curl --silent --show-error --fail --max-time 30 ${words r.args} --output \"$out/${r.name}\""
  ) (builtins.fromJSON requests);
in
{
  # Built first, on its own: the fetches of the bodies (fixed-output, so
  # with network) happen here, not during the replay build.
  content = lib.mkContent (/. + content);

  replay = builtins.derivation {
    name = "buildproxy-sandboxed-replay";
    system = builtins.currentSystem;
    builder = "/bin/bash";
    args = [
      "-c"
      ''
        set -eEuo pipefail
        trap 'echo "builder: line $LINENO failed" >&2' ERR
        /bin/mkdir "$out"

        source ${script}
        printf '%s\n' "$BUILDPROXY_ADDR" > "$out/proxy-address"

        ${builtins.concatStringsSep "\n" downloads}

        # Without the proxy, the same upstream is out of reach.
        if /usr/bin/curl --noproxy '*' --silent --show-error --max-time 10 --insecure \
            ${words [ direct ]} --output /dev/null 2> "$out/direct.stderr"; then
          echo reached > "$out/direct"
        else
          echo "curl exit $?" > "$out/direct"
        fi
      ''
    ];
  };
}
