# The few nixpkgs functions the library takes, rebuilt from
# `builtins.derivation` and Nix's own `<nix/fetchurl.nix>`, so the library
# can be evaluated and its scripts built where nixpkgs is not available.
# Builders are /bin/sh with absolute paths: in the sandbox PATH is unset and
# only /nix/store and the `sandbox-paths` (/bin /usr /lib /lib64) exist.
#
# `binary`: an absolute path to a buildproxy executable (the cargo-built
# one); it is added to the store and wrapped like nix/package.nix does.
# Without it, `buildproxy` is a placeholder that is never built.
{
  binary ? null,
}:
let
  system = builtins.currentSystem;

  sh =
    name: script: attrs:
    builtins.derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-ec"
          script
        ];
      }
      // attrs
    );
in
rec {
  # nixpkgs' fetchurl, as far as buildproxy's files use it: Nix's builtin
  # fetcher, or, for `curlOptsList` (request headers that select a
  # representation), curl in a fixed-output derivation the way nixpkgs'
  # builder calls it (follow redirects, no Accept-Encoding, `--insecure`:
  # the hash is the check), so the headers really reach the server.
  fetchurl =
    args:
    if args ? curlOptsList then
      builtins.derivation {
        name = args.name or (baseNameOf args.url);
        inherit system;
        builder = "/bin/sh";
        args = [
          "-ec"
          ''/usr/bin/curl --location --max-redirs 20 --fail --silent --show-error --insecure --user-agent "curl Nixpkgs-stand-in" "$@" "$url" --output "$out"''
          "fetchurl"
        ]
        ++ args.curlOptsList;
        inherit (args) url;
        outputHash = args.hash or args.sha256;
        outputHashAlgo = if args ? hash then "" else "sha256";
        outputHashMode = "flat";
      }
    else
      import <nix/fetchurl.nix> args;

  # A fetcher that cannot send headers.
  builtinFetchurl = import <nix/fetchurl.nix>;

  writeText =
    name: text:
    sh name ''printf '%s' "$text" > "$out"'' { inherit text; };

  writeShellScript =
    name: text:
    sh name ''
      printf '#!/bin/sh\n%s' "$text" > "$out"
      /bin/chmod +x "$out"
    '' { inherit text; };

  writeShellScriptBin =
    name: text:
    sh name ''
      /bin/mkdir -p "$out/bin"
      printf '#!/bin/sh\n%s' "$text" > "$out/bin/${name}"
      /bin/chmod +x "$out/bin/${name}"
    '' { inherit text; };

  # Like nixpkgs' runCommand, with bash and the host's /usr/bin for tools.
  runCommand =
    name: env: script:
    builtins.derivation (
      builtins.removeAttrs env [ "nativeBuildInputs" ]
      // {
        inherit name system;
        builder = "/bin/bash";
        args = [
          "-euc"
          ''
            export PATH=/usr/bin:/bin
            ${script}
          ''
        ];
      }
    );

  # Tools found through PATH=/usr/bin in runCommand.
  curl = "/usr";

  # Like nix/package.nix: the binary, its plugins precompiled at build
  # time, and a wrapper pointing BUILDPROXY_PLUGIN_CACHE at them.
  buildproxy =
    if binary == null then
      sh "buildproxy-placeholder" "exit 1" { }
    else
      sh "buildproxy"
        ''
          /bin/mkdir -p "$out/bin" "$out/share/buildproxy"
          "$binary" plugins --precompile "$out/share/buildproxy/plugins"
          {
            echo '#!/bin/sh'
            echo ": \''${BUILDPROXY_PLUGIN_CACHE:=$out/share/buildproxy/plugins}"
            echo 'export BUILDPROXY_PLUGIN_CACHE'
            echo "exec $binary \"\$@\""
          } > "$out/bin/buildproxy"
          /bin/chmod +x "$out/bin/buildproxy"
        ''
        {
          binary = builtins.path {
            path = /. + binary;
            name = "buildproxy-binary";
          };
        };
}
