# nix-buildproxy's example, on buildproxy: a build whose script downloads
# two files with curl. `nix build .#example` runs it in the sandbox, with
# no network, the downloads answered from ./proxy_content.nix.
#
# To capture again (with network): `nix develop .#example`, then
# `buildproxy-capture -- bash ./evil_build.sh` in this directory.
{
  stdenv,
  curl,
  mkBuildproxy,
}:
stdenv.mkDerivation {
  pname = "buildproxy-example";
  version = "1";

  dontUnpack = true;
  nativeBuildInputs = [ curl ];
  # The replay proxy listens on loopback.
  __darwinAllowLocalNetworking = true;

  # The one line a packager adds: every download after this point is
  # answered from the captured content.
  prePatch = ''
    source ${mkBuildproxy ./proxy_content.nix}
  '';

  buildPhase = ''
    runHook preBuild
    bash ${./evil_build.sh}
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    mkdir -p $out
    cp package.txt test.txt $out/
    runHook postInstall
  '';
}
