// ranktune's side of the benchmarks: one configuration per process, so peak RSS is that
// configuration's alone. Prints one JSON object; bench/run.sh runs it and the peer alternately.
//
//   build/bench/ranktune_bench train  --shape smollm2 --method lora|dora|full [--steps 6 --warmup 2]
//   build/bench/ranktune_bench decode --shape smollm2 [--merged [--dtype bf16]] [--new-tokens 64] [--profile-top 20]
//                                     [--batch 8 [--ragged] [--group 4]]
//   build/bench/ranktune_bench prefill --shape smollm2 [--prompt 512]   (prompt processing)
//   build/bench/ranktune_bench export --shape smollm2 --out DIR   (the decode model for bench/peers/llamacpp.sh)
//   build/bench/ranktune_bench profile --shape smollm2 --method lora   (docs/performance.md)
//   build/bench/ranktune_bench paired --shape smollm2 --method dora    (DoRA/LoRA step-time ratio)
//   build/bench/ranktune_bench paired --shape mixtral-smollm2 --method lora --against-shape smollm2
//       (an MoE step against the dense model of the same active parameters)
//   build/bench/ranktune_bench --quantize nf4 paired --method lora --against-quantize none  (QLoRA against fp32)
//   build/bench/ranktune_bench paired --method lora --against-precision bf16   (fp32 step / bf16 step)
//   build/bench/ranktune_bench --quantize int8|nf4 [--double-quant] train ...  (QLoRA: quantized base)
//   build/bench/ranktune_bench --quantize nf4 dequant   (quantized product: whole layer vs row chunks)
//
// The model is built from the shape with random weights (nothing is downloaded).

#include <ranktune/core/autocast.h>
#include <ranktune/core/dtype.h>
#include <ranktune/core/threads.h>
#include <ranktune/model/causal_lm.h>
#include <ranktune/model/generation.h>
#include <ranktune/peft/functional.h>
#include <ranktune/peft/inject.h>

#include "step_profile.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/optim/adamw.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

using namespace ranktune;
using Clock = std::chrono::steady_clock;

namespace {

struct Shape {
  int64_t hidden, layers, heads, kv_heads, intermediate, vocab;
  double theta;
  // Mixture of experts (Mixtral's layout): `experts` of MLP size `intermediate`, `top_k` per
  // token. 0: a dense Llama.
  int64_t experts = 0, top_k = 0;
};

Shape shape_named(const std::string& name) {
  // SmolLM2-135M: 30 layers x 576 hidden, 9 heads / 3 KV heads, MLP 1536, vocab 49152, tied.
  if (name == "smollm2") return {576, 30, 9, 3, 1536, 49152, 100000.0};
  // Qwen2.5-1.5B: 28 layers x 1536 hidden, 12 heads / 2 KV heads, MLP 8960, vocab 151936, tied.
  if (name == "qwen2.5-1.5b") return {1536, 28, 12, 2, 8960, 151936, 1000000.0};
  if (name == "tiny") return {64, 2, 4, 2, 128, 512, 10000.0};
  // SmolLM2-135M with Mixtral's sparse MLP: 8 experts of MLP 768, top-2, so each token runs
  // 2 × 768 = 1536 MLP columns — the dense smollm2 shape's active parameters, with 4× its MLP
  // weights in total.
  if (name == "mixtral-smollm2") return {576, 30, 9, 3, 768, 49152, 100000.0, 8, 2};
  throw std::runtime_error("unknown shape '" + name + "' (smollm2, qwen2.5-1.5b, tiny, mixtral-smollm2)");
}

nlohmann::json config_json(const Shape& s) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", s.hidden},
                      {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
                      {"num_key_value_heads", s.kv_heads}, {"intermediate_size", s.intermediate},
                      {"vocab_size", s.vocab}, {"rope_theta", s.theta}, {"rms_norm_eps", 1e-5},
                      {"max_position_embeddings", 2048}, {"tie_word_embeddings", true}};
  if (s.experts > 0) {
    j["architectures"] = {"MixtralForCausalLM"};
    j["model_type"] = "mixtral";
    j["num_local_experts"] = s.experts;
    j["num_experts_per_tok"] = s.top_k;
  }
  return j;
}

model::ModelConfig config_for(const Shape& s) { return model::ModelConfig::from_json(config_json(s).dump(), "bench shape"); }

