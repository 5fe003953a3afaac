#include "ranktune/train/metrics.h"

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <sstream>

namespace ranktune::train {
namespace {

std::string row_json(const MetricsRow& row) {
  nlohmann::ordered_json j;
  j["step"] = row.step;
  for (const auto& [k, v] : row.values) j[k] = std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
  return j.dump();
}

}  // namespace

std::vector<MetricsRow> MetricsLog::read(const std::string& path) {
  std::vector<MetricsRow> rows;
  std::istringstream in(io::read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    // A line cut short by a crash is the only one that can be broken: stop there.
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step")) break;
    MetricsRow row;
    row.step = j["step"].get<int64_t>();
    for (const auto& item : j.items()) {
      if (item.key() != "step" && item.value().is_number()) row.values[item.key()] = item.value().get<double>();
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

MetricsLog::MetricsLog(std::string path, int64_t resume_step) : path_(std::move(path)) {
  if (resume_step >= 0 && std::filesystem::exists(path_)) {
    for (auto& row : read(path_)) {
      if (row.step <= resume_step) rows_.push_back(std::move(row));
    }
  }
  std::string text;
  for (const auto& row : rows_) text += row_json(row) + "\n";
  io::write_file_atomic(path_, text);
}

void MetricsLog::write(const MetricsRow& row) {
  // A failed append (disk full, permission, the file gone) is an error naming the file and the
  // cause; a partly written line is cut off again, so the file keeps only whole rows.
  const std::string line = row_json(row) + "\n";
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(c10::str("cannot append metrics: ", std::strerror(errno)), ErrorContext{path_, "", -1});
  const off_t before = ::lseek(fd, 0, SEEK_END);
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = n < 0 ? std::strerror(errno) : "nothing written";
      if (before >= 0 && ::ftruncate(fd, before) != 0) {
        // The partial line stays; MetricsLog::read stops at it.
      }
      ::close(fd);
      throw Error("cannot append metrics: " + reason, ErrorContext{path_, "", -1});
    }
    written += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) throw Error(c10::str("cannot append metrics: ", std::strerror(errno)), ErrorContext{path_, "", -1});
  rows_.push_back(row);
}

// ---- SVG -----------------------------------------------------------------------------------------

namespace {

struct Series {
  std::string label;
  std::string color;
  std::vector<std::pair<double, double>> points;
};

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string fmt(double v) {
  char b[32];
  if (v != 0 && (std::fabs(v) >= 1e4 || std::fabs(v) < 1e-2)) std::snprintf(b, sizeof(b), "%.2g", v);
  else std::snprintf(b, sizeof(b), "%.3g", v);
  return b;
}

// One panel at (x0, y0) of size w × h with axes, ticks, the series and a legend.
// `fixed_range`: the y axis spans [0, 1] (rates) instead of the data.
std::string panel(double x0, double y0, double w, double h, const std::string& title, const std::vector<Series>& series,
                  double x_min, double x_max, bool fixed_range = false) {
  double y_min = INFINITY, y_max = -INFINITY;
  for (const auto& s : series) {
    for (const auto& p : s.points) {
      y_min = std::min(y_min, p.second);
      y_max = std::max(y_max, p.second);
    }
  }
  if (fixed_range && std::isfinite(y_min)) {
    y_min = 0;
    y_max = 1;
  }
  std::ostringstream svg;
  svg << "<text x=\"" << x0 + w / 2 << "\" y=\"" << y0 - 8 << "\" text-anchor=\"middle\" font-size=\"13\">" << title << "</text>\n";
  svg << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << w << "\" height=\"" << h
      << "\" fill=\"none\" stroke=\"#999\"/>\n";
  if (!std::isfinite(y_min)) {
    svg << "<text x=\"" << x0 + w / 2 << "\" y=\"" << y0 + h / 2 << "\" text-anchor=\"middle\" font-size=\"12\" fill=\"#777\">no data</text>\n";
    return svg.str();
  }
  if (y_max - y_min < 1e-12) {
    y_min -= 0.5;
    y_max += 0.5;
  }
  if (!fixed_range) {
    const double pad = 0.05 * (y_max - y_min);
    y_min -= pad;
    y_max += pad;
  }
  if (x_max <= x_min) x_max = x_min + 1;
  auto X = [&](double x) { return x0 + (x - x_min) / (x_max - x_min) * w; };
  auto Y = [&](double y) { return y0 + h - (y - y_min) / (y_max - y_min) * h; };
  for (int i = 0; i <= 4; ++i) {
    const double yv = y_min + (y_max - y_min) * i / 4, xv = x_min + (x_max - x_min) * i / 4;
    svg << "<line x1=\"" << x0 << "\" x2=\"" << x0 + w << "\" y1=\"" << Y(yv) << "\" y2=\"" << Y(yv) << "\" stroke=\"#eee\"/>\n";
    svg << "<text x=\"" << x0 - 6 << "\" y=\"" << Y(yv) + 4 << "\" text-anchor=\"end\" font-size=\"10\">" << fmt(yv) << "</text>\n";
    svg << "<text x=\"" << X(xv) << "\" y=\"" << y0 + h + 14 << "\" text-anchor=\"middle\" font-size=\"10\">"
        << static_cast<int64_t>(std::llround(xv)) << "</text>\n";
  }
  svg << "<text x=\"" << x0 + w / 2 << "\" y=\"" << y0 + h + 30 << "\" text-anchor=\"middle\" font-size=\"11\">step</text>\n";
  int legend = 0;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    svg << "<polyline fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"1.5\" points=\"";
    for (const auto& p : s.points) svg << X(p.first) << "," << Y(p.second) << " ";
    svg << "\"/>\n";
    for (const auto& p : s.points) {
      if (s.points.size() <= 60) svg << "<circle cx=\"" << X(p.first) << "\" cy=\"" << Y(p.second) << "\" r=\"2\" fill=\"" << s.color << "\"/>\n";
    }
    svg << "<text x=\"" << x0 + w - 6 << "\" y=\"" << y0 + 16 + 14 * legend++ << "\" text-anchor=\"end\" font-size=\"11\" fill=\""
        << s.color << "\">" << s.label << "</text>\n";
  }
  return svg.str();
}

}  // namespace

void write_training_curve(const std::vector<MetricsRow>& rows, const std::string& path, const std::string& title) {
  Series loss{"train loss", "#1f77b4", {}}, eval_loss{"eval loss", "#d62728", {}};
  std::map<std::string, Series> accuracies;
  const char* colors[] = {"#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  double x_min = INFINITY, x_max = -INFINITY;
  for (const auto& row : rows) {
    x_min = std::min(x_min, static_cast<double>(row.step));
    x_max = std::max(x_max, static_cast<double>(row.step));
    for (const auto& [k, v] : row.values) {
      if (!std::isfinite(v)) continue;
      if (k == "loss") loss.points.emplace_back(row.step, v);
      else if (k == "eval_loss") eval_loss.points.emplace_back(row.step, v);
      else if (k.rfind("eval_accuracy", 0) == 0 || k == "eval_format_rate") {
        auto& s = accuracies[k];
        if (s.label.empty()) s = Series{k.substr(5), colors[accuracies.size() % 4], {}};
        s.points.emplace_back(row.step, v);
      }
    }
  }
  if (!std::isfinite(x_min)) x_min = x_max = 0;
  std::vector<Series> acc;
  for (auto& [k, s] : accuracies) acc.push_back(s);
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"360\" font-family=\"sans-serif\">\n"
      << "<rect width=\"900\" height=\"360\" fill=\"white\"/>\n"
      << "<text x=\"450\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << xml_escape(title) << "</text>\n"
      << panel(70, 60, 360, 240, "loss", {loss, eval_loss}, x_min, x_max)
      << panel(510, 60, 360, 240, "eval accuracy and answer-format rate", acc, x_min, x_max, /*fixed_range=*/true)
      << "</svg>\n";
  io::write_file_atomic(path, svg.str());
}

std::pair<double, double> first_and_last(const std::vector<MetricsRow>& rows, const std::string& key) {
  double first = NAN, last = NAN;
  for (const auto& row : rows) {
    const auto it = row.values.find(key);
    if (it == row.values.end()) continue;
    if (std::isnan(first)) first = it->second;
    last = it->second;
  }
  return {first, last};
}

void write_metric_curves(const std::vector<MetricsRow>& rows, const std::string& path, const std::string& title,
                         const std::vector<CurvePanel>& panels) {
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  double x_min = INFINITY, x_max = -INFINITY;
  for (const auto& row : rows) {
    x_min = std::min(x_min, static_cast<double>(row.step));
    x_max = std::max(x_max, static_cast<double>(row.step));
  }
  if (!std::isfinite(x_min)) x_min = x_max = 0;
  const double panel_width = 300, gap = 80;
  const double width = 70 + static_cast<double>(panels.size()) * (panel_width + gap);
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"360\" font-family=\"sans-serif\">\n"
      << "<rect width=\"" << width << "\" height=\"360\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << xml_escape(title) << "</text>\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    std::vector<Series> series;
    for (size_t k = 0; k < panels[p].keys.size(); ++k) {
      Series s{xml_escape(panels[p].keys[k]), colors[k % 6], {}};
      for (const auto& row : rows) {
        const auto it = row.values.find(panels[p].keys[k]);
        if (it != row.values.end() && std::isfinite(it->second)) s.points.emplace_back(row.step, it->second);
      }
      series.push_back(std::move(s));
    }
    svg << panel(70 + static_cast<double>(p) * (panel_width + gap), 60, panel_width, 240, xml_escape(panels[p].title), series,
                 x_min, x_max, panels[p].rates);
  }
  svg << "</svg>\n";
  io::write_file_atomic(path, svg.str());
}

}  // namespace ranktune::train
