# The flake's `checks.<system>.replay`: a derivation that sources
# mkBuildproxy's script in the sandbox and downloads through it, following
# a redirect, with no network and nothing fetched.
{
  runCommand,
  curl,
  mkBuildproxy,
}:
runCommand "buildproxy-replay-check"
  {
    nativeBuildInputs = [ curl ];
    __darwinAllowLocalNetworking = true;
  }
  ''
    source ${mkBuildproxy ./local-content.nix}
    curl --fail --silent --show-error --location https://buildproxy.invalid/latest --output got
    cmp got ${./fixtures/hello.txt}
    cp got $out
  ''
