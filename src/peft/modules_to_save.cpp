#include "ranktune/peft/modules_to_save.h"

#include "ranktune/core/error.h"
#include "ranktune/core/log.h"
#include "ranktune/core/strings.h"
#include "ranktune/peft/adaptable_model.h"
#include "ranktune/peft/linear.h"
#include "ranktune/peft/targets.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <algorithm>
#include <map>
#include <set>

namespace ranktune::peft {
namespace {

const char* const kHolderName = "modules_to_save";

// ---- which members a module's forward reads ---------------------------------------------------------

struct Member {
  std::string param;
  torch::Tensor* member;
  bool registered;  // false: a peft::Linear's tied weight (another module's parameter)
};

void add_member(std::vector<Member>& out, const char* name, torch::Tensor& t, bool registered = true) {
  if (t.defined()) out.push_back({name, &t, registered});
}

// The members of `m`, or nullopt when `m` has parameters of its own that no known member reads.
std::optional<std::vector<Member>> substitutable_members(torch::nn::Module& m) {
  std::vector<Member> out;
  if (auto* l = dynamic_cast<LinearImpl*>(&m)) {
    add_member(out, "weight", l->weight, !l->weight_is_tied());
    add_member(out, "bias", l->bias);
  } else if (auto* t = dynamic_cast<torch::nn::LinearImpl*>(&m)) {
    add_member(out, "weight", t->weight);
    add_member(out, "bias", t->bias);
  } else if (auto* e = dynamic_cast<torch::nn::EmbeddingImpl*>(&m)) {
    add_member(out, "weight", e->weight);
  } else if (auto* n = dynamic_cast<torch::nn::LayerNormImpl*>(&m)) {
    add_member(out, "weight", n->weight);
    add_member(out, "bias", n->bias);
  } else if (auto* s = dynamic_cast<SubstitutableParameters*>(&m)) {
    for (auto& [name, member] : s->parameter_members()) {
      if (member->defined()) out.push_back({name, member, true});
    }
  } else if (!m.named_parameters(/*recurse=*/false).is_empty()) {
    return std::nullopt;
  }
  return out;
}

// ---- the copies, kept on the module they stand in for -----------------------------------------------

// Child `modules_to_save` of a saved module: each slot is one parameter member of the module (or
// of a module below it), its own tensor and every adapter's copy. A copy is registered (as a
// parameter of child <adapter>) by one holder only; a holder sharing it (ensure_weight_tying)
// just points at it.
class SavedCopiesImpl : public torch::nn::Module {
 public:
  SavedCopiesImpl() : torch::nn::Module("ModulesToSave") {}
  struct Slot {
    std::string name;  // relative to the holder's module: "weight", "gate_proj.weight"
    torch::nn::Module* leaf;
    torch::Tensor* member;
    torch::Tensor original;
    bool registered;
    std::map<std::string, torch::Tensor> copies;  // adapter -> copy
  };
  std::vector<Slot> slots;