// Peak resident memory since the process started or since reset_peak_rss().
double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Starts the peak over from the current resident memory (Linux: /proc/self/clear_refs), so that a
// figure excludes what building the model took.
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The fp32 GEMM rate this process gets right now (2048³, best of 3).
double gemm_gflops() {
  const at::Tensor a = at::randn({2048, 2048}), b = at::randn({2048, 2048});
  at::Tensor c = at::mm(a, b);
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    c = at::mm(a, b);
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, 2.0 * 2048 * 2048 * 2048 / s / 1e9);
  }
  return best;
}

// Memory read bandwidth: one sum over `buffer` (far larger than the caches), in GB/s.
double read_bandwidth_gbs(const at::Tensor& buffer) {
  const auto start = Clock::now();
  const double sum = buffer.sum().item<double>();
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!(sum > 0)) throw std::runtime_error("bandwidth probe: the buffer must hold ones");
  return static_cast<double>(buffer.nbytes()) / s / 1e9;
}

// Floating-point operations of one training step (multiply-add = 2), for the achieved rate:
// projections forward (2·P per token) and input gradients (2·P), weight gradients only in full
// fine-tuning (2·P); the tied head likewise; causal attention 2·T·d per token per layer forward
// (QKᵀ and PV over T/2 keys on average) and twice that backward.
double step_flops(const Shape& s, const std::string& method, int64_t batch, int64_t seq) {
  const double head_dim = static_cast<double>(s.hidden / s.heads);
  const double q = s.heads * head_dim, kv = s.kv_heads * head_dim;
  const double mlp = static_cast<double>(s.experts ? s.top_k * s.intermediate : s.intermediate);  // active columns
  const double projections = s.layers * (s.hidden * (q + 2 * kv) + q * s.hidden + 3.0 * s.hidden * mlp);
  const double head = static_cast<double>(s.vocab) * s.hidden;
  const double passes = method == "full" ? 3.0 : 2.0;
  const double tokens = static_cast<double>(batch * seq);
  const double attention = 3.0 * 2.0 * seq * q * s.layers;
  return tokens * (2.0 * passes * (projections + head) + attention);
}

// How the base's projection weights are stored (--quantize, --double-quant).
model::LoadOptions base_options;
// --precision bf16: training forward passes under CPU autocast, as train.precision: bf16.
std::optional<at::ScalarType> autocast_dtype;

// The autocast dtype a --precision value names (fp32: none).
std::optional<at::ScalarType> autocast_for(const std::string& precision) {
  if (precision == "fp32") return std::nullopt;
  if (precision == "bf16") return at::kBFloat16;
  throw std::runtime_error("unknown precision '" + precision + "' (fp32, bf16)");
}
// The results' "precision": fp32 | bf16 (the compute dtype: autocast's, or the weights').
std::string precision_name(at::ScalarType dtype) {
  return dtype == at::kFloat ? "fp32" : dtype == at::kBFloat16 ? "bf16" : dtype_name(dtype);
}

// Bytes the base weights occupy (quantized projections at their quantized size; adapters excluded).
double base_weight_mb(model::CausalLMImpl& model) {
  double bytes = 0;
  for (const auto& p : model.named_parameters()) {
    if (p.key().find("lora_") == std::string::npos) bytes += static_cast<double>(p.value().nbytes());
  }
  for (const auto& [name, linear] : peft::find_linears(model)) {
    if (linear->quantized()) bytes += static_cast<double>(linear->base_weight_nbytes());
  }
  return bytes / 1e6;
}

// Every projection: attention, the dense MLP, and Mixtral's experts (w1/w2/w3; the router stays frozen).
const std::vector<std::string> kTargets = {"q_proj",  "k_proj", "v_proj", "o_proj", "gate_proj",
                                           "up_proj", "down_proj", "w1", "w2", "w3"};

// A model with its adapters (or all weights) trainable, its optimizer and a stream of batches.
struct TrainSetup {
  std::shared_ptr<model::CausalLMImpl> model;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::optional<at::ScalarType> autocast;  // the forward passes' autocast dtype (none: fp32)
  at::Generator gen = at::detail::createCPUGenerator(1);
  double weights_rss_mb = 0;  // resident memory once the model and adapters exist

