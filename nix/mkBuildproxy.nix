# mkBuildproxy: a script to `source` early in a build (nix-buildproxy's
# usage, unchanged):
#
#   prePatch = ''
#     source ${mkBuildproxy ./proxy_content.nix}
#   '';
#
# It starts `buildproxy replay --detach` in the background and exports the
# client environment (proxy variables, a CA bundle for the proxy's per-run
# CA). The proxy exits when the shell that sourced the script exits, so
# nothing outlives the build. It names every program by its store path
# (the sandbox has no PATH), needs no network (Nix fetched every body before
# the build started), and fails a `set -e` build if the proxy cannot start.
#
# Takes a content (see importContent) or the options described in
# internal/replayArgs.nix.
{
  buildproxy,
  replayArgs,
  shell,
  writeShellScript,
}:
arg:
let
  command = [ "${buildproxy}/bin/buildproxy" ] ++ replayArgs arg ++ [ "--detach" ];
in
writeShellScript "buildproxy" ''
  # buildproxy: answer this build's downloads from the Nix store.
  # Source this file; the proxy lives as long as this shell.
  # BUILDPROXY_SHELL_PID: `$(…)` may run in a forked subshell that exits at
  # once; the proxy must follow this shell instead.
  if __buildproxy_env=$(BUILDPROXY_SHELL_PID=$$ ${shell.words command}); then
    eval "$__buildproxy_env"
    unset __buildproxy_env
  else
    unset __buildproxy_env
    echo "buildproxy: the replay proxy did not start (see the message above); downloads would fail" >&2
    return 1 2>/dev/null || exit 1
  fi
''