  Slot* find(const torch::nn::Module* leaf, const torch::Tensor* member) {
    for (Slot& s : slots) {
      if (s.leaf == leaf && s.member == member) return &s;
    }
    return nullptr;
  }
};

struct Holder {
  std::string module;  // qualified name of the module the copies stand in for
  std::shared_ptr<SavedCopiesImpl> copies;
};

std::string join_name(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  if (name.empty()) return prefix;
  return prefix + "." + name;
}

std::vector<Holder> find_holders(const torch::nn::Module& root) {
  std::vector<Holder> out;
  for (const auto& item : root.named_modules("", /*include_self=*/true)) {
    if (auto h = std::dynamic_pointer_cast<SavedCopiesImpl>(item.value())) {
      const std::string& key = item.key();
      const size_t suffix = std::string(kHolderName).size();
      out.push_back({key.size() > suffix ? key.substr(0, key.size() - suffix - 1) : "", h});
    }
  }
  return out;
}

// One parameter member anywhere in the model (outside the copies), with the tensor it holds when
// no copy stands in.
struct ModelMember {
  std::string module;  // qualified name of the module whose member it is
  torch::nn::Module* leaf;
  Member member;
  torch::Tensor original;
  std::string name() const { return join_name(module, member.param); }
};

// Every substitutable member of the model. Modules that are neither known nor substitutable are
// skipped here (they only matter when selected).
std::vector<ModelMember> model_members(const torch::nn::Module& root, const std::vector<Holder>& holders) {
  std::vector<ModelMember> out;
  for (const auto& item : root.named_modules("", /*include_self=*/true)) {
    if (is_inside_saved_copies(item.key())) continue;
    const auto members = substitutable_members(*item.value());
    if (!members) continue;
    for (const Member& m : *members) {
      torch::Tensor original = *m.member;
      for (const Holder& h : holders) {
        if (const auto* slot = h.copies->find(item.value().get(), m.member)) original = slot->original;
      }
      out.push_back({item.key(), item.value().get(), m, original});
    }
  }
  return out;
}

bool within(const std::string& name, const std::string& module) {
  return module.empty() || name == module || starts_with(name, module + ".");
}

// The plan with what add_saved_modules needs to carry it out.
struct DetailedPlan {
  SavedModulesPlan plan;
  struct Group {
    std::vector<const ModelMember*> members;  // members[0]: the one whose module registers the copy
    bool shared = false;                      // a tied pair served by one copy
  };
  std::vector<ModelMember> members;
  std::vector<Group> groups;
  std::vector<std::string> untied_partners;  // "<saved> shares its weight with <partner>"
  bool model_has_ties = false;
  bool tie_kept = false;
};

DetailedPlan make_plan(const torch::nn::Module& root, const LoraConfig& config) {
  DetailedPlan d;
  if (!config.modules_to_save()) return d;
  const TargetMatcher matcher(config);
  const std::vector<Holder> holders = find_holders(root);
  d.members = model_members(root, holders);
  std::map<const c10::TensorImpl*, std::vector<const ModelMember*>> by_tensor;
  for (const ModelMember& m : d.members) by_tensor[m.original.unsafeGetTensorImpl()].push_back(&m);
  for (const auto& [impl, users] : by_tensor) d.model_has_ties = d.model_has_ties || users.size() > 1;

  for (const auto& item : root.named_modules("", /*include_self=*/false)) {
    const std::string& name = item.key();
    if (is_inside_saved_copies(name) || !matcher.is_module_to_save(name)) continue;
    const bool nested = std::any_of(d.plan.modules.begin(), d.plan.modules.end(),
                                    [&](const std::string& m) { return within(name, m); });
    if (nested) continue;  // saved with the module above it
    for (const auto& sub : item.value()->named_modules(name, /*include_self=*/true)) {
      if (is_inside_saved_copies(sub.key())) continue;
      if (!substitutable_members(*sub.value())) {
        throw Error(c10::str("modules_to_save: ", name, " cannot be copied: ", sub.key(), " is a ", sub.value()->name(),
                             ", whose parameters ranktune cannot substitute (known: peft::Linear, torch::nn::Linear, "
                             "Embedding, LayerNorm, and modules implementing SubstitutableParameters)"));
      }
      if (auto* l = dynamic_cast<LinearImpl*>(sub.value().get()); l != nullptr && l->quantized()) {
        // A trained copy is a full-precision tensor: copying a quantized one is not supported.
        throw Error(c10::str("modules_to_save: ", name, " cannot be copied: ", sub.key(), "'s base weight is quantized (",
                             quant_format_name(l->quantized_weight().format()), "); load the model without model.quantize"));
      }
      if (auto* l = dynamic_cast<LinearImpl*>(sub.value().get()); l != nullptr && !l->adapter_names().empty()) {
        throw Error(c10::str("modules_to_save: ", name, " cannot be copied: ", sub.key(), " carries LoRA adapters (",
                             join(l->adapter_names()), "); a layer is either adapted or saved"));
      }
    }
    d.plan.modules.push_back(name);
  }

  std::set<const c10::TensorImpl*> done;
  std::vector<std::string> partner_modules;
  for (const std::string& module : d.plan.modules) {
    for (const ModelMember& m : d.members) {
      if (!within(m.module, module)) continue;
      const c10::TensorImpl* impl = m.original.unsafeGetTensorImpl();
      std::vector<const ModelMember*> partners;
      for (const ModelMember* other : by_tensor[impl]) {
        if (!within(other->module, module)) partners.push_back(other);
      }
      DetailedPlan::Group g;
      if (config.ensure_weight_tying() && !partners.empty()) {
        if (!done.insert(impl).second) continue;  // both ends named: one copy
        g.shared = true;
        g.members = by_tensor[impl];
        // The copy is registered where the tensor is a parameter (the embeddings, not the tied head).
        std::stable_partition(g.members.begin(), g.members.end(), [](const ModelMember* x) { return x->member.registered; });
        d.tie_kept = true;
      } else {
        g.members = {&m};
        for (const ModelMember* p : partners) d.untied_partners.push_back(c10::str(m.module, " shares its ", m.member.param, " with ", p->module));
      }
      SavedTensorLayout layout;
      for (const ModelMember* x : g.members) layout.names.push_back(x->name());
      for (const ModelMember* x : g.members) {  // a tied partner computes with the copy too
        if (within(x->module, module) ||
            std::find(partner_modules.begin(), partner_modules.end(), x->module) != partner_modules.end()) {
          continue;
        }
        if (auto* l = dynamic_cast<LinearImpl*>(x->leaf); l != nullptr && !l->adapter_names().empty()) {
          throw Error(c10::str("modules_to_save: ", x->module, " would share the copy of ", module, " (ensure_weight_tying) "
                               "but carries LoRA adapters (", join(l->adapter_names()), "); a layer is either adapted or saved"));
        }
        partner_modules.push_back(x->module);
      }
      layout.shape = m.original.sizes().vec();
      d.plan.tensors.push_back(layout);
      d.groups.push_back(std::move(g));
    }
  }
  for (const std::string& p : partner_modules) {
    if (std::find(d.plan.modules.begin(), d.plan.modules.end(), p) == d.plan.modules.end()) d.plan.modules.push_back(p);
  }
  return d;
}

std::shared_ptr<SavedCopiesImpl> holder_on(torch::nn::Module& module) {
  const auto children = module.named_children();  // find() points into it: keep it alive
  if (const auto* found = children.find(kHolderName)) {
    auto h = std::dynamic_pointer_cast<SavedCopiesImpl>(*found);
    RANKTUNE_CHECK(h != nullptr, "a child named '", kHolderName, "' exists and is not ranktune's");
    return h;
  }
  return module.register_module(kHolderName, std::make_shared<SavedCopiesImpl>());
}

// Registers `t` as parameter `dotted` ("gate_proj.weight") of `parent`, creating the modules on the way.
void register_nested(torch::nn::Module& parent, const std::string& dotted, const torch::Tensor& t) {
  const auto dot = dotted.find('.');
  if (dot == std::string::npos) {
    parent.register_parameter(dotted, t, /*requires_grad=*/false);
    return;
  }
  const std::string head = dotted.substr(0, dot);
  std::shared_ptr<torch::nn::Module> child;
  const auto children = parent.named_children();  // find() points into it: keep it alive
  if (const auto* found = children.find(head)) child = *found;
  else child = parent.register_module(head, std::make_shared<torch::nn::Module>("SavedCopy"));
  register_nested(*child, dotted.substr(dot + 1), t);
}

torch::nn::Module& module_named(torch::nn::Module& root, const std::string& name) {
  if (name.empty()) return root;
  return *root.named_modules("", /*include_self=*/false)[name];
}

}  // namespace

bool is_inside_saved_copies(const std::string& name) {
  const std::string h = kHolderName;
  return name == h || starts_with(name, h + ".") || name.find("." + h + ".") != std::string::npos ||
         ends_with(name, "." + h);
}

SavedModulesPlan plan_saved_modules(const torch::nn::Module& root, const LoraConfig& config) {
  return make_plan(root, config).plan;
}

SavedModulesPlan add_saved_modules(torch::nn::Module& root, const LoraConfig& config, const std::string& adapter) {
  DetailedPlan d = make_plan(root, config);
  if (!config.modules_to_save()) return d.plan;
  for (const Holder& h : find_holders(root)) {
    for (const auto& s : h.copies->slots) {
      RANKTUNE_CHECK(s.copies.count(adapter) == 0, "modules_to_save: adapter '", adapter, "' already has copies");
    }
  }
  for (const std::string& p : d.untied_partners) {
    log_warning(c10::str(p, ": adapter '", adapter, "' trains a copy for the one named in modules_to_save and the other "
                         "keeps the original, as PEFT does; set ensure_weight_tying to train one copy for both"));
  }
  if (config.ensure_weight_tying() && !d.tie_kept) {
    log_warning(d.model_has_ties ? "ensure_weight_tying is set, but modules_to_save names no module with tied weights"
                                 : "ensure_weight_tying is set, but the model has no tied weights");
  }
  at::NoGradGuard no_grad;
  for (const DetailedPlan::Group& g : d.groups) {
    const torch::Tensor copy = g.members[0]->original.detach().clone();
    for (size_t i = 0; i < g.members.size(); ++i) {
      const ModelMember& m = *g.members[i];
      // The holder sits on the saved module (or, for a tied partner, on the partner itself).
      std::string holder_module = m.module;
      for (const std::string& saved : d.plan.modules) {
        if (within(m.module, saved)) holder_module = saved;
      }
      auto holder = holder_on(module_named(root, holder_module));
      const std::string leaf_path =
          m.module == holder_module ? "" : m.module.substr(holder_module.empty() ? 0 : holder_module.size() + 1);
      const std::string relative = join_name(leaf_path, m.member.param);
      SavedCopiesImpl::Slot* slot = holder->find(m.leaf, m.member.member);
      if (slot == nullptr) {
        holder->slots.push_back({relative, m.leaf, m.member.member, m.original, m.member.registered, {}});
        slot = &holder->slots.back();
      }
      slot->copies[adapter] = copy;
      if (i == 0) {
        std::shared_ptr<torch::nn::Module> per_adapter;
        const auto children = holder->named_children();  // find() points into it: keep it alive
        if (const auto* found = children.find(adapter)) per_adapter = *found;
        else per_adapter = holder->register_module(adapter, std::make_shared<torch::nn::Module>("SavedCopy"));
        register_nested(*per_adapter, relative, copy);
      }
    }
  }
  return d.plan;
}

std::vector<std::pair<std::string, torch::Tensor>> saved_module_tensors(const torch::nn::Module& root,
                                                                        const std::string& adapter) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const Holder& h : find_holders(root)) {
    for (const auto& s : h.copies->slots) {
      if (auto it = s.copies.find(adapter); it != s.copies.end()) out.emplace_back(join_name(h.module, s.name), it->second);
    }
  }
  return out;
}

