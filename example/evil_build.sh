#!/usr/bin/env bash
# A build step that insists on downloading while it runs. Inside the Nix
# sandbox there is no network; with buildproxy's replay script sourced, both
# downloads are answered from the Nix store. No `--insecure`: the replay
# proxy's per-run CA is in the exported CA bundle.
set -euo pipefail

rev=ba563a6ec1cd6b3b82ecb7787f9ea2cb4b536a1e
base=https://raw.githubusercontent.com/NixOS/nixpkgs/$rev/pkgs/by-name/he/hello

curl --fail --silent --show-error "$base/package.nix" --output package.txt
curl --fail --silent --show-error "$base/test.nix" --output test.txt
