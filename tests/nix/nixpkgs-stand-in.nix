# A minimal nixpkgs for evaluating flake.nix where the real one is not
# available: `legacyPackages.<system>` with callPackage and the names the
# flake and its files use. Derivations are real (builtins.derivation) but
# only the library's and the checks' can build; `buildRustPackage` returns
# the stand-in buildproxy (the cargo-built binary when `binary` is given)
# and keeps its arguments in `buildRustPackageArgs` for inspection.
{
  binary ? null,
}:
let
  standIns = import ./stand-ins.nix { inherit binary; };

  placeholder =
    name: attrs:
    builtins.derivation {
      inherit name;
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo ${name} is a stand-in and cannot be built; exit 1"
      ];
    }
    // attrs;

  fix =
    f:
    let
      x = f x;
    in
    x;

  # The package set as a function of its final self, as in nixpkgs, so
  # overlays (`extend`) see each other's packages through callPackage.
  packagesFor =
    system: pkgs:
    # No buildproxy: only the flake's overlay and packages provide it.
    builtins.removeAttrs standIns [ "buildproxy" ]
    // {
      inherit system;
      extend =
        overlay:
        fix (
          self:
          let
            super = packagesFor system self;
          in
          super // overlay self super
        );
      callPackage =
        fn: overrides:
        let
          f = if builtins.isFunction fn then fn else import fn;
        in
        f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);
      lib = {
        licenses.mit = {
          spdxId = "MIT";
        };
        platforms.linux = [
          "x86_64-linux"
          "aarch64-linux"
        ];
      };
      stdenv = {
        buildPlatform.canExecute = platform: true;
        hostPlatform = { };
        mkDerivation =
          args: placeholder (args.pname or args.name) { stdenvMkDerivationArgs = args; };
      };
      rustPlatform.buildRustPackage = args: standIns.buildproxy // { buildRustPackageArgs = args; };
      mkShell = args: placeholder "shell" { mkShellArgs = args; };
      lld = placeholder "lld" { };
      makeBinaryWrapper = placeholder "make-binary-wrapper" { };
      cargo = placeholder "cargo" { };
      rustc = placeholder "rustc" { };
      clippy = placeholder "clippy" { };
      rustfmt = placeholder "rustfmt" { };
    };
in
{
  legacyPackages = {
    x86_64-linux = fix (packagesFor "x86_64-linux");
    aarch64-linux = fix (packagesFor "aarch64-linux");
  };
}
