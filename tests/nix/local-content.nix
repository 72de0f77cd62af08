# Captured content whose bodies are files of this repository: replay with
# nothing to fetch, for checks that must not depend on any server. The
# `.invalid` host cannot resolve; only the proxy can answer it.
{ fetchurl }:
[
  {
    url = "https://buildproxy.invalid/hello.txt";
    method = "GET";
    status_code = 200;
    headers = {
      "content-type" = "text/plain";
    };
    file = ./fixtures/hello.txt;
  }
  {
    url = "https://buildproxy.invalid/latest";
    status_code = 302;
    headers = {
      Location = "https://buildproxy.invalid/hello.txt";
    };
    file = null;
  }
]