  TrainSetup(const Shape& shape, const std::string& method, int64_t r, double alpha,
             const model::LoadOptions& load = base_options, std::optional<at::ScalarType> autocast_as = autocast_dtype)
      : autocast(autocast_as) {
    torch::manual_seed(0);
    model = model::create_causal_lm(config_for(shape), load);
    if (method == "full") {
      for (auto& p : model->parameters()) p.set_requires_grad(true);
    } else {
      peft::inject(*model, peft::LoraConfig().r(r).lora_alpha(alpha).use_dora(method == "dora").target_modules(kTargets),
                   "default");
    }
    std::vector<at::Tensor> params;
    for (const auto& p : model->parameters()) {
      if (p.requires_grad()) params.push_back(p);
    }
    optimizer = std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(1e-4).weight_decay(0.0));
    model->train();
    weights_rss_mb = bench::current_rss_mb();
  }

  at::Tensor batch(const Shape& shape, int64_t batch, int64_t seq) {
    return at::randint(0, shape.vocab, {batch, seq}, gen, at::TensorOptions().dtype(at::kLong));
  }
};

// One optimizer step on a fresh batch, as the trainer takes it; its seconds (and its loss).
double timed_step(TrainSetup& setup, const Shape& shape, int64_t batch, int64_t seq, double* loss = nullptr) {
  const at::Tensor ids = setup.batch(shape, batch, seq);
  const auto start = Clock::now();
  at::Tensor l;
  {
    const CpuAutocastScope autocast(setup.autocast);
    l = setup.model->forward(ids, {}, ids, nullptr, /*need_logits=*/false).loss;
  }
  l.backward();
  setup.optimizer->step();
  setup.optimizer->zero_grad();
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  if (loss != nullptr) *loss = l.item<double>();
  return s;
}

nlohmann::ordered_json train(const Shape& shape, const std::string& method, int64_t batch, int64_t seq, int64_t steps,
                             int64_t warmup, int64_t r, double alpha) {
  TrainSetup setup(shape, method, r, alpha);
  std::vector<double> times;
  double loss = 0;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    const double s = timed_step(setup, shape, batch, seq, &loss);
    if (step >= warmup) times.push_back(s);
  }
  const double rss = peak_rss_mb();  // before the GEMM probe adds its buffers
  const double m = median(times);
  const double gflops = step_flops(shape, method, batch, seq) / m / 1e9;
  const double peak = gemm_gflops();
  nlohmann::ordered_json j;
  j["impl"] = "ranktune";
  j["bench"] = "train";
  j["method"] = method;
  j["median_step_s"] = m;
  j["tokens_per_s"] = static_cast<double>(batch * seq) / m;
  j["peak_rss_mb"] = rss;
  j["quantize"] = quant_format_name(base_options.quantize()) + (base_options.double_quant() ? "+dq" : "");
  j["precision"] = precision_name(setup.autocast.value_or(at::kFloat));
  j["base_weight_mb"] = base_weight_mb(*setup.model);
  j["achieved_gflops"] = gflops;
  j["gemm_peak_gflops"] = peak;
  j["share_of_gemm_peak"] = gflops / peak;
  j["steps"] = steps;
  j["loss"] = loss;
  return j;
}

// The step-time ratio of two configurations (methods; shapes: an MoE against the dense model of its
// active parameters; bases: quantized against fp32; or precisions: fp32 against bf16 autocast) with
// both models in one process, their steps alternating (A B A B ...):
// on a machine whose speed drifts between processes (this one's does, by up to 15%), the ratio of
// pairs measured back to back is steadier than a ratio of separate runs. Peak memory is not
// reported: one process holds both models.
struct PairedSide {
  Shape shape;
  std::string method, name;
  model::LoadOptions load = base_options;
  std::optional<at::ScalarType> autocast = autocast_dtype;
};

nlohmann::ordered_json paired(const PairedSide& side_a, const PairedSide& side_b, int64_t batch, int64_t seq,
                              int64_t steps, int64_t warmup, int64_t r, double alpha) {
  const Shape &shape_a = side_a.shape, &shape_b = side_b.shape;
  const std::string &name_a = side_a.name, &name_b = side_b.name;
  TrainSetup a(shape_a, side_a.method, r, alpha, side_a.load, side_a.autocast),
      b(shape_b, side_b.method, r, alpha, side_b.load, side_b.autocast);
  std::vector<double> times_a, times_b, ratios;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    const double ta = timed_step(a, shape_a, batch, seq), tb = timed_step(b, shape_b, batch, seq);
    if (step < warmup) continue;
    times_a.push_back(ta);
    times_b.push_back(tb);
    ratios.push_back(tb / ta);
  }
  nlohmann::ordered_json j;
  j["impl"] = "ranktune";
  j["bench"] = "paired";
  j["method"] = name_b + "/" + name_a;
  j["median_step_s_" + name_a] = median(times_a);
  j["median_step_s_" + name_b] = median(times_b);
  j["median_ratio"] = median(ratios);
  j["ratios"] = ratios;
  j["steps"] = steps;
  return j;
}

