#pragma once
// Training metrics: `metrics.jsonl` (one JSON object per logged step) and `training-curve.svg`
// (train and eval loss, eval accuracy against step), both readable without any tooling.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ranktune::train {

struct MetricsRow {
  int64_t step = 0;
  std::map<std::string, double> values;  // "loss", "lr", "grad_norm", "tokens_per_second", "eval_loss", ...
};

class MetricsLog {
 public:
  // Opens `path`. With `resume_step` >= 0, keeps the rows up to that step (a resumed run rewrites
  // what came after its checkpoint); otherwise starts an empty file.
  MetricsLog(std::string path, int64_t resume_step = -1);
  // Appends one JSON line and flushes it (a crash loses no logged row).
  void write(const MetricsRow& row);
  const std::vector<MetricsRow>& rows() const { return rows_; }
  const std::string& path() const { return path_; }

  static std::vector<MetricsRow> read(const std::string& path);

 private:
  std::string path_;
  std::vector<MetricsRow> rows_;
};

// Writes a two-panel SVG: losses ("loss", "eval_loss") and rates on [0, 1] (keys starting with
// "eval_accuracy", and "eval_format_rate") against step. Atomic.
void write_training_curve(const std::vector<MetricsRow>& rows, const std::string& path, const std::string& title);

// The value of `key` in the first and the last row that has it (NaN when none does): a run's first
// and last loss or reward across resumes.
std::pair<double, double> first_and_last(const std::vector<MetricsRow>& rows, const std::string& key);

// A panel of write_metric_curves: the series of `keys` against step; `rates` fixes the y axis to [0, 1].
struct CurvePanel {
  std::string title;
  std::vector<std::string> keys;
  bool rates = false;
};
// Writes one SVG with a panel per entry (GRPO: reward, completion length, loss). Atomic.
void write_metric_curves(const std::vector<MetricsRow>& rows, const std::string& path, const std::string& title,
                         const std::vector<CurvePanel>& panels);

}  // namespace ranktune::train
