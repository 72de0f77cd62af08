# mkContent: a `proxy_content.nix` -> the JSON file `buildproxy replay
# --content` reads (see importContent for the accepted forms).
#
# Building it makes Nix fetch every body first (the JSON names their store
# paths), so replay itself never needs the network.
{ importContent, writeText }:
content: writeText "proxy_content.json" (builtins.toJSON (importContent content))
