#pragma once
// HTTP GET through libcurl, for the hub download (io layer only). Redirects are followed; custom
// headers such as Authorization are not sent to another host after a redirect (libcurl's default),
// so a token never reaches a CDN.

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace ranktune::io {

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // of the last response; names in lower case
  std::string body;                            // empty when the body went to a file
};

// GET `url` with `headers` ("Name: value"). The body is appended to `sink` when given (only for a
// 200 or 206 response; an error's body is kept in `body` for the message), else returned. Throws
// ranktune::Error naming the url when the connection fails; HTTP errors are returned as statuses.
HttpResponse http_get(const std::string& url, const std::vector<std::string>& headers, std::FILE* sink = nullptr);

}  // namespace ranktune::io