void use_saved_modules(torch::nn::Module& root, const std::optional<std::string>& adapter) {
  for (const Holder& h : find_holders(root)) {
    for (auto& s : h.copies->slots) {
      const auto it = adapter ? s.copies.find(*adapter) : s.copies.end();
      *s.member = it != s.copies.end() ? it->second : s.original;
    }
  }
}

void mark_saved_modules_trainable(torch::nn::Module& root, const std::optional<std::string>& adapter, bool train) {
  for (const Holder& h : find_holders(root)) {
    for (const auto& child : h.copies->named_children()) {
      const bool trains = train && adapter && child.key() == *adapter;
      for (auto& p : child.value()->parameters()) p.set_requires_grad(trains);
    }
  }
}

void delete_saved_modules(torch::nn::Module& root, const std::string& adapter) {
  for (const Holder& h : find_holders(root)) {
    for (auto& s : h.copies->slots) {
      auto it = s.copies.find(adapter);
      if (it == s.copies.end()) continue;
      if (s.member->is_same(it->second)) *s.member = s.original;
      s.copies.erase(it);
    }
    if (h.copies->named_children().contains(adapter)) h.copies->unregister_module(adapter);
    const bool empty = std::all_of(h.copies->slots.begin(), h.copies->slots.end(),
                                   [](const SavedCopiesImpl::Slot& s) { return s.copies.empty(); });
    if (empty) module_named(root, h.module).unregister_module(kHolderName);
  }
}

