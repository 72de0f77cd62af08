{
  description = "buildproxy: capture a build's downloads as Nix fetchurl calls, replay them in the sandbox";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      # Linux only: `replay --detach` follows its shell through a pidfd.
      # The derivations that open sockets already carry
      # `__darwinAllowLocalNetworking`, for the day darwin builds.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system nixpkgs.legacyPackages.${system};
          }) systems
        );
    in
    {
      # nix-buildproxy's names, so its users switch by changing the input:
      # `pkgs.buildproxy-capture`, `pkgs.lib.mkBuildproxy`,
      # `pkgs.lib.mkBuildproxyShell`.
      overlays.default = final: prev: {
        buildproxy = final.callPackage ./nix/package.nix { };
        buildproxy-capture = final.callPackage ./nix/capture.nix { };
        lib = prev.lib // {
          inherit (final.callPackage ./nix { }) mkBuildproxy mkBuildproxyShell;
        };
      };

      packages = forAllSystems (
        system: pkgs:
        let
          buildproxy = pkgs.callPackage ./nix/package.nix { };
        in
        {
          inherit buildproxy;
          default = buildproxy;
          buildproxy-capture = pkgs.callPackage ./nix/capture.nix { inherit buildproxy; };
          example = pkgs.callPackage ./example/example.nix {
            inherit (self.lib.${system}) mkBuildproxy;
          };
        }
      );

      # { mkBuildproxy, mkBuildproxyShell, mkContent, importContent, prepareContent, fetchGitObjects }
      lib = forAllSystems (
        system: pkgs: pkgs.callPackage ./nix { inherit (self.packages.${system}) buildproxy; }
      );

      apps = forAllSystems (
        system: pkgs:
        let
          p = self.packages.${system};
          app = program: description: {
            type = "app";
            inherit program;
            meta.description = description;
          };
        in
        {
          default = self.apps.${system}.buildproxy;
          buildproxy = app "${p.buildproxy}/bin/buildproxy" "Capture or replay a build's downloads";
          buildproxy-capture =
            app "${p.buildproxy-capture}/bin/buildproxy-capture"
              "A shell whose downloads are written to ./proxy_content.nix";
        }
      );

      devShells = forAllSystems (
        system: pkgs: {
          # Working on buildproxy itself: nixpkgs' rustc has the wasm32 std,
          # and lld links the plugins.
          default = pkgs.mkShell {
            packages = [
              pkgs.cargo
              pkgs.rustc
              pkgs.lld
              pkgs.clippy
              pkgs.rustfmt
              pkgs.curl
            ];
          };
          example = pkgs.callPackage ./example/devshell.nix {
            inherit (self.packages.${system}) buildproxy-capture;
            buildproxy-shell = self.lib.${system}.mkBuildproxyShell ./example/proxy_content.nix;
          };
        }
      );

      checks = forAllSystems (
        system: pkgs: {
          inherit (self.packages.${system}) buildproxy buildproxy-capture example;
          # Replay in the sandbox with nothing fetched at all: the bodies are
          # files of this repository.
          replay = pkgs.callPackage ./tests/nix/replay-check.nix {
            inherit (self.lib.${system}) mkBuildproxy;
          };
        }
      );
    };
}
