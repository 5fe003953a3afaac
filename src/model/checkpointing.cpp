#include "checkpointing.h"

#include "ranktune/core/autocast.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/custom_class.h>

#include <mutex>

namespace ranktune::model {
namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs to recompute the block, carried in the context as a capsule.
struct SavedBlock : torch::CustomClassHolder {
  Block fn;
  Tensor rng_state;
  std::optional<at::ScalarType> autocast_dtype;  // backward runs outside autocast: recompute as forward ran
};

Tensor generator_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_generator_state(const Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Block& fn) {
    auto saved = c10::make_intrusive<SavedBlock>();
    saved->fn = fn;
    saved->rng_state = generator_state();
    saved->autocast_dtype = cpu_autocast_dtype();
    ctx->saved_data["block"] = c10::IValue::make_capsule(saved);
    ctx->save_for_backward({x});
    at::NoGradGuard no_grad;
    return fn(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = c10::static_intrusive_pointer_cast<SavedBlock>(ctx->saved_data["block"].toCapsule());
    const Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    const Tensor after_forward = generator_state();
    set_generator_state(saved->rng_state);
    Tensor y;
    {
      at::AutoGradMode grad(true);
      const CpuAutocastScope autocast(saved->autocast_dtype);
      y = saved->fn(x);
    }
    set_generator_state(after_forward);
    torch::autograd::backward({y}, {grads[0]});
    return {x.grad(), Tensor()};
  }
};

}  // namespace

Tensor checkpointed(const Block& fn, const Tensor& x) {
  // The checkpoint's backward only runs if its input needs a gradient; the first block's input
  // (frozen embeddings) does not, so give it one (transformers' enable_input_require_grads).
  const Tensor input = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return Checkpoint::apply(input, fn);
}

}  // namespace ranktune::model