void unload_saved_modules(torch::nn::Module& root, const std::optional<std::string>& adapter) {
  const std::vector<Holder> holders = find_holders(root);
  auto final_of = [&](const SavedCopiesImpl::Slot& s) {
    const auto it = adapter ? s.copies.find(*adapter) : s.copies.end();
    return it != s.copies.end() ? it->second : s.original;
  };
  // What each registered parameter becomes (parameters without a slot stay as they are).
  std::map<const c10::TensorImpl*, torch::Tensor> replaced;
  for (const Holder& h : holders) {
    for (const auto& s : h.copies->slots) {
      if (s.registered) replaced[s.original.unsafeGetTensorImpl()] = final_of(s);
    }
  }
  at::NoGradGuard no_grad;
  // A tied head stays tied only when both ends end up with the same tensor; otherwise it keeps
  // its own (the copy, or the original values the embeddings are about to give up).
  std::set<const torch::Tensor*> untied;  // the weight members of heads untied here
  for (auto& [name, linear] : find_linears(root)) {
    if (!linear->weight_is_tied()) continue;
    const torch::Tensor shared = linear->tied_weight();
    const auto it = replaced.find(shared.unsafeGetTensorImpl());
    const torch::Tensor shared_final = it != replaced.end() ? it->second : shared;
    torch::Tensor head_final = shared;
    for (const Holder& h : holders) {
      if (const auto* s = h.copies->find(linear.get(), &linear->weight)) head_final = final_of(*s);
    }
    if (head_final.is_same(shared_final)) continue;
    linear->untie(head_final.is_same(shared) ? shared.detach() : head_final.detach());
    untied.insert(&linear->weight);
  }
  for (const Holder& h : holders) {
    for (auto& s : h.copies->slots) {
      if (untied.count(s.member) != 0) continue;  // untie() set it
      const torch::Tensor f = final_of(s);
      if (s.registered && !f.is_same(s.original)) s.original.set_data(f.detach());
      *s.member = s.original;
    }
  }
  for (const Holder& h : holders) module_named(root, h.module).unregister_module(kHolderName);
}

bool has_saved_modules(const torch::nn::Module& root) { return !find_holders(root).empty(); }

std::vector<std::string> modules_with_copies(const torch::nn::Module& root) {
  std::vector<std::string> names;
  for (const Holder& h : find_holders(root)) names.push_back(h.module);
  return names;
}

std::vector<std::string> adapters_with_saved_modules(const torch::nn::Module& root) {
  std::set<std::string> names;
  for (const Holder& h : find_holders(root)) {
    for (const auto& s : h.copies->slots) {
      for (const auto& [adapter, copy] : s.copies) names.insert(adapter);
    }
  }
  return {names.begin(), names.end()};
}

}  // namespace ranktune::peft
