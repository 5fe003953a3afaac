#pragma once
// Helpers shared by the C++ tests: where ../shared is, finite-difference gradients, a counting
// CPU allocator, and a small Hugging Face-shaped model built from peft::Linear layers.

#include "ranktune/core/error.h"
#include "ranktune/peft/linear.h"

#include <gtest/gtest.h>
#include <torch/nn/modules/container/modulelist.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace ranktune::testing {

// `../shared` beside the checkout, or "" when it is absent.
std::string shared_dir();

// Skips the current test, with a message, when ../shared (or a file in it) is missing.
#define RANKTUNE_REQUIRE_SHARED(relative_path)                                                       \
  do {                                                                                               \
    if (::ranktune::testing::shared_dir().empty() ||                                                 \
        !std::filesystem::exists(::ranktune::testing::shared_dir() + "/" + (relative_path))) {       \
      GTEST_SKIP() << "needs ../shared/" << (relative_path) << " (not present on this machine)";      \
    }                                                                                                \
  } while (false)

// Whether libsentencepiece (tokenizer.model files) can be loaded: not in an AddressSanitizer build
// (src/tokenizer/sentencepiece_library.cpp explains why).
bool sentencepiece_loadable();

// Skips the current test, with a message, when libsentencepiece cannot be loaded.
#define RANKTUNE_REQUIRE_SENTENCEPIECE()                                                             \
  do {                                                                                               \
    if (!::ranktune::testing::sentencepiece_loadable()) {                                            \
      GTEST_SKIP() << "libsentencepiece cannot be loaded in an AddressSanitizer build";              \
    }                                                                                                \
  } while (false)

// Central differences of a scalar function with respect to every element of `param` (which is
// perturbed in place and restored). Double precision expected.
torch::Tensor numeric_gradient(const std::function<double()>& loss, torch::Tensor param, double eps = 1e-6);

// The message of the ranktune::Error that `f` throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ranktune::Error& e) {
    return e.what();
  }
  return "";
}

// The ranktune::Error that `f` throws, to check its context(); fails the test when none is thrown.
template <typename F>
ranktune::Error thrown_error(F&& f) {
  try {
    f();
  } catch (const ranktune::Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a ranktune::Error";
  return ranktune::Error("no error");
}

// Largest |a - b| (0 for two undefined tensors).
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

// Counts the bytes of every CPU tensor allocation while alive (not thread-safe to nest).
class AllocationTracker {
 public:
  AllocationTracker();
  ~AllocationTracker();
  int64_t peak_bytes() const;     // highest live total since construction
  int64_t current_bytes() const;  // live bytes allocated since construction
};

// A Llama-shaped stack of peft::Linear layers with Hugging Face names:
//   model.layers.<i>.self_attn.{q,k,v,o}_proj, model.layers.<i>.mlp.{gate,up,down}_proj, lm_head
struct TinyAttentionImpl : torch::nn::Module {
  explicit TinyAttentionImpl(int64_t hidden, bool bias);
  peft::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(TinyAttention);

struct TinyMlpImpl : torch::nn::Module {
  TinyMlpImpl(int64_t hidden, int64_t intermediate);
  peft::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(TinyMlp);

struct TinyBlockImpl : torch::nn::Module {
  TinyBlockImpl(int64_t hidden, int64_t intermediate, bool bias);
  torch::Tensor forward(const torch::Tensor& x);
  TinyAttention self_attn{nullptr};
  TinyMlp mlp{nullptr};
  torch::Tensor norm_weight;
};
TORCH_MODULE(TinyBlock);

struct TinyBodyImpl : torch::nn::Module {
  TinyBodyImpl(int64_t layers, int64_t hidden, int64_t intermediate, bool bias);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(TinyBody);

struct TinyModelImpl : torch::nn::Module {
  explicit TinyModelImpl(int64_t layers = 2, int64_t hidden = 16, int64_t intermediate = 24, bool bias = false,
                         int64_t vocab = 32);
  // A residual MLP-ish stack: enough to exercise every projection (not a real transformer).
  torch::Tensor forward(const torch::Tensor& x);
  TinyBody model{nullptr};
  peft::Linear lm_head{nullptr};
};
TORCH_MODULE(TinyModel);

}  // namespace ranktune::testing