// Where the time and memory of a step go: the phases, the operators that take the most time,
// and resident memory with weights only, while activations are held (after forward) and at peak.
nlohmann::ordered_json profile(const Shape& shape, const std::string& method, int64_t batch, int64_t seq,
                               int64_t steps, int64_t warmup, int64_t r, double alpha, int top) {
  TrainSetup setup(shape, method, r, alpha);
  double forward_s = 0, backward_s = 0, optimizer_s = 0, after_forward_mb = 0;
  std::unique_ptr<bench::StepProfile> recorder;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    if (step == warmup) recorder = std::make_unique<bench::StepProfile>();
    const bool measured = step >= warmup;
    const at::Tensor ids = setup.batch(shape, batch, seq);
    if (recorder) recorder->set_phase("forward");
    auto t0 = Clock::now();
    at::Tensor l;
    {
      const CpuAutocastScope autocast(setup.autocast);
      l = setup.model->forward(ids, {}, ids, nullptr, /*need_logits=*/false).loss;
    }
    auto t1 = Clock::now();
    if (measured) after_forward_mb = std::max(after_forward_mb, bench::current_rss_mb());
    if (recorder) recorder->set_phase("backward");
    l.backward();
    auto t2 = Clock::now();
    if (recorder) recorder->set_phase("optimizer");
    setup.optimizer->step();
    setup.optimizer->zero_grad();
    auto t3 = Clock::now();
    if (measured) {
      forward_s += std::chrono::duration<double>(t1 - t0).count();
      backward_s += std::chrono::duration<double>(t2 - t1).count();
      optimizer_s += std::chrono::duration<double>(t3 - t2).count();
    }
  }
  const double n = static_cast<double>(steps);
  const double step_s = (forward_s + backward_s + optimizer_s) / n;
  nlohmann::ordered_json j;
  j["impl"] = "ranktune";
  j["bench"] = "profile";
  j["method"] = method;
  j["step_s"] = step_s;
  j["tokens_per_s"] = static_cast<double>(batch * seq) / step_s;
  j["forward_s"] = forward_s / n;
  j["backward_s"] = backward_s / n;
  j["optimizer_s"] = optimizer_s / n;
  j["weights_rss_mb"] = setup.weights_rss_mb;
  j["after_forward_rss_mb"] = after_forward_mb;
  j["peak_rss_mb"] = peak_rss_mb();
  j["operators"] = recorder->report(step_s, steps, top);
  return j;
}

// Forward and input-gradient time of one quantized projection (the shape's gate_proj and
// down_proj) with the weight dequantized whole, and in row chunks of several sizes.
nlohmann::ordered_json dequant(const Shape& shape, int64_t batch, int64_t seq, int64_t repeats) {
  if (base_options.quantize() == QuantFormat::none) throw std::runtime_error("dequant needs --quantize int8|nf4");
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (auto [out, in] : {std::pair{shape.intermediate, shape.hidden}, std::pair{shape.hidden, shape.intermediate}}) {
    const auto w = QuantizedWeight::quantize(at::randn({out, in}) * 0.02, base_options.quantize(),
                                             base_options.double_quant());
    const at::Tensor x = at::randn({batch * seq, in}).requires_grad_(true);
    const at::Tensor g = at::randn({batch * seq, out});
    for (int64_t chunk : {int64_t{0}, int64_t{16}, int64_t{64}, (int64_t{1} << 18) / in, int64_t{1024}}) {
      std::vector<double> times;
      for (int64_t i = 0; i < repeats + 1; ++i) {
        const auto start = Clock::now();
        peft::functional::quantized_linear(x, w, {}, {}, chunk).backward(g);
        if (i > 0) times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
        x.mutable_grad().reset();
      }
      rows.push_back({{"out", out}, {"in", in}, {"rows_per_chunk", chunk == 0 ? out : std::min(chunk, out)},
                      {"forward_backward_ms", 1e3 * median(times)}});
    }
    // The dense product for comparison.
    const at::Tensor dense = w.dequantize(at::kFloat);
    std::vector<double> times;
    for (int64_t i = 0; i < repeats + 1; ++i) {
      const auto start = Clock::now();
      peft::functional::linear(x, dense).backward(g);
      if (i > 0) times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
      x.mutable_grad().reset();
    }
    rows.push_back({{"out", out}, {"in", in}, {"rows_per_chunk", "dense fp32"}, {"forward_backward_ms", 1e3 * median(times)}});
  }
  nlohmann::ordered_json j;
  j["impl"] = "ranktune";
  j["bench"] = "dequant";
  j["quantize"] = quant_format_name(base_options.quantize()) + (base_options.double_quant() ? "+dq" : "");
  j["tokens"] = batch * seq;
  j["layers"] = rows;
  return j;
}

