"""The incumbent, for the benchmark: a mitmproxy addon that replays the way
nix-buildproxy's replay addon does, so the comparison is with what users run
today rather than with a tuned mitmproxy.

Like it, it loads the content JSON named by NIX_BUILDPROXY_CONTENT once, then
for every request scans the list for an entry whose URL equals the request's,
reads that entry's whole file into memory and answers 200 with it; anything
else gets a 404. (nix-buildproxy starts mitmdump with
`connection_strategy=lazy`, so no upstream connection is ever opened.)
"""

import json
import os

from mitmproxy import http


class ScanAndRead:
    def __init__(self) -> None:
        with open(os.environ["NIX_BUILDPROXY_CONTENT"], "rb") as f:
            self.content = json.load(f)

    def request(self, flow: http.HTTPFlow) -> None:
        url = flow.request.url
        for entry in self.content:
            if entry["url"] == url:
                with open(entry["file"], "rb") as f:
                    flow.response = http.Response.make(200, f.read())
                return
        flow.response = http.Response.make(404)


addons = [ScanAndRead()]
