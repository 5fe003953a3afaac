#include "test_util.h"

#include <ATen/ATen.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>

namespace ranktune::testing {

torch::Tensor numeric_gradient(const std::function<double()>& loss, torch::Tensor param, double eps) {
  at::NoGradGuard no_grad;
  torch::Tensor flat = param.view({-1});
  torch::Tensor grad = torch::zeros_like(flat);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double saved = flat[i].item<double>();
    flat[i] = saved + eps;
    const double up = loss();
    flat[i] = saved - eps;
    const double down = loss();
    flat[i] = saved;
    grad[i] = (up - down) / (2 * eps);
  }
  return grad.view(param.sizes());
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.defined() && !b.defined()) return 0.0;
  if (!a.defined() || !b.defined()) return INFINITY;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// ---- AllocationTracker ----------------------------------------------------------------------------

namespace {

struct Counters {
  std::atomic<int64_t> current{0};
  std::atomic<int64_t> peak{0};
};

class CountingAllocator final : public c10::Allocator {
 public:
  CountingAllocator(c10::Allocator* inner, Counters* counters) : inner_(inner), counters_(counters) {}

  c10::DataPtr allocate(size_t n) const override {
    c10::DataPtr data = inner_->allocate(n);
    void* raw = data.get();
    const c10::Device device = data.device();
    const int64_t now = counters_->current.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t peak = counters_->peak.load();
    while (now > peak && !counters_->peak.compare_exchange_weak(peak, now)) {
    }
    auto* context = new Context{std::move(data), n, counters_};
    return {raw, context, &Context::release, device};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

 private:
  struct Context {
    c10::DataPtr inner;
    size_t size;
    Counters* counters;
    static void release(void* ptr) {
      auto* context = static_cast<Context*>(ptr);
      context->counters->current.fetch_sub(static_cast<int64_t>(context->size));
      delete context;
    }
  };
  c10::Allocator* inner_;
  Counters* counters_;
};

Counters g_counters;
c10::Allocator* g_previous = nullptr;
std::unique_ptr<CountingAllocator> g_allocator;

}  // namespace

AllocationTracker::AllocationTracker() {
  g_counters.current = 0;
  g_counters.peak = 0;
  g_previous = c10::GetCPUAllocator();
  g_allocator = std::make_unique<CountingAllocator>(g_previous, &g_counters);
  c10::SetCPUAllocator(g_allocator.get(), /*priority=*/100);
}

AllocationTracker::~AllocationTracker() {
  // Blocks allocated through the tracker may outlive it: they free through their own context.
  c10::SetCPUAllocator(g_previous, /*priority=*/100);
  g_allocator.release();  // intentionally leaked: live DataPtrs may still reference it
}

int64_t AllocationTracker::peak_bytes() const { return g_counters.peak.load(); }
int64_t AllocationTracker::current_bytes() const { return g_counters.current.load(); }

// ---- TinyModel ----------------------------------------------------------------------------------

TinyAttentionImpl::TinyAttentionImpl(int64_t hidden, bool bias) {
  auto make = [&](const char* name) {
    return register_module(name, peft::Linear(peft::LinearOptions(hidden, hidden).bias(bias)));
  };
  q_proj = make("q_proj");
  k_proj = make("k_proj");
  v_proj = make("v_proj");
  o_proj = make("o_proj");
}

TinyMlpImpl::TinyMlpImpl(int64_t hidden, int64_t intermediate) {
  gate_proj = register_module("gate_proj", peft::Linear(peft::LinearOptions(hidden, intermediate).bias(false)));
  up_proj = register_module("up_proj", peft::Linear(peft::LinearOptions(hidden, intermediate).bias(false)));
  down_proj = register_module("down_proj", peft::Linear(peft::LinearOptions(intermediate, hidden).bias(false)));
}

TinyBlockImpl::TinyBlockImpl(int64_t hidden, int64_t intermediate, bool bias) {
  self_attn = register_module("self_attn", TinyAttention(hidden, bias));
  mlp = register_module("mlp", TinyMlp(hidden, intermediate));
  norm_weight = register_parameter("input_layernorm_weight", torch::ones({hidden}), false);
}

torch::Tensor TinyBlockImpl::forward(const torch::Tensor& x) {
  const torch::Tensor h = x * norm_weight;
  const torch::Tensor attn = self_attn->o_proj(
      torch::tanh(self_attn->q_proj(h)) * self_attn->k_proj(h) + self_attn->v_proj(h));
  const torch::Tensor y = x + attn;
  return y + mlp->down_proj(torch::silu(mlp->gate_proj(y)) * mlp->up_proj(y));
}

TinyBodyImpl::TinyBodyImpl(int64_t n_layers, int64_t hidden, int64_t intermediate, bool bias) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < n_layers; ++i) layers->push_back(TinyBlock(hidden, intermediate, bias));
}

TinyModelImpl::TinyModelImpl(int64_t n_layers, int64_t hidden, int64_t intermediate, bool bias, int64_t vocab) {
  model = register_module("model", TinyBody(n_layers, hidden, intermediate, bias));
  lm_head = register_module("lm_head", peft::Linear(peft::LinearOptions(hidden, vocab).bias(false)));
}

torch::Tensor TinyModelImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (const auto& layer : *model->layers) h = layer->as<TinyBlockImpl>()->forward(h);
  return lm_head(h);
}

}  // namespace ranktune::testing
