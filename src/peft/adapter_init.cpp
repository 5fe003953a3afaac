#include "adapter_init.h"

#include "ranktune/core/error.h"

#include <ATen/ATen.h>

#include <cmath>

namespace ranktune::peft {
namespace {

using torch::Tensor;

// nn.Linear's default init, kaiming_uniform(a = sqrt(5)): U(±1/sqrt(fan_in)).
void kaiming_uniform_a_sqrt5_(Tensor& t) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(t.size(1)));
  t.uniform_(-bound, bound);
}

// Orthonormal basis of the columns of m (reduced QR).
Tensor orthonormal_basis(const Tensor& m) { return std::get<0>(at::linalg_qr(m, "reduced")); }

void check_rank_fits(const LinearImpl& layer, const Adapter& adapter, const char* method) {
  RANKTUNE_CHECK(!layer.quantized(), "init_lora_weights=", method,
                 " rewrites the base weight, which is stored quantized (",
                 quant_format_name(layer.quantized_weight().format()),
                 "); initialise without model.quantize, merge, then quantize the merged model");
  const int64_t limit = std::min(layer.options.in_features(), layer.options.out_features());
  RANKTUNE_CHECK(adapter.options.r() <= limit, "init_lora_weights=", method, " needs r <= min(in_features, out_features) = ",
                 limit, ", got r=", adapter.options.r());
}

// Sets A, B and W so that s·B A is the chosen rank-r part of W and W keeps the rest.
void set_factors_and_residual(LinearImpl& layer, Adapter& adapter, const Tensor& a, const Tensor& b) {
  adapter.lora_A.copy_(a);
  adapter.lora_B.copy_(b);
  const Tensor w = layer.weight_out_in();  // a view: writes reach the weight in its own layout
  const Tensor residual = w.to(torch::kFloat32).addmm(b, a, /*beta=*/1, /*alpha=*/-adapter.scaling);
  w.copy_(residual);
}

// PiSSA (Meng et al. 2024): W = U S Vᵀ; A = sqrt(S_r/s) V_rᵀ, B = U_r sqrt(S_r/s), W -= s·B A.
void pissa_init(LinearImpl& layer, Adapter& adapter) {
  check_rank_fits(layer, adapter, adapter.options.init_lora_weights().to_string().c_str());
  const int64_t r = adapter.options.r();
  const Tensor w = layer.weight_out_in().to(torch::kFloat32);
  Tensor u, s, vh;
  if (adapter.options.init_lora_weights().kind == LoraInit::Kind::pissa) {
    std::tie(u, s, vh) = at::linalg_svd(w, /*full_matrices=*/false);
    u = u.narrow(1, 0, r);
    s = s.narrow(0, 0, r);
    vh = vh.narrow(0, 0, r);
  } else {
    LowRankSvd svd = svd_lowrank(w, r, adapter.options.init_lora_weights().niter);
    u = svd.U;
    s = svd.S;
    vh = svd.V.t();
  }
  const Tensor root = (s / adapter.scaling).sqrt_();
  set_factors_and_residual(layer, adapter, root.unsqueeze(1) * vh, u * root.unsqueeze(0));
}

// OLoRA (Büyükakyüz 2024): W = Q R; A = R[:r], B = Q[:, :r], W -= s·B A.
void olora_init(LinearImpl& layer, Adapter& adapter) {
  check_rank_fits(layer, adapter, "olora");
  const int64_t r = adapter.options.r();
  auto [q, rr] = at::linalg_qr(layer.weight_out_in().to(torch::kFloat32), "reduced");
  set_factors_and_residual(layer, adapter, rr.narrow(0, 0, r), q.narrow(1, 0, r));
}

}  // namespace

LowRankSvd svd_lowrank(const Tensor& matrix, int64_t rank, int64_t niter) {
  // Work on the tall orientation, as torch.svd_lowrank does.
  const bool transposed = matrix.size(0) < matrix.size(1);
  const Tensor a = transposed ? matrix.t() : matrix;
  Tensor q = orthonormal_basis(a.mm(at::randn({a.size(1), rank}, a.options())));
  for (int64_t i = 0; i < niter; ++i) {
    q = orthonormal_basis(a.t().mm(q));
    q = orthonormal_basis(a.mm(q));
  }
  auto [ub, s, vh] = at::linalg_svd(q.t().mm(a), /*full_matrices=*/false);
  Tensor u = q.mm(ub);
  Tensor v = vh.t();
  if (transposed) std::swap(u, v);
  return {u, s, v};
}

void initialize_adapter_weights(LinearImpl& layer, Adapter& adapter) {
  at::NoGradGuard no_grad;
  switch (adapter.options.init_lora_weights().kind) {
    case LoraInit::Kind::lora:
      kaiming_uniform_a_sqrt5_(adapter.lora_A);
      adapter.lora_B.zero_();
      break;
    case LoraInit::Kind::gaussian:
      adapter.lora_A.normal_(0.0, 1.0 / static_cast<double>(adapter.options.r()));
      adapter.lora_B.zero_();
      break;
    case LoraInit::Kind::off:
      kaiming_uniform_a_sqrt5_(adapter.lora_A);
      kaiming_uniform_a_sqrt5_(adapter.lora_B);
      break;
    case LoraInit::Kind::pissa:
    case LoraInit::Kind::pissa_fast:
      pissa_init(layer, adapter);
      break;
    case LoraInit::Kind::olora:
      olora_init(layer, adapter);
      break;
  }
}

}  // namespace ranktune::peft
