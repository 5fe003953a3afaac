// Links against the installed ranktune and runs one LoRA step through its public headers.
#include <ranktune/peft/linear.h>
#include <ranktune/version.h>

#include <iostream>

int main() {
  ranktune::peft::Linear layer(ranktune::peft::LinearOptions(8, 4));
  layer->add_adapter("default", ranktune::peft::AdapterOptions().r(2).lora_alpha(4));
  torch::Tensor x = torch::randn({3, 8});
  torch::Tensor y = layer->forward(x);
  y.sum().backward();
  const bool ok = y.sizes() == torch::IntArrayRef({3, 4}) && layer->adapter("default").lora_B.grad().defined() &&
                  !layer->weight.grad().defined();
  std::cout << "ranktune " << RANKTUNE_VERSION << (ok ? " consumer ok" : " consumer FAILED") << std::endl;
  return ok ? 0 : 1;
}
