#include "ranktune/peft/adaptable_model.h"

namespace ranktune::peft {

std::vector<NamedLinear> find_linears(const torch::nn::Module& root) {
  std::vector<NamedLinear> out;
  for (const auto& item : root.named_modules("", /*include_self=*/false)) {
    if (auto linear = std::dynamic_pointer_cast<LinearImpl>(item.value())) out.emplace_back(item.key(), linear);
  }
  return out;
}

std::vector<std::string> ModelView::layer_names() const {
  std::vector<std::string> names;
  for (const auto& item : layers) names.push_back(item.first);
  return names;
}

ModelView view_of(const torch::nn::Module& root, const std::optional<std::string>& output_head) {
  ModelView view;
  if (const auto* model = dynamic_cast<const AdaptableModel*>(&root)) {
    view.output_head = model->output_head_name();
    view.layers = model->adaptable_layers();
    view.name_or_path = model->name_or_path();
    view.task_type = model->task_type();
  } else {
    view.output_head = "lm_head";
    view.layers = find_linears(root);
  }
  if (output_head) view.output_head = *output_head;
  return view;
}

}  // namespace ranktune::peft
