# buildproxy's Nix library: from a captured `proxy_content.nix` to a script a
# build sources so that its downloads are answered from the Nix store.
#
# A function of what `callPackage` passes. It uses nothing but `builtins`
# (no nixpkgs `lib`), so it works with any nixpkgs and can be tested with
# stand-ins where nixpkgs is not available. One file per function, each
# taking exactly what it needs; this file only wires them.
{
  buildproxy,
  fetchurl,
  writeText,
  writeShellScript,
  writeShellScriptBin,
  ...
}:
let
  fetchGitObjects = import ./fetchGitObjects.nix { inherit buildproxy; };
  importContent = import ./importContent.nix { inherit fetchurl fetchGitObjects; };
  mkContent = import ./mkContent.nix { inherit importContent writeText; };
  prepareContent = import ./prepareContent.nix { inherit buildproxy importContent; };
  replayArgs = import ./internal/replayArgs.nix { inherit prepareContent writeText; };
  shell = import ./internal/shell.nix;
in
{
  inherit
    fetchGitObjects
    importContent
    mkContent
    prepareContent
    ;
  mkBuildproxy = import ./mkBuildproxy.nix {
    inherit
      buildproxy
      replayArgs
      shell
      writeShellScript
      ;
  };
  mkBuildproxyShell = import ./mkBuildproxyShell.nix {
    inherit
      buildproxy
      replayArgs
      shell
      writeShellScriptBin
      ;
  };
}
