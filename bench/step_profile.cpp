#include "step_profile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace ranktune::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  double seconds = 0;
  int64_t calls = 0;
};

// RecordFunction callbacks are plain function pointers, so the one active profile lives here.
std::mutex totals_mutex;
std::map<std::pair<std::string, std::string>, Totals> totals;  // (phase, operator) -> time
std::string current_phase = "step";
bool active = false;
thread_local int depth = 0;
int64_t all_calls = 0;  // every recorded call, nested ones included (the per-call overhead paid)

struct Started : at::ObserverContext {
  Clock::time_point start;
  bool outermost = false;
};

// "autograd::engine::evaluate_function: torch::autograd::CppNode<(anonymous namespace)::LoraUpdate>"
// reads better as "LoraUpdate (backward)".
std::string readable(std::string name) {
  const std::string engine = "autograd::engine::evaluate_function: ";
  if (name.rfind(engine, 0) == 0) name = name.substr(engine.size());
  const std::string node = "torch::autograd::CppNode<";
  if (name.rfind(node, 0) == 0) {
    name = name.substr(node.size(), name.size() - node.size() - 1);
    const size_t colons = name.rfind("::");
    if (colons != std::string::npos) name = name.substr(colons + 2);
    name += " (backward)";
  }
  return name;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction&) {
  auto ctx = std::make_unique<Started>();
  ctx->outermost = depth++ == 0;
  if (ctx->outermost) ctx->start = Clock::now();
  return ctx;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* ctx_base) {
  --depth;
  auto* ctx = static_cast<Started*>(ctx_base);
  std::lock_guard<std::mutex> lock(totals_mutex);
  if (current_phase.empty()) return;  // paused
  ++all_calls;
  if (!ctx->outermost) return;
  const double s = std::chrono::duration<double>(Clock::now() - ctx->start).count();
  Totals& t = totals[{current_phase, readable(fn.name())}];
  t.seconds += s;
  t.calls += 1;
}

}  // namespace

StepProfile::StepProfile() {
  if (active) throw std::logic_error("only one StepProfile may record at a time");
  active = true;
  totals.clear();
  all_calls = 0;
  handle_ = at::addGlobalCallback(at::RecordFunctionCallback(on_start, on_end).scopes(
      {at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
}

StepProfile::~StepProfile() {
  at::removeCallback(handle_);
  active = false;
}

void StepProfile::set_phase(const std::string& phase) {
  std::lock_guard<std::mutex> lock(totals_mutex);
  current_phase = phase;
}

nlohmann::ordered_json StepProfile::report(double step_s, int64_t steps, int top) const {
  std::lock_guard<std::mutex> lock(totals_mutex);
  std::vector<std::pair<std::pair<std::string, std::string>, Totals>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  nlohmann::ordered_json ops = nlohmann::json::array();
  double covered = 0;
  for (const auto& [key, t] : rows) covered += t.seconds;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < top; ++i) {
    const auto& [key, t] = rows[i];
    const double per_step = t.seconds / static_cast<double>(steps);
    ops.push_back({{"phase", key.first},
                   {"op", key.second},
                   {"calls_per_step", t.calls / steps},
                   {"ms_per_step", 1e3 * per_step},
                   {"share_of_step", per_step / step_s}});
  }
  nlohmann::ordered_json j;
  j["share_in_operators"] = covered / static_cast<double>(steps) / step_s;
  int64_t outermost = 0;
  for (const auto& [key, t] : rows) outermost += t.calls;
  j["outermost_calls_per_step"] = outermost / steps;
  j["all_calls_per_step"] = all_calls / steps;
  j["top_operators"] = ops;
  return j;
}

double current_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return 0;
}

}  // namespace ranktune::bench