// What a decode run varies: rows in parallel, their prompts, and how they end.
struct DecodeSetup {
  bool merged = false;
  int64_t prompt_length = 32, new_tokens = 64, repeats = 3, batch = 1;
  // Prompts of different lengths (prompt_length down to half of it) and rows that stop at
  // different times (each after a length its first token decides, from half of new_tokens up).
  bool ragged = false;
  // > 1: batch / group prompts, each sampled `group` times from one prefill (num_return_sequences).
  int64_t group = 1;
  // The dtype the merged model is held in (bf16: half the bytes a step reads).
  at::ScalarType dtype = at::kFloat;
};

// The model as a Hugging Face directory: config.json and model.safetensors (base weights, fp32).
void save_model_dir(const Shape& shape, model::CausalLMImpl& model, const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config_json(shape).dump(2) << "\n";
  model::save_model_weights(model, dir + "/model.safetensors");
}

// The decode model: random fp32 weights with a LoRA adapter, merged or not. Another `dtype` (merged
// only) converts the merged model as `ranktune generate --dtype` converts a checkpoint: written
// out in fp32 and read back by load_causal_lm in `dtype`, so both precisions hold the same
// weights up to rounding (and llama.cpp's BF16 GGUF, rounded from the same fp32 arrays, equals it).
std::shared_ptr<model::CausalLMImpl> decode_model(const Shape& shape, bool merged, int64_t r, double alpha,
                                                  at::ScalarType dtype = at::kFloat) {
  if (dtype != at::kFloat && !merged) throw std::runtime_error("--dtype other than float32 needs --merged");
  torch::manual_seed(0);
  auto model = model::create_causal_lm(config_for(shape));
  peft::inject(*model, peft::LoraConfig().r(r).lora_alpha(alpha).target_modules(kTargets), "default");
  if (merged) peft::merge_adapters(*model);
  if (dtype == at::kFloat) return model;
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("ranktune_bench_model." + std::to_string(getpid()))).string();
  save_model_dir(shape, *model, dir);
  model.reset();
  auto converted = model::load_causal_lm(dir, model::LoadOptions().dtype(dtype));
  std::filesystem::remove_all(dir);  // converted weights are copies, not views of the file
  return converted;
}

