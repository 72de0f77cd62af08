# mkBuildproxyShell: a `buildproxy-shell` command for a dev shell, to try a
# build against its captured downloads by hand (nix-buildproxy's
# mkBuildproxyShell):
#
#   devShells.default = mkShell {
#     packages = [ (mkBuildproxyShell ./proxy_content.nix) ];
#   };
#
# `buildproxy-shell` starts `$SHELL` (or the command it is given) behind the
# replay proxy; when that exits, the proxy lists what was not captured and
# stops. Takes the same arguments as mkBuildproxy.
{
  buildproxy,
  replayArgs,
  shell,
  writeShellScriptBin,
}:
arg:
let
  command = [ "${buildproxy}/bin/buildproxy" ] ++ replayArgs arg;
in
writeShellScriptBin "buildproxy-shell" ''
  if [ "$#" -eq 0 ]; then
    echo "buildproxy: replay shell; downloads are answered from the captured content. Exit the shell when done." >&2
    set -- "''${SHELL:-/bin/sh}"
  fi
  exec ${shell.words command} -- "$@"
''
