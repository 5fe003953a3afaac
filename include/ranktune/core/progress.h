#pragma once
// Progress reporting for long loops: on a terminal a live one-line bar
//   [########----------]  412/1000  41%  loss 1.234  lr 2.0e-04  1830 tok/s  ETA 3m12s
// redrawn in place; otherwise (CI logs, files) a plain line every `plain_every` updates.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace ranktune {

class ProgressBar {
 public:
  // `stream` is where it draws (stderr by default; nullptr draws nothing); a terminal is detected
  // with isatty.
  ProgressBar(int64_t total, std::string label, FILE* stream = stderr, int64_t plain_every = 10);
  // Reports that `done` of `total` are finished, with name/value fields to show.
  void update(int64_t done, const std::vector<std::pair<std::string, std::string>>& fields = {});
  // Ends the bar's line (on a terminal) and prints `message` if not empty.
  void finish(const std::string& message = "");
  bool interactive() const { return interactive_; }

  // "3m12s", "1h05m", "42s".
  static std::string format_duration(double seconds);

 private:
  int64_t total_;
  std::string label_;
  FILE* stream_;
  int64_t plain_every_;
  bool interactive_;
  int64_t updates_ = 0;
  int64_t first_done_ = -1;
  std::chrono::steady_clock::time_point start_;
  bool line_open_ = false;
};

}  // namespace ranktune
