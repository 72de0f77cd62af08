# Evaluation tests of nix/ against stand-ins: every case is
# `{ got; want; }`, compared by tests/e2e/nix.rs (run with
# `nix-instantiate --eval --strict --json`).
let
  pkgs = import ./stand-ins.nix { };
  lib = import ../../nix pkgs;
  inherit (pkgs) fetchurl;

  # The command line inside a mkBuildproxy script.
  commandOf =
    script:
    builtins.head (
      builtins.match ".*__buildproxy_env=\\$\\(BUILDPROXY_SHELL_PID=\\$\\$ ([^)]*)\\).*" script.text
    );
  # The command line a mkBuildproxyShell script execs.
  shellCommandOf =
    drv: builtins.head (builtins.match ".*exec (.*) -- \"\\$@\".*" drv.text);
  quote = s: "'${s}'";
  words = list: builtins.concatStringsSep " " (map quote list);
  bin = "${pkgs.buildproxy}/bin/buildproxy";

  # What nix-buildproxy-content.nix must become.
  tarball = "https://objects.githubusercontent.com/release-assets/project-1.0.tar.gz";
  helloUrl = "https://raw.githubusercontent.com/NixOS/nixpkgs/ba563a6ec1cd6b3b82ecb7787f9ea2cb4b536a1e/pkgs/by-name/he/hello/package.nix";
  nixBuildproxyEntries = [
    {
      url = "https://github.com/example/project/releases/download/v1.0/project-1.0.tar.gz";
      method = "GET";
      status_code = 302;
      headers.Location = tarball;
      file = null;
    }
    {
      url = tarball;
      method = "GET";
      status_code = 200;
      headers."Content-Type" = "application/octet-stream";
      file =
        (fetchurl {
          url = tarball;
          hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        }).outPath;
      hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    }
    {
      url = helloUrl;
      method = "GET";
      status_code = 200;
      headers = { };
      file =
        (fetchurl {
          url = helloUrl;
          sha256 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        }).outPath;
      hash = "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    }
  ];

  # Store paths with their context dropped, for comparing as JSON.
  plain = builtins.unsafeDiscardStringContext;
  plainEntries = map (e: e // { file = if e.file == null then null else plain e.file; });

  content = lib.mkContent ./nix-buildproxy-content.nix;
  prepared = lib.prepareContent ./nix-buildproxy-content.nix;
  bodies = builtins.filter (e: e.file != null) (lib.importContent ./nix-buildproxy-content.nix);

  options = {
    content = ./nix-buildproxy-content.nix;
    plugins = [
      ./fixtures/broken.wasm
      {
        plugin = ./fixtures/broken.wasm;
        config = "it's configured";
      }
    ];
    pluginConfig.redirect = "flatten";
    patches = [
      {
        url = "https://example.org/configure";
        find = "exit 1";
        replace = "exit 0";
      }
    ];
    strict = true;
    noDefaultPlugins = true;
    extraArgs = [ "--proxy-loopback" ];
  };
  withOptions = lib.mkBuildproxy options;
  # Where a local plugin file lands: a directory, so it keeps its name.
  pluginDir = builtins.head (
    builtins.match ".*'--plugin' '(/nix/store/[a-z0-9]{32}-buildproxy-plugin)/broken.wasm'.*" (
      commandOf withOptions
    )
  );
  patchRules = builtins.head (
    builtins.match ".*'--patch' '([^']*)'.*" (commandOf withOptions)
  );
in
{
  nix_buildproxy_format_gets_http_defaults = {
    got = plainEntries (lib.importContent ./nix-buildproxy-content.nix);
    want = nixBuildproxyEntries;
  };

  the_imported_function_and_its_list_are_accepted_too = {
    got = map plainEntries [
      (lib.importContent (import ./nix-buildproxy-content.nix))
      (lib.importContent ((import ./nix-buildproxy-content.nix) { inherit fetchurl; }))
    ];
    want = [
      nixBuildproxyEntries
      nixBuildproxyEntries
    ];
  };

  body_files_carry_the_fetch_as_context = {
    got = map (e: builtins.attrNames (builtins.getContext e.file)) bodies;
    want = [
      [
        (fetchurl {
          url = tarball;
          hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        }).drvPath
      ]
      [
        (fetchurl {
          url = helloUrl;
          sha256 = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
        }).drvPath
      ]
    ];
  };

  our_format_keeps_method_status_headers_and_a_name = {
    got = plainEntries (
      lib.importContent (
        { fetchurl }:
        [
          {
            url = "https://example.org/dl?id=7";
            method = "HEAD";
            status_code = 200;
            headers."content-length" = "5";
            file = null;
          }
          {
            url = "https://example.org/dl?id=7";
            method = "GET";
            status_code = 200;
            headers = { };
            file = fetchurl {
              url = "https://mirror.example.org/dl/7";
              name = "dl-7";
              hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
            };
          }
          {
            url = "https://example.org/probe";
            method = "GET";
            status_code = 404;
            headers = { };
            file = null;
          }
        ]
      )
    );
    want = [
      {
        url = "https://example.org/dl?id=7";
        method = "HEAD";
        status_code = 200;
        headers."content-length" = "5";
        file = null;
      }
      {
        url = "https://example.org/dl?id=7";
        method = "GET";
        status_code = 200;
        headers = { };
        file =
          (fetchurl {
            url = "https://mirror.example.org/dl/7";
            name = "dl-7";
            hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
          }).outPath;
        hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
      }
      {
        url = "https://example.org/probe";
        method = "GET";
        status_code = 404;
        headers = { };
        file = null;
      }
    ];
  };

  hashes_that_are_not_of_the_body_are_left_out = {
    got = map (e: e ? hash) (
      lib.importContent [
        {
          url = "https://example.org/unpacked.tar.gz";
          file = fetchurl {
            url = "https://example.org/unpacked.tar.gz";
            unpack = true;
            hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
          };
        }
        {
          url = "https://example.org/a.sha512";
          file = fetchurl {
            url = "https://example.org/a.sha512";
            sha512 = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
          };
        }
        {
          url = "https://example.org/local";
          file = ./fixtures/hello.txt;
        }
      ]
    );
    want = [
      false
      false
      false
    ];
  };

  a_local_file_is_a_body_too = {
    got = builtins.match "/nix/store/[a-z0-9]{32}-hello.txt" (
      plain (builtins.head (lib.importContent [
        {
          url = "https://example.org/local";
          file = ./fixtures/hello.txt;
        }
      ])).file
    ) != null;
    want = true;
  };

  mkContent_writes_the_list_as_json = {
    got = builtins.fromJSON (plain content.text);
    want = nixBuildproxyEntries;
  };

  # The JSON is mkContent's, as a plain file; the bodies are inputs.
  prepareContent_runs_buildproxy_prepare_on_the_json = {
    got = {
      inherit (prepared) name builder;
      args = map plain prepared.drvAttrs.args;
      json = builtins.readFile (builtins.elemAt prepared.drvAttrs.args 1);
      bodies = prepared.drvAttrs.bodies;
      bodiesAreInputs = builtins.all (b: builtins.hasContext b) prepared.drvAttrs.bodies;
    };
    want = {
      name = "proxy_content.prepared";
      builder = plain bin;
      args = [
        "prepare"
        (plain (builtins.elemAt prepared.drvAttrs.args 1))
        "--output"
        (builtins.placeholder "out")
      ];
      json = plain content.text;
      bodies = map (e: e.file) bodies;
      bodiesAreInputs = true;
    };
  };

  mkBuildproxy_takes_a_path_like_nix_buildproxy = {
    got = {
      type = (lib.mkBuildproxy ./nix-buildproxy-content.nix).type;
      command = commandOf (lib.mkBuildproxy ./nix-buildproxy-content.nix);
    };
    want = {
      type = "derivation";
      command = words [
        bin
        "replay"
        "--content"
        prepared.outPath
        "--detach"
      ];
    };
  };

  mkBuildproxy_options_become_flags = {
    got = commandOf withOptions;
    want = words [
      bin
      "replay"
      "--content"
      prepared.outPath
      "--no-default-plugins"
      "--plugin"
      "${pluginDir}/broken.wasm"
      "--plugin"
      "${pluginDir}/broken.wasm=it'\\''s configured"
      "--plugin-config"
      "redirect=flatten"
      "--patch"
      patchRules
      "--strict"
      "--proxy-loopback"
      "--detach"
    ];
  };

  a_local_plugin_keeps_its_file_name = {
    got = builtins.readDir pluginDir;
    want."broken.wasm" = "regular";
  };

  patches_are_written_as_json_rules = {
    got =
      builtins.match "/nix/store/[a-z0-9]{32}-buildproxy-patches.json" patchRules != null
      && (pkgs.writeText "buildproxy-patches.json" (builtins.toJSON options.patches)).outPath
        == patchRules;
    want = true;
  };

  mkBuildproxyShell_runs_the_shell_behind_replay = {
    got = shellCommandOf (lib.mkBuildproxyShell { content = ./nix-buildproxy-content.nix; strict = true; });
    want = words [
      bin
      "replay"
      "--content"
      prepared.outPath
      "--strict"
    ];
  };

  # A negotiated representation: its request headers reach the replay JSON
  # and its fetch; a fetcher that cannot send headers refuses it.
  negotiated_entries_keep_their_request_headers = {
    got =
      let
        negotiated =
          { fetchurl }:
          [
            {
              url = "https://example.org/simple/a/";
              request_headers.accept = "application/json";
              file = fetchurl {
                url = "https://example.org/simple/a/";
                curlOptsList = [
                  "--header"
                  "accept: application/json"
                ];
                hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
              };
            }
          ];
        imported = builtins.head (lib.importContent negotiated);
        withoutHeaders = import ../../nix (pkgs // { fetchurl = pkgs.builtinFetchurl; });
      in
      {
        inherit (imported) request_headers;
        fetchedWith = (builtins.head (negotiated { inherit fetchurl; })).file.args;
        builtinFetcher =
          let
            x = withoutHeaders.importContent negotiated;
          in
          (builtins.tryEval (builtins.deepSeq x x)).success;
      };
    want = {
      request_headers.accept = "application/json";
      fetchedWith = [
        "-ec"
        ''/usr/bin/curl --location --max-redirs 20 --fail --silent --show-error --insecure --user-agent "curl Nixpkgs-stand-in" "$@" "$url" --output "$out"''
        "fetchurl"
        "--header"
        "accept: application/json"
      ];
      builtinFetcher = false;
    };
  };

  mistakes_fail_evaluation = {
    got = map (x: (builtins.tryEval (builtins.deepSeq x x)).success) [
      (lib.mkBuildproxy { content = ./nix-buildproxy-content.nix; plugin = [ ]; }).drvPath
      (lib.mkBuildproxy { strict = true; }).drvPath
      (lib.importContent [ { file = null; } ])
      (lib.importContent [ { url = "https://example.org/"; } ])
      (lib.importContent [ "https://example.org/" ])
      (lib.importContent ({ fetchurl }: { url = "https://example.org/"; }))
    ];
    want = [
      false
      false
      false
      false
      false
      false
    ];
  };
}
