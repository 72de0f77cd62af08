# buildproxy-capture: nix-buildproxy's capture command. Starts a shell (or
# runs the command it is given) behind the capturing proxy; when that
# exits, what it downloaded is written to ./proxy_content.nix. Options go to
# `buildproxy capture` (e.g. `--merge` to add to an existing file).
{ buildproxy, writeShellScriptBin }:
writeShellScriptBin "buildproxy-capture" ''
  exec ${buildproxy}/bin/buildproxy capture "$@"
''
