#include "ranktune/peft/weighted_adapter.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>

#include <cmath>

namespace ranktune::peft {

CombinationType parse_combination_type(const std::string& text) {
  if (text == "linear") return CombinationType::linear;
  if (text == "cat") return CombinationType::cat;
  if (text == "svd") return CombinationType::svd;
  throw Error("unknown combination '" + text + "'; allowed: linear, cat, svd", ErrorContext{"", "combination_type", -1});
}

void add_weighted_adapter_to_layer(LinearImpl& layer, const std::vector<std::string>& adapters,
                                   const std::vector<double>& weights, const std::string& new_name,
                                   int64_t new_rank, bool use_rslora, const WeightedAdapterOptions& options) {
  RANKTUNE_CHECK(adapters.size() == weights.size(), "add_weighted_adapter: ", adapters.size(), " adapters but ",
                 weights.size(), " weights");
  std::vector<const Adapter*> sources;
  std::vector<double> source_weights;
  for (size_t i = 0; i < adapters.size(); ++i) {
    if (!layer.has_adapter(adapters[i])) continue;
    const Adapter& a = layer.adapter(adapters[i]);
    RANKTUNE_CHECK(!a.options.use_dora(), "add_weighted_adapter: adapter '", a.name,
                   "' uses DoRA; its magnitude vector cannot be combined (combine LoRA adapters only)");
    sources.push_back(&a);
    source_weights.push_back(weights[i]);
  }
  RANKTUNE_CHECK(!sources.empty(), "add_weighted_adapter: none of the adapters exists on this layer");

  torch::Tensor a_new, b_new;
  {
    at::NoGradGuard no_grad;
    const auto dtype = sources[0]->lora_A.scalar_type();
    switch (options.combination_type()) {
      case CombinationType::linear: {
        a_new = torch::zeros({new_rank, layer.options.in_features()}, sources[0]->lora_A.options());
        b_new = torch::zeros({layer.options.out_features(), new_rank}, sources[0]->lora_B.options());
        for (size_t i = 0; i < sources.size(); ++i) {
          const double ws = source_weights[i] * sources[i]->scaling;
          RANKTUNE_CHECK(ws >= 0, "add_weighted_adapter: combination 'linear' takes the square root of weight x scaling, "
                         "which is negative for adapter '", sources[i]->name, "'; use 'cat' or 'svd' for negative weights");
          RANKTUNE_CHECK(sources[i]->options.r() == new_rank, "add_weighted_adapter: combination 'linear' needs equal ranks; '",
                         sources[i]->name, "' has r=", sources[i]->options.r(), ", expected ", new_rank);
          a_new.add_(sources[i]->lora_A, std::sqrt(ws));
          b_new.add_(sources[i]->lora_B, std::sqrt(ws));
        }
        break;
      }
      case CombinationType::cat: {
        a_new = torch::zeros({new_rank, layer.options.in_features()}, sources[0]->lora_A.options());
        b_new = torch::zeros({layer.options.out_features(), new_rank}, sources[0]->lora_B.options());
        int64_t row = 0;
        for (size_t i = 0; i < sources.size(); ++i) {
          const int64_t r = sources[i]->options.r();
          RANKTUNE_CHECK(row + r <= new_rank, "add_weighted_adapter: ranks exceed the new rank ", new_rank);
          a_new.narrow(0, row, r).copy_(sources[i]->lora_A * (source_weights[i] * sources[i]->scaling));
          b_new.narrow(1, row, r).copy_(sources[i]->lora_B);
          row += r;
        }
        break;
      }
      case CombinationType::svd: {
        torch::Tensor delta = torch::zeros({layer.options.out_features(), layer.options.in_features()},
                                           sources[0]->lora_A.options().dtype(torch::kFloat32));
        for (size_t i = 0; i < sources.size(); ++i) {
          const Adapter& s = *sources[i];
          delta.addmm_(s.lora_B.to(torch::kFloat32), s.lora_A.to(torch::kFloat32), /*beta=*/1,
                       source_weights[i] * s.scaling * s.scaling);
        }
        const int64_t limit = std::min(layer.options.in_features(), layer.options.out_features());
        RANKTUNE_CHECK(new_rank <= limit, "add_weighted_adapter: svd_rank ", new_rank,
                       " exceeds min(in_features, out_features) = ", limit);
        auto [u, s, vh] = at::linalg_svd(delta, /*full_matrices=*/false);
        torch::Tensor un = u.narrow(1, 0, new_rank) * s.narrow(0, 0, new_rank).unsqueeze(0);
        torch::Tensor vn = vh.narrow(0, 0, new_rank);
        if (options.svd_clamp()) {
          const double q = *options.svd_clamp();
          RANKTUNE_CHECK(q > 0 && q <= 1, "svd_clamp must be in (0, 1], got ", q);
          const torch::Tensor joined = at::cat({un.flatten(), vn.flatten()});
          const double hi = at::quantile(joined, q).item<double>();
          un = un.clamp(-hi, hi);
          vn = vn.clamp(-hi, hi);
        }
        a_new = vn.to(dtype);
        b_new = un.to(dtype);
        break;
      }
    }
  }
  layer.add_adapter_from_weights(new_name,
                                 AdapterOptions()
                                     .r(new_rank)
                                     .lora_alpha(static_cast<double>(new_rank))
                                     .use_rslora(use_rslora)
                                     .dtype(sources[0]->lora_A.scalar_type()),
                                 a_new, b_new);
}

}  // namespace ranktune::peft
