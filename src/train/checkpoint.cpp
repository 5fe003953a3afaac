#include "checkpoint.h"

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/json.h"
#include "ranktune/io/safetensors.h"
#include "ranktune/model/model_directory.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>

namespace ranktune::train {
namespace {

namespace fs = std::filesystem;

const char* const kPrefix = "checkpoint-";

int64_t step_of(const fs::path& dir) {
  const std::string name = dir.filename().string();
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::char_traits<char>::length(kPrefix));
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace

std::string save_checkpoint(const std::string& output_dir, const TrainerState& state,
                            const std::function<void(const std::string& dir)>& write_contents) {
  const fs::path final_dir = fs::path(output_dir) / (kPrefix + std::to_string(state.step));
  const fs::path tmp = final_dir.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    write_contents(tmp.string());
    at::Tensor rng;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      rng = gen.get_state();
    }
    io::save_safetensors((tmp / "rng_state.safetensors").string(), {{"cpu", rng}});
    nlohmann::ordered_json j;
    j["step"] = state.step;
    j["micro_step"] = state.micro_step;
    j["nan_streak"] = state.nan_streak;
    j["total_steps"] = state.total_steps;
    j["seed"] = state.seed;
    j["seconds"] = state.seconds;
    j["world_size"] = state.world_size;
    nlohmann::ordered_json recipe = nlohmann::ordered_json::object();
    for (const auto& [key, value] : state.recipe) recipe[key] = value;
    j["recipe"] = recipe;
    io::write_file_atomic((tmp / "trainer_state.json").string(), j.dump(2) + "\n");
    fs::remove_all(final_dir);  // a checkpoint of the same step from an earlier, interrupted run
    fs::rename(tmp, final_dir);
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  return final_dir.string();
}

TrainerState load_checkpoint_state(const std::string& dir) {
  const std::string path = (fs::path(dir) / "trainer_state.json").string();
  const io::ordered_json root = io::parse_json(io::read_file(path), path);
  io::JsonFields f(root, path);
  TrainerState s;
  s.step = f.get_int("step");
  s.micro_step = f.get_int("micro_step");
  s.nan_streak = f.get_int("nan_streak");
  s.total_steps = f.get_int("total_steps");
  s.seed = static_cast<uint64_t>(f.get_int("seed"));
  if (f.has_value("seconds")) s.seconds = f.raw("seconds").get<double>();
  if (f.has_value("world_size")) s.world_size = f.get_int("world_size");
  if (f.has_value("recipe")) {
    for (const auto& [key, value] : f.raw("recipe").items()) s.recipe.emplace_back(key, value.get<std::string>());
  }
  const auto rng = io::SafetensorsFile::open((fs::path(dir) / "rng_state.safetensors").string());
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(rng.tensor("cpu").clone());
  return s;
}

void check_resume_recipe(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& current) {
  const std::string path = (fs::path(dir) / "trainer_state.json").string();
  const io::ordered_json root = io::parse_json(io::read_file(path), path);
  const auto recorded = root.find("recipe");
  if (recorded == root.end() || !recorded->is_object()) return;
  std::string differences;
  for (const auto& [key, value] : current) {
    const auto old = recorded->find(key);
    if (old == recorded->end() || !old->is_string() || old->get<std::string>() == value) continue;
    differences += c10::str("\n  ", key, ": ", value, " now, ", old->get<std::string>(), " in the checkpoint");
  }
  RANKTUNE_CHECK_CTX(differences.empty(), (ErrorContext{dir, "train.resume_from", -1}),
                     "this checkpoint was made with a different recipe; these keys must not change on resume:",
                     differences, "\nrestore them, or start a new run in another train.output_dir");
}

namespace {

bool is_temporary(const fs::path& path) {
  const std::string name = path.filename().string();
  return name.rfind(kPrefix, 0) == 0 && name.find(".tmp") != std::string::npos;
}

}  // namespace

std::vector<std::string> run_files(const std::string& output_dir) {
  std::vector<std::string> found;
  if (!fs::is_directory(output_dir)) return found;
  std::vector<std::string> names = {"adapter_config.json", "adapter_model.safetensors", "model.safetensors", "metrics.jsonl",
                                    "summary.json", "predictions.jsonl", "training-curve.svg"};
  // Full fine-tuning writes a model directory: its config and tokenizer files belong to the run.
  for (const std::string& name : model::model_directory_file_names()) names.push_back(name);
  for (const std::string& name : names) {
    if (fs::exists(fs::path(output_dir) / name)) found.push_back(name);
  }
  for (const auto& dir : list_checkpoints(output_dir)) found.push_back(fs::path(dir).filename().string());
  return found;
}

void remove_run_files(const std::string& output_dir) {
  for (const auto& name : run_files(output_dir)) fs::remove_all(fs::path(output_dir) / name);
  fs::remove(fs::path(output_dir) / "config.yaml");
  remove_stale_temporaries(output_dir);
}

int64_t remove_stale_temporaries(const std::string& output_dir) {
  int64_t removed = 0;
  if (!fs::is_directory(output_dir)) return removed;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    if (entry.is_directory() && is_temporary(entry.path())) stale.push_back(entry.path());
  }
  for (const auto& path : stale) {
    fs::remove_all(path);
    ++removed;
  }
  return removed;
}

std::vector<std::string> list_checkpoints(const std::string& output_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (fs::is_directory(output_dir)) {
    for (const auto& entry : fs::directory_iterator(output_dir)) {
      const int64_t step = step_of(entry.path());
      if (entry.is_directory() && step >= 0) found.emplace_back(step, entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& item : found) out.push_back(item.second);
  return out;
}

std::string resolve_resume_path(const std::string& resume_from, const std::string& output_dir) {
  if (resume_from == "latest") {
    const auto all = list_checkpoints(output_dir);
    RANKTUNE_CHECK_CTX(!all.empty(), (ErrorContext{output_dir, "train.resume_from", -1}),
                       "resume_from is \"latest\" but there is no checkpoint-<step> directory here");
    return all.back();
  }
  RANKTUNE_CHECK_CTX(fs::exists(fs::path(resume_from) / "trainer_state.json"), (ErrorContext{resume_from, "train.resume_from", -1}),
                     "not a checkpoint directory (no trainer_state.json)");
  return resume_from;
}

void prune_checkpoints(const std::string& output_dir, int64_t keep) {
  if (keep <= 0) return;
  auto all = list_checkpoints(output_dir);
  while (static_cast<int64_t>(all.size()) > keep) {
    fs::remove_all(all.front());
    all.erase(all.begin());
  }
}

}  // namespace ranktune::train
