# The example's dev shell: `buildproxy-capture` to record the build's
# downloads, `buildproxy-shell` to try the build against them offline.
{
  mkShell,
  curl,
  buildproxy-capture,
  buildproxy-shell,
}:
mkShell {
  packages = [
    curl
    buildproxy-capture
    buildproxy-shell
  ];
}
