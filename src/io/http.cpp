#include "http.h"

#include "ranktune/core/error.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>

namespace ranktune::io {
namespace {

struct Transfer {
  HttpResponse* response;
  std::FILE* sink;
  bool write_failed = false;
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (the first, or one after a redirect)
    t->response->headers.clear();
    const size_t space = line.find(' ');
    t->response->status = space == std::string::npos ? 0 : std::strtol(line.c_str() + space + 1, nullptr, 10);
    return size * count;
  }
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string value = line.substr(colon + 1);
    const size_t first = value.find_first_not_of(" \t");
    const size_t last = value.find_last_not_of(" \t\r\n");
    t->response->headers[name] = first == std::string::npos ? "" : value.substr(first, last - first + 1);
  }
  return size * count;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  // The status line came first (on_header): only a successful body goes to the file.
  const bool success = t->response->status == 200 || t->response->status == 206;
  if (t->sink != nullptr && success) {
    if (std::fwrite(data, 1, size * count, t->sink) != size * count) {
      t->write_failed = true;
      return 0;  // aborts the transfer
    }
  } else {
    t->response->body.append(data, size * count);
  }
  return size * count;
}

}  // namespace

HttpResponse http_get(const std::string& url, const std::vector<std::string>& headers, std::FILE* sink) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  RANKTUNE_CHECK(initialised, "libcurl could not be initialised");
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  RANKTUNE_CHECK(curl != nullptr, "libcurl could not be initialised");
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(list, &curl_slist_free_all);

  HttpResponse response;
  Transfer transfer{&response, sink};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ranktune");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  // Give up on a stalled connection (under 1 byte/s for 60 s), never on a slow large file.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  const CURLcode code = curl_easy_perform(c);
  if (transfer.write_failed) throw Error("could not write the download to disk (disk full?)", ErrorContext{url, "", -1});
  if (code != CURLE_OK) throw Error(std::string("download failed: ") + curl_easy_strerror(code), ErrorContext{url, "", -1});
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

}  // namespace ranktune::io
