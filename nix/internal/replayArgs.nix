# The arguments of `buildproxy replay` for mkBuildproxy and
# mkBuildproxyShell, from either of their accepted forms:
#
#   ./proxy_content.nix            (or the function or list it holds)
#   {
#     content = ./proxy_content.nix;
#     plugins = [ ./my.wasm { plugin = ./other.wasm; config = "…"; } ];
#     pluginConfig = { redirect = "flatten"; };  # by plugin name
#     patches = [ { url = "REGEX"; find = "…"; replace = "…"; } ];
#     strict = true;                 # --strict; in a build, where the proxy
#                                    # is detached, misses are logged only
#     noDefaultPlugins = false;      # start from an empty plugin chain
#     extraArgs = [ "--proxy-loopback" ];
#   }
{ prepareContent, writeText }:
arg:
let
  # An attribute set is the options form, unless it is something that
  # turns into a path (a derivation building a proxy_content.nix).
  isOptions = builtins.isAttrs arg && !(arg ? outPath);
  options = if isOptions then arg else { content = arg; };

  known = [
    "content"
    "plugins"
    "pluginConfig"
    "patches"
    "strict"
    "noDefaultPlugins"
    "extraArgs"
  ];
  unknown = builtins.filter (name: !(builtins.elem name known)) (builtins.attrNames options);

  # A plugin's name is its file stem (`--plugin-config NAME=…`, messages),
  # so a local file keeps its name in the store: `./my.wasm` becomes
  # `/nix/store/…-buildproxy-plugin/my.wasm`, not `/nix/store/…-my.wasm`.
  file =
    p:
    if builtins.isPath p then
      "${
        builtins.path {
          path = dirOf p;
          name = "buildproxy-plugin";
          filter = path: type: path == toString p;
        }
      }/${baseNameOf p}"
    else
      "${p}";
  plugin =
    p:
    if builtins.isAttrs p && p ? plugin then
      file p.plugin + (if p ? config then "=${p.config}" else "")
    else
      file p;

  plugins = options.plugins or [ ];
  pluginConfig = options.pluginConfig or { };
  patches = options.patches or [ ];
  # `--patch` rules; a `body_file = ./file;` becomes a store path here.
  patchRules = writeText "buildproxy-patches.json" (builtins.toJSON patches);
in
if unknown != [ ] then
  throw "buildproxy: mkBuildproxy does not take `${builtins.concatStringsSep "`, `" unknown}`; it takes `${builtins.concatStringsSep "`, `" known}`"
else if !(options ? content) then
  throw "buildproxy: mkBuildproxy needs `content` (your proxy_content.nix), as in `mkBuildproxy { content = ./proxy_content.nix; … }`"
else
  [
    "replay"
    "--content"
    "${prepareContent options.content}"
  ]
  ++ (if options.noDefaultPlugins or false then [ "--no-default-plugins" ] else [ ])
  ++ builtins.concatMap (p: [
    "--plugin"
    (plugin p)
  ]) plugins
  ++ builtins.concatMap (name: [
    "--plugin-config"
    "${name}=${pluginConfig.${name}}"
  ]) (builtins.attrNames pluginConfig)
  ++ (
    if patches == [ ] then
      [ ]
    else
      [
        "--patch"
        "${patchRules}"
      ]
  )
  ++ (if options.strict or false then [ "--strict" ] else [ ])
  ++ (options.extraArgs or [ ])
