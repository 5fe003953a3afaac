// Adapter basics: a frozen layer learns a low-rank change with LoRA and with DoRA, then the
// adapter is merged into the weight. This is the README's C++ example, built by CMake.
//
//   ./build/examples/adapter_basics

#include <ranktune/core/threads.h>
#include <ranktune/peft/inject.h>
#include <ranktune/peft/linear.h>

#include <torch/nn/functional/linear.h>
#include <torch/optim/adamw.h>

#include <cstdio>

using namespace ranktune::peft;

// Trains one adapter on the layer so that it reproduces `target`; returns the final loss.
static double fit(Linear& layer, const AdapterOptions& options, const torch::Tensor& x, const torch::Tensor& target) {
  layer->add_adapter("default", options);
  const Adapter& a = layer->adapter("default");
  std::vector<torch::Tensor> params = {a.lora_A, a.lora_B};
  if (a.magnitude.defined()) params.push_back(a.magnitude);
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.0));
  double loss_value = 0;
  for (int step = 0; step < 300; ++step) {
    optimizer.zero_grad();
    torch::Tensor loss = (layer->forward(x) - target).square().mean();
    loss.backward();
    optimizer.step();
    loss_value = loss.item<double>();
  }
  return loss_value;
}

int main() {
  ranktune::configure_threads();
  torch::manual_seed(0);
  // The "new task": the base weight plus a rank-4 change that the adapter has to find.
  const int64_t in = 256, out = 128;
  const torch::Tensor x = torch::randn({512, in});
  for (const bool dora : {false, true}) {
    Linear layer(LinearOptions(in, out));
    const torch::Tensor change = 0.01 * torch::randn({out, 4}).mm(torch::randn({4, in}));
    const torch::Tensor target = torch::nn::functional::linear(x, layer->weight + change, layer->bias).detach();
    const double before = (layer->forward(x) - target).square().mean().item<double>();
    const double after = fit(layer, AdapterOptions().r(8).lora_alpha(16).use_dora(dora), x, target);
    const torch::Tensor adapted = layer->forward(x).detach();
    layer->merge(/*safe=*/true);
    const double merge_error = (layer->forward(x) - adapted).abs().max().item<double>();
    std::printf("%s: mse %.2e -> %.2e after 300 steps; merged output differs by %.1e\n", dora ? "DoRA" : "LoRA",
                before, after, merge_error);
  }
  return 0;
}
