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
  fetchurl = args: import <nix/fetchurl.nix> args;

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