// `profile_top` > 0 also lists the operators that take the most time (recording costs a little);
// the number of ATen calls per decoding step is always counted, in one extra run.
nlohmann::ordered_json decode(const Shape& shape, const DecodeSetup& d, int64_t r, double alpha, int profile_top) {
  if (d.group < 1 || d.batch % d.group != 0) throw std::runtime_error("--group must divide --batch");
  auto model = decode_model(shape, d.merged, r, alpha, d.dtype);
  reset_peak_rss();  // the decoder's peak, not the fp32 model a conversion started from
  at::Generator gen = at::detail::createCPUGenerator(2);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t b = 0; b < d.batch / d.group; ++b) {
    const int64_t length = d.ragged ? d.prompt_length - b * d.prompt_length / (2 * d.batch) : d.prompt_length;
    const at::Tensor ids = at::randint(0, shape.vocab, {length}, gen, at::TensorOptions().dtype(at::kLong));
    prompts.emplace_back(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + length);
  }
  auto options = model::GenerationOptions().max_new_tokens(d.new_tokens);
  if (d.group > 1) options.num_return_sequences(d.group).temperature(1.0).seed(5);
  if (d.ragged) {
    const int64_t n = d.new_tokens;
    options.stop([n](const std::vector<int64_t>& g) { return static_cast<int64_t>(g.size()) >= n / 2 + g[0] % (n / 2 + 1); });
  }
  int64_t steps = 0;  // forward passes of the last call: the longest row's length
  const auto generate = [&] {
    const auto start = Clock::now();
    const auto out = model::generate(*model, prompts, options);
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    double tokens = 0;
    steps = 0;
    for (const auto& g : out) {
      tokens += static_cast<double>(g.tokens.size());
      steps = std::max<int64_t>(steps, static_cast<int64_t>(g.tokens.size()));
    }
    return std::make_pair(tokens, s);
  };
  generate();  // warm-up; every repeat is the same, so its peak is the decoder's
  const double rss = peak_rss_mb();
  // The machine's bandwidth drifts (other tenants): sample it between the timed repeats, so the
  // limit is measured under the same conditions as the decoding it bounds.
  const at::Tensor probe = at::ones({128 * 1024 * 1024});  // 512 MiB
  std::vector<double> rates, bandwidths;
  std::unique_ptr<bench::StepProfile> recorder;
  double recorded_s = 0;
  for (int64_t i = 0; i < d.repeats; ++i) {
    bandwidths.push_back(read_bandwidth_gbs(probe));
    if (profile_top > 0 && !recorder) recorder = std::make_unique<bench::StepProfile>();
    if (recorder) recorder->set_phase("decode");
    const auto [tokens, s] = generate();
    if (recorder) recorder->set_phase("");  // the probe is not part of decoding
    rates.push_back(tokens / s);
    recorded_s += s;
  }
  nlohmann::ordered_json operators;
  if (recorder) {
    operators = recorder->report(recorded_s / static_cast<double>(d.repeats), d.repeats, profile_top);
    recorder.reset();
  }
  // ATen calls per decoding step: one recorded call's (prefill included) over its longest row's tokens.
  double calls_per_step = 0;
  {
    bench::StepProfile counter;
    counter.set_phase("decode");
    generate();
    counter.set_phase("");
    calls_per_step = static_cast<double>(counter.report(1, 1, 0)["all_calls_per_step"].get<int64_t>()) / static_cast<double>(steps);
  }
  // Each new token reads every weight once (adapters too when unmerged): the memory-bound limit.
  double weight_bytes = 0;
  for (const auto& p : model->parameters()) weight_bytes += static_cast<double>(p.nbytes());
  const double bandwidth = median(bandwidths);
  const double limit = bandwidth * 1e9 / weight_bytes;
  nlohmann::ordered_json j;
  j["impl"] = "ranktune";
  j["bench"] = d.batch == 1 ? "decode" : "decode-batch" + std::to_string(d.batch) + (d.ragged ? "-ragged" : "") +
                                           (d.group > 1 ? "-group" + std::to_string(d.group) : "");
  j["method"] = d.merged ? "lora-merged" : "lora-unmerged";
  j["precision"] = precision_name(d.dtype);
  j["tokens_per_s"] = median(rates);
  j["aten_calls_per_step"] = calls_per_step;
  j["read_bandwidth_gbs"] = bandwidth;
  j["weight_mb"] = weight_bytes / 1e6;
  if (d.batch == 1) {
    j["bandwidth_limit_tokens_per_s"] = limit;
    j["share_of_bandwidth_limit"] = median(rates) / limit;
  }
  j["peak_rss_mb"] = rss;
  if (!operators.is_null()) j["operators"] = operators;
  return j;
}

// Prompt processing: one forward pass over `prompt_length` tokens into an empty cache, as a
// generate call's first step (llama.cpp's pp512).
nlohmann::ordered_json prefill(const Shape& shape, bool merged, int64_t prompt_length, int64_t repeats, int64_t r,
                               double alpha) {
  auto model = decode_model(shape, merged, r, alpha);
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor ids = at::randint(0, shape.vocab, {prompt_length}, gen, at::TensorOptions().dtype(at::kLong));
  const std::vector<int64_t> prompt(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + prompt_length);
  std::vector<double> rates;
  for (int64_t i = 0; i < repeats + 1; ++i) {
    const auto start = Clock::now();
    model::generate(*model, {prompt}, model::GenerationOptions().max_new_tokens(1));
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (i > 0) rates.push_back(static_cast<double>(prompt_length) / s);
  }
  nlohmann::ordered_json j;
  j["impl"] = "ranktune";
  j["bench"] = "prefill" + std::to_string(prompt_length);
  j["method"] = merged ? "lora-merged" : "lora-unmerged";
  j["tokens_per_s"] = median(rates);
  j["peak_rss_mb"] = peak_rss_mb();
  return j;
}

