#include "ranktune/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace ranktune {

ProgressBar::ProgressBar(int64_t total, std::string label, FILE* stream, int64_t plain_every)
    : total_(std::max<int64_t>(total, 1)),
      label_(std::move(label)),
      stream_(stream),
      plain_every_(std::max<int64_t>(plain_every, 1)),
      interactive_(stream != nullptr && ::isatty(::fileno(stream)) != 0),
      start_(std::chrono::steady_clock::now()) {}

std::string ProgressBar::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buffer[32];
  if (s >= 3600) std::snprintf(buffer, sizeof(buffer), "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>((s % 3600) / 60));
  else if (s >= 60) std::snprintf(buffer, sizeof(buffer), "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else std::snprintf(buffer, sizeof(buffer), "%llds", static_cast<long long>(s));
  return buffer;
}

void ProgressBar::update(int64_t done, const std::vector<std::pair<std::string, std::string>>& fields) {
  if (stream_ == nullptr) return;
  ++updates_;
  if (first_done_ < 0) {
    // ETA counts from the first report, so a resumed run does not look instantly fast.
    first_done_ = done;
    start_ = std::chrono::steady_clock::now();
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = done > first_done_ ? static_cast<double>(done - first_done_) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : NAN;
  std::string tail;
  for (const auto& [name, value] : fields) tail += "  " + name + " " + value;
  const int percent = static_cast<int>(100 * done / total_);
  if (interactive_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * done / total_);
    std::fprintf(stream_, "\r%s [%s%s] %lld/%lld %3d%%%s  ETA %s\x1b[K", label_.c_str(), std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '-').c_str(), static_cast<long long>(done), static_cast<long long>(total_),
                 percent, tail.c_str(), format_duration(eta).c_str());
    line_open_ = true;
  } else if (updates_ % plain_every_ == 0 || done == total_) {
    std::fprintf(stream_, "%s %lld/%lld (%d%%)%s  ETA %s\n", label_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), percent, tail.c_str(), format_duration(eta).c_str());
  }
  std::fflush(stream_);
}

void ProgressBar::finish(const std::string& message) {
  if (stream_ == nullptr) return;
  if (line_open_) std::fputc('\n', stream_);
  line_open_ = false;
  if (!message.empty()) std::fprintf(stream_, "%s\n", message.c_str());
  std::fflush(stream_);
}

}  // namespace ranktune
