# A proxy_content.nix as nix-buildproxy writes it (nixfmt layout): entries
# without `method`, some without `status_code` and `headers`, a redirect as
# a status-only entry with a capitalised `Location`, and an old-style
# `sha256`. It must work with buildproxy unchanged.
{ fetchurl }:
[
  {
    url = "https://github.com/example/project/releases/download/v1.0/project-1.0.tar.gz";
    status_code = 302;
    headers = {
      Location = "https://objects.githubusercontent.com/release-assets/project-1.0.tar.gz";
    };
    file = null;
  }
  {
    url = "https://objects.githubusercontent.com/release-assets/project-1.0.tar.gz";
    status_code = 200;
    headers = {
      "Content-Type" = "application/octet-stream";
    };
    file = fetchurl {
      url = "https://objects.githubusercontent.com/release-assets/project-1.0.tar.gz";
      hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    };
  }
  {
    url =
      "https://raw.githubusercontent.com/NixOS/nixpkgs/ba563a6ec1cd6b3b82ecb7787f9ea2cb4b536a1e/pkgs/by-name/he/hello/package.nix";
    file = fetchurl {
      url =
        "https://raw.githubusercontent.com/NixOS/nixpkgs/ba563a6ec1cd6b3b82ecb7787f9ea2cb4b536a1e/pkgs/by-name/he/hello/package.nix";
      sha256 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    };
  }
]
