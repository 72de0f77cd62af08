# A proxy_content.nix as nix-buildproxy writes it for a C++ project whose
# CMake FetchContent clones its dependencies with GIT_REPOSITORY, and which
# downloads one release asset: every response is a `fetchurl` of its URL,
# with no method or status. The git POSTs appear as entries for
# `…/git-upload-pack` (several, with different hashes), the release asset
# is fetched from its signed CDN URL, and a redirect was recorded as an
# empty file. `buildproxy check` must say what will go wrong with each.
{ fetchurl }:
[
  {
    url = "https://github.com/fmtlib/fmt.git/info/refs?service=git-upload-pack";
    file = fetchurl {
      url = "https://github.com/fmtlib/fmt.git/info/refs?service=git-upload-pack";
      hash = "sha256-ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=";
    };
  }
  {
    url = "https://github.com/fmtlib/fmt.git/git-upload-pack";
    file = fetchurl {
      url = "https://github.com/fmtlib/fmt.git/git-upload-pack";
      hash = "sha256-PiPoFgA5WUoziU9lZOGxNIu9egCI1CxKy3PurtWcAJ0=";
    };
  }
  {
    url = "https://github.com/fmtlib/fmt.git/git-upload-pack";
    file = fetchurl {
      url = "https://github.com/fmtlib/fmt.git/git-upload-pack";
      hash = "sha256-Ln0sA6lQeuJl7PW1NWiFpTOTogKdJBOUmXJloaJa78Y=";
    };
  }
  {
    url = "https://github.com/ArthurSonzogni/FTXUI/info/refs?service=git-upload-pack";
    file = fetchurl {
      url = "https://github.com/ArthurSonzogni/FTXUI/info/refs?service=git-upload-pack";
      hash = "sha256-GKw+c0PwFokMUQ6T+TUmEWnZ4/VlQ2Qpgw+vCTT0+OQ=";
    };
  }
  {
    url = "https://github.com/ArthurSonzogni/FTXUI/git-upload-pack";
    file = fetchurl {
      url = "https://github.com/ArthurSonzogni/FTXUI/git-upload-pack";
      hash = "sha256-P3m7e0NbBTIWUdrv03TNxoHcBvqmXjdOODN7iMoEbeo=";
    };
  }
  {
    url = "https://github.com/p-ranav/argparse/archive/refs/tags/v3.0.tar.gz";
    file = fetchurl {
      url = "https://github.com/p-ranav/argparse/archive/refs/tags/v3.0.tar.gz";
      hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    };
  }
  {
    url =
      "https://objects.githubusercontent.com/github-production-release-asset-2e65be/11/22?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20241130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20241130T080000Z&X-Amz-Expires=300&X-Amz-Signature=5f1e&X-Amz-SignedHeaders=host&response-content-disposition=attachment%3B%20filename%3Dargparse-3.0.tar.gz";
    file = fetchurl {
      url =
        "https://objects.githubusercontent.com/github-production-release-asset-2e65be/11/22?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20241130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20241130T080000Z&X-Amz-Expires=300&X-Amz-Signature=5f1e&X-Amz-SignedHeaders=host&response-content-disposition=attachment%3B%20filename%3Dargparse-3.0.tar.gz";
      hash = "sha256-JS8QyDYQ68oaBZwLroJV66L5W+TR17z6idckioLZ8RE=";
    };
  }
]
