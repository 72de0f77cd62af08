# flake.nix's outputs, evaluated against ./nixpkgs-stand-in.nix. `cases`
# are `{ got; want; }` compared by tests/e2e/nix.rs; `replayCheck` is the
# flake's own `checks.<system>.replay`, buildable here because the stand-in
# buildproxy is the cargo-built binary.
{
  binary ? null,
}:
let
  root = ../..;
  flake = import (root + "/flake.nix");
  nixpkgs = import ./nixpkgs-stand-in.nix { inherit binary; };
  self = flake.outputs { inherit self nixpkgs; } // {
    outPath = root;
  };
  system = "x86_64-linux";
  names = builtins.attrNames;
  isDerivation = x: builtins.isAttrs x && (x.type or null) == "derivation";

  # The overlay applied to the stand-in package set.
  base = nixpkgs.legacyPackages.${system};
  final = base.extend self.overlays.default;

  package = self.packages.${system}.buildproxy.buildRustPackageArgs;
  src = package.src;
  example = self.packages.${system}.example.stdenvMkDerivationArgs;
in
{
  replayCheck = self.checks.${system}.replay;

  cases = {
    inputs_are_nixpkgs_only = {
      got = names (builtins.functionArgs flake.outputs);
      want = [
        "nixpkgs"
        "self"
      ];
    };

    every_system_has_every_output = {
      got = map names [
        self.packages
        self.lib
        self.apps
        self.devShells
        self.checks
      ];
      want = builtins.genList (_: [
        "aarch64-linux"
        "x86_64-linux"
      ]) 5;
    };

    packages_are_derivations = {
      got = builtins.mapAttrs (_: isDerivation) self.packages.aarch64-linux;
      want = {
        buildproxy = true;
        buildproxy-capture = true;
        default = true;
        example = true;
      };
    };

    the_overlay_gives_nix_buildproxy_names = {
      got = {
        buildproxy = isDerivation final.buildproxy;
        buildproxy-capture = isDerivation final.buildproxy-capture;
        mkBuildproxy = isDerivation (final.lib.mkBuildproxy ./local-content.nix);
        mkBuildproxyShell = isDerivation (final.lib.mkBuildproxyShell ./local-content.nix);
        # nixpkgs' own lib stays.
        licenses = final.lib ? licenses;
        # the script runs the overlay's buildproxy
        usesOverlayBuildproxy =
          builtins.match ".*'${builtins.unsafeDiscardStringContext final.buildproxy.outPath}/bin/buildproxy' 'replay'.*"
            (final.lib.mkBuildproxy ./local-content.nix).text != null;
      };
      want = {
        buildproxy = true;
        buildproxy-capture = true;
        mkBuildproxy = true;
        mkBuildproxyShell = true;
        licenses = true;
        usesOverlayBuildproxy = true;
      };
    };

    lib_per_system = {
      got = {
        names = names self.lib.${system};
        mkBuildproxy = isDerivation (self.lib.${system}.mkBuildproxy ./local-content.nix);
        attrsetForm = isDerivation (
          self.lib.${system}.mkBuildproxy {
            content = ./local-content.nix;
            strict = true;
          }
        );
      };
      want = {
        names = [
          "fetchGitObjects"
          "importContent"
          "mkBuildproxy"
          "mkBuildproxyShell"
          "mkContent"
          "prepareContent"
        ];
        mkBuildproxy = true;
        attrsetForm = true;
      };
    };

    apps_run_the_packages = {
      got = builtins.mapAttrs (_: app: {
        inherit (app) type;
        program = builtins.match "/nix/store/[a-z0-9]{32}-[^/]+/bin/(.*)" app.program;
      }) self.apps.${system};
      want = {
        default = {
          type = "app";
          program = [ "buildproxy" ];
        };
        buildproxy = {
          type = "app";
          program = [ "buildproxy" ];
        };
        buildproxy-capture = {
          type = "app";
          program = [ "buildproxy-capture" ];
        };
      };
    };

    dev_shells_and_checks = {
      got = {
        devShells = names self.devShells.${system};
        exampleShell = map (p: p.name or p) self.devShells.${system}.example.mkShellArgs.packages;
        checks = names self.checks.${system};
      };
      want = {
        devShells = [
          "default"
          "example"
        ];
        exampleShell = [
          "/usr"
          "buildproxy-capture"
          "buildproxy-shell"
        ];
        checks = [
          "buildproxy"
          "buildproxy-capture"
          "example"
          "replay"
        ];
      };
    };

    the_package_builds_offline_with_wasm_and_precompiles = {
      got = {
        lockFile = package.cargoLock.lockFile == root + "/Cargo.lock";
        offline = package.env.CARGO_NET_OFFLINE;
        lld = builtins.elem base.lld package.nativeBuildInputs;
        precompiles =
          builtins.match ".*buildproxy plugins --precompile [$]out/share/buildproxy/plugins.*wrapProgram [$]out/bin/buildproxy --set-default BUILDPROXY_PLUGIN_CACHE [$]out/share/buildproxy/plugins.*" package.postInstall
          != null;
        version = package.version == (builtins.fromTOML (builtins.readFile (root + "/Cargo.toml"))).workspace.package.version;
        darwinLocalNetworking = package.__darwinAllowLocalNetworking;
      };
      want = {
        lockFile = true;
        offline = "true";
        lld = true;
        precompiles = true;
        version = true;
        darwinLocalNetworking = true;
      };
    };

    the_package_source_is_what_cargo_reads = {
      got = {
        top = names (builtins.readDir src);
        tests = names (builtins.readDir "${src}/tests");
      };
      want = {
        top = [
          "Cargo.lock"
          "Cargo.toml"
          "host"
          "plugins"
          "tests"
          "wit"
        ];
        tests = [ "e2e" ];
      };
    };

    the_example_sources_mkBuildproxy_in_prePatch = {
      got = builtins.match "[[:space:]]*source /nix/store/[a-z0-9]{32}-buildproxy[[:space:]]*" example.prePatch != null;
      want = true;
    };
  };
}
