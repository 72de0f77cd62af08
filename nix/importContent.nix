# importContent: a `proxy_content.nix` -> the list of entries replay reads.
#
#   importContent ./proxy_content.nix
#   importContent (import ./proxy_content.nix)   # the function it holds
#   importContent [ { url = …; file = …; } ]      # or the list it returns
#
# Each entry becomes `{ url, method, status_code, headers, file, hash?,
# request_headers? }`: `file` is the store path of the body (so Nix fetches
# it before the build runs) or null for a status-only entry such as a
# redirect; `hash` is the body's sha256 when the fetcher states it;
# `request_headers` are the request headers that selected the body (content
# negotiation), which replay matches. Entries of method `GIT` are git
# objects fetched by `fetchGitObjects` (a file that uses it declares it:
# `{ fetchurl, fetchGitObjects }:`). nix-buildproxy's files leave out
# `method`, `status_code` and `headers`; they get their HTTP defaults here,
# so those files work unchanged.
#
# A negotiated entry's `fetchurl` sends its request headers as
# `curlOptsList` (nixpkgs' fetchurl takes it). A fetcher that cannot send
# headers (`<nix/fetchurl.nix>`, whose arguments have no `curlOptsList`)
# would download another representation and fail its hash check; such an
# entry stops the evaluation instead, naming the URL and the fix. Files
# without negotiated entries work with any fetcher.
{
  fetchurl,
  fetchGitObjects ? null,
}:
content:
let
  origin =
    if builtins.isPath content || builtins.isString content then toString content else "the content";

  # A fetcher declaring its arguments without `curlOptsList` cannot send
  # headers; one taking `args:` (no declared arguments) is trusted to.
  sendsHeaders =
    let
      declared = builtins.functionArgs fetchurl;
    in
    declared == { } || declared ? curlOptsList;

  fetchurlChecked =
    args:
    if args ? curlOptsList && !sendsHeaders then
      throw "buildproxy: ${origin}: ${toString (args.url or "an entry")} was captured with request headers that choose its body (content negotiation: ${toString args.curlOptsList}), but this fetchurl cannot send headers (it takes no `curlOptsList`, like <nix/fetchurl.nix>), so it would download another body; use nixpkgs' fetchurl, or capture with a client that sends no such headers"
    else
      fetchurl args;

  raw =
    let
      imported =
        if builtins.isPath content || builtins.isString content then import content else content;
      applied =
        if builtins.isFunction imported then
          imported (
            { fetchurl = fetchurlChecked; }
            # git objects the `git` plugin recorded: only files that take
            # it get it, so nix-buildproxy's `{ fetchurl }:` still works.
            // (
              if builtins.functionArgs imported ? fetchGitObjects then
                { inherit fetchGitObjects; }
              else
                { }
            )
          )
        else
          imported;
    in
    if builtins.isList applied then
      applied
    else
      throw "buildproxy: ${origin} is not a list of entries; a proxy_content.nix reads `{ fetchurl }: [ { url = …; file = …; } … ]`";

  # The sha256 of the downloaded bytes, in a spelling replay accepts, when
  # the fetcher states it: only for flat (not unpacked) sha256 outputs, as a
  # recursive hash is over a NAR, not over the body.
  hashOf =
    file:
    let
      hash = file.outputHash or null;
      prefix = builtins.substring 0 7 hash;
    in
    if !(builtins.isAttrs file) || !(builtins.isString hash) || hash == "" then
      null
    else if (file.outputHashMode or "flat") != "flat" then
      null
    else if prefix == "sha256-" || prefix == "sha256:" then
      hash
    else if (file.outputHashAlgo or null) == "sha256" then
      "sha256:${hash}"
    else
      null;

  entry =
    index: e:
    let
      where = "${origin}: entry [${toString index}]${
        if builtins.isAttrs e && e ? url then " (${toString e.url})" else ""
      }";
      fail = problem: fix: throw "buildproxy: ${where} ${problem}; ${fix}";
      file =
        if !(e ? file) then
          fail "has no `file`" "add `file = fetchurl { url = …; hash = …; };`, or `file = null;` for a response without a body"
        else
          e.file;
      hash = if file == null then null else hashOf file;
    in
    if !(builtins.isAttrs e) then
      fail "is not an attribute set" "write each entry as `{ url = \"…\"; file = …; }`"
    else if !(e ? url) then
      fail "has no `url`" "add the URL the build requested as `url = \"…\";`"
    else
      {
        inherit (e) url;
        method = e.method or "GET";
        status_code = e.status_code or 200;
        headers = e.headers or { };
        # A derivation or a path becomes a store path; its string context
        # makes Nix realise it before anything that reads the JSON.
        file = if file == null then null else "${file}";
      }
      // (if hash == null then { } else { inherit hash; })
      // (if e ? request_headers then { inherit (e) request_headers; } else { });
in
builtins.genList (i: entry i (builtins.elemAt raw i)) (builtins.length raw)