// Writes a model's last-position logits for `ids` to `path` as raw fp32.
void write_last_logits(model::CausalLMImpl& model, const std::vector<int64_t>& ids, const std::string& path) {
  at::NoGradGuard no_grad;
  model.eval();
  const at::Tensor input = at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
  const at::Tensor logits = model.forward(input).logits[0][-1].to(at::kFloat).contiguous();
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(logits.data_ptr()), static_cast<std::streamsize>(logits.nbytes()));
}

// The decode benchmark's model (adapter merged) as a Hugging Face directory for other
// implementations (bench/peers/llamacpp.sh), with its last-position logits for `ids` as raw fp32:
// logits.f32 from the fp32 model, logits.bf16.f32 from the same weights read back in bf16 (as
// decode --dtype bf16 holds them).
nlohmann::ordered_json export_model(const Shape& shape, const std::string& dir, const std::vector<int64_t>& ids, int64_t r,
                                    double alpha) {
  auto model = decode_model(shape, /*merged=*/true, r, alpha);
  save_model_dir(shape, *model, dir);
  write_last_logits(*model, ids, dir + "/logits.f32");
  model.reset();
  write_last_logits(*model::load_causal_lm(dir, model::LoadOptions().dtype(at::kBFloat16)), ids, dir + "/logits.bf16.f32");
  nlohmann::ordered_json j;
  j["impl"] = "ranktune";
  j["bench"] = "export";
  j["dir"] = dir;
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ranktune benchmarks (one configuration per process)"};
  std::string shape_name = "smollm2", method = "lora";
  int64_t batch = 4, seq = 256, steps = 6, warmup = 2, r = 16, prompt = 512, repeats = 3;
  int threads = 2;
  double alpha = 32;
  DecodeSetup d;
  bool merged = false;
  app.add_option("--shape", shape_name, "smollm2 | qwen2.5-1.5b | tiny | mixtral-smollm2");
  app.add_option("--threads", threads, "intra-op threads");
  app.add_option("--r", r, "LoRA rank");
  app.add_option("--alpha", alpha, "LoRA alpha");
  std::string quantize = "none";
  bool double_quant = false;
  app.add_option("--quantize", quantize, "store the base's projection weights quantized: none | int8 | nf4");
  app.add_flag("--double-quant", double_quant, "nf4: quantize the block scales too");
  std::string precision = "fp32";
  app.add_option("--precision", precision, "fp32 | bf16: training steps under CPU autocast (train.precision)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  auto* train_cmd = app.add_subcommand("train", "median time of a training step");
  train_cmd->add_option("--method", method, "lora | dora | full");
  train_cmd->add_option("--batch", batch);
  train_cmd->add_option("--seq", seq);
  train_cmd->add_option("--steps", steps, "measured steps");
  train_cmd->add_option("--warmup", warmup, "steps before measuring");
  auto* decode_cmd = app.add_subcommand("decode", "greedy decoding (batch 1 unless --batch)");
  decode_cmd->add_flag("--merged", d.merged, "merge the adapter into the weights first");
  decode_cmd->add_option("--prompt", d.prompt_length, "prompt tokens");
  decode_cmd->add_option("--new-tokens", d.new_tokens);
  decode_cmd->add_option("--repeats", d.repeats);
  decode_cmd->add_option("--batch", d.batch, "rows decoded in parallel");
  decode_cmd->add_flag("--ragged", d.ragged, "prompts of different lengths, rows stopping at different times");
  decode_cmd->add_option("--group", d.group, "samples per prompt from one prefill (num_return_sequences)");
  std::string decode_dtype = "float32";
  decode_cmd->add_option("--dtype", decode_dtype, "hold the merged model in this dtype: float32 | bfloat16 (bf16)");
  auto* prefill_cmd = app.add_subcommand("prefill", "prompt processing: one forward pass over the prompt");
  prefill_cmd->add_flag("--merged", merged, "merge the adapter into the weights first");
  prefill_cmd->add_option("--prompt", prompt, "prompt tokens (512)");
  prefill_cmd->add_option("--repeats", repeats);
  int top = 25, decode_top = 0;
  std::string against = "lora";
  auto* paired_cmd = app.add_subcommand("paired", "step-time ratio of two methods, alternating steps in one process");
  paired_cmd->add_option("--method", method, "lora | dora | full")->required();
  paired_cmd->add_option("--against", against, "the method in the denominator");
  std::string against_shape, against_quantize, against_precision;
  paired_cmd->add_option("--against-quantize", against_quantize,
                         "the base storage in the denominator (same method and shape), e.g. none against --quantize nf4");
  paired_cmd->add_option("--against-shape", against_shape,
                         "the shape in the denominator (same method), e.g. the dense model of an MoE's active parameters");
  paired_cmd->add_option("--against-precision", against_precision,
                         "the precision in the denominator (same method), e.g. bf16 against the default fp32")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  paired_cmd->add_option("--batch", batch);
  paired_cmd->add_option("--seq", seq);
  paired_cmd->add_option("--steps", steps, "measured pairs of steps");
  paired_cmd->add_option("--warmup", warmup, "pairs before measuring");
  decode_cmd->add_option("--profile-top", decode_top, "also list this many operators by time (per generate call)");
  auto* profile_cmd = app.add_subcommand("profile", "where a training step's time and memory go");
  profile_cmd->add_option("--method", method, "lora | dora | full");
  profile_cmd->add_option("--batch", batch);
  profile_cmd->add_option("--seq", seq);
  profile_cmd->add_option("--steps", steps, "profiled steps");
  profile_cmd->add_option("--warmup", warmup, "steps before profiling");
  profile_cmd->add_option("--top", top, "operators to list");
  auto* dequant_cmd = app.add_subcommand("dequant", "a quantized product: the weight dequantized whole or in row chunks");
  dequant_cmd->add_option("--batch", batch);
  dequant_cmd->add_option("--seq", seq);
  dequant_cmd->add_option("--repeats", repeats);
  auto* export_cmd = app.add_subcommand("export", "write the decode model (merged) as a Hugging Face directory");
  std::string export_dir;
  std::vector<int64_t> export_ids = {1, 4, 17, 300, 2049, 9000, 31, 48000};
  export_cmd->add_option("--out", export_dir, "directory for config.json, model.safetensors, logits.f32")->required();
  export_cmd->add_option("--ids", export_ids, "token ids whose last-position logits go to logits.f32");
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  try {
    configure_threads(threads);
    base_options.quantize(parse_quant_format(quantize)).double_quant(double_quant);
    autocast_dtype = autocast_for(precision);
    d.dtype = parse_dtype(decode_dtype);
    const Shape shape = shape_named(shape_name);
    nlohmann::ordered_json out;
    if (train_cmd->parsed()) {
      out = train(shape, method, batch, seq, steps, warmup, r, alpha);
    } else if (paired_cmd->parsed()) {
      PairedSide a{shape, against, against}, b{shape, method, method};
      if (!against_shape.empty()) a = {shape_named(against_shape), method, against_shape}, b.name = shape_name;
      if (!against_quantize.empty()) {
        a = {shape, method, against_quantize, model::LoadOptions().quantize(parse_quant_format(against_quantize))};
        b.name = quantize + (double_quant ? "+dq" : "");
      }
      if (!against_precision.empty()) {
        a = {shape, method, against_precision, base_options, autocast_for(against_precision)};
        b.name = precision;
      }
      out = paired(a, b, batch, seq, steps, warmup, r, alpha);
    } else if (dequant_cmd->parsed()) {
      out = dequant(shape, batch, seq, repeats);
    } else if (profile_cmd->parsed()) {
      out = profile(shape, method, batch, seq, steps, warmup, r, alpha, top);
    } else if (export_cmd->parsed()) {
      out = export_model(shape, export_dir, export_ids, r, alpha);
    } else if (prefill_cmd->parsed()) {
      out = prefill(shape, merged, prompt, repeats, r, alpha);
    } else {
      out = decode(shape, d, r, alpha, decode_top);
    }
    out["shape"] = shape_name;
    out["threads"] = threads;
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
