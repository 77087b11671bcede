#include <algorithm>
#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/profiler.h"
#include "kernels/copy.h"

namespace kiln {

namespace autograd {

namespace {
std::atomic<uint64_t> next_sequence_nr{0};

// True when nothing but `grad` itself can reach its memory: no other handle on the tensor (another
// edge's gradient, a pending sum, a tensor a backward function kept) and no view of its storage,
// which it fills exactly. Such a gradient can become a leaf's .grad without a copy.
bool sole_owner(const Tensor& grad) {
  const std::shared_ptr<TensorImpl>& impl = grad.impl_ptr();
  return impl.use_count() == 1 && impl->storage.use_count() == 1 && impl->offset_bytes == 0 &&
         !impl->grad_fn && impl->storage->bytes == grad.nbytes();
}

void accumulate_into_leaf(TensorImpl& leaf, const Tensor& grad) {
  if (!leaf.grad) {
    // The leaf's first gradient of a backward (its .grad was reset to none, as zero_grad(true)
    // does): taken as it is when nothing else holds it, else copied, since it may be shared with
    // another edge. Taking it saves a pass over every parameter a step.
    leaf.grad = sole_owner(grad) ? grad.impl_ptr()
                                 : copy_to(grad, {grad.dtype(), grad.device()}).impl_ptr();
  } else {
    kernels::axpy(1.0, grad, Tensor(leaf.grad));
  }
}

void check_grad_matches(const Node& node, size_t i, const Tensor& grad) {
  const TensorMeta& meta = node.input_meta[i];
  KILN_CHECK(
      grad.shape() == meta.shape && grad.dtype() == meta.dtype && grad.device() == meta.device,
      "backward of '", node.name, "': gradient for input ", i, " is ", grad.describe(),
      " but the input was ", dtype_name(meta.dtype), shape_str(meta.shape), " on ",
      meta.device.str());
}
}  // namespace

Node::~Node() {
  std::vector<std::shared_ptr<Node>> unlinked;
  for (Edge& edge : inputs) {
    if (edge.node) unlinked.push_back(std::move(edge.node));
  }
  while (!unlinked.empty()) {
    std::shared_ptr<Node> node = std::move(unlinked.back());
    unlinked.pop_back();
    if (node.use_count() == 1) {  // we hold the last reference: take its inputs before it dies
      for (Edge& edge : node->inputs) {
        if (edge.node) unlinked.push_back(std::move(edge.node));
      }
    }
  }
}

bool needs_grad(const TensorList& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

std::shared_ptr<Node> record(const char* name, const TensorList& inputs, const TensorList& outputs,
                             BackwardFn backward_fn) {
  auto node = std::make_shared<Node>();
  node->name = name;
  node->sequence_nr = next_sequence_nr++;
  for (const Tensor& input : inputs) {
    Edge edge;
    if (input.defined() && input.requires_grad()) {
      if (input.is_leaf()) {
        edge.leaf = input.impl_ptr();
      } else {
        edge.node = input.grad_fn();
        edge.output_nr = input.impl().output_nr;
      }
    }
    node->inputs.push_back(edge);
    node->input_meta.push_back(input.defined() ? TensorMeta::of(input) : TensorMeta{});
  }
  for (size_t k = 0; k < outputs.size(); ++k) {
    TensorImpl& out = outputs[k].impl();
    out.requires_grad = true;
    out.grad_fn = node;
    out.output_nr = static_cast<int>(k);
    node->output_meta.push_back(TensorMeta::of(outputs[k]));
  }
  node->backward_fn = std::move(backward_fn);
  return node;
}

}  // namespace autograd

void backward(const Tensor& root, const Tensor& grad_root_in, bool retain_graph) {
  backward(root, grad_root_in, retain_graph, nullptr);
}

void backward(const Tensor& root, const Tensor& grad_root_in, bool retain_graph,
              const LeafReadyFn& on_leaf_ready) {
  using namespace autograd;
  KILN_CHECK(root.defined(), "backward: called on an undefined tensor");
  KILN_CHECK(root.requires_grad(), "backward: ", root.describe(),
             " does not require grad (no input of the ops that made it requires grad)");
  Tensor grad_root = grad_root_in;
  if (!grad_root.defined()) {
    KILN_CHECK(root.numel() == 1, "backward: ", root.describe(),
               " has more than one element; pass the gradient of the output explicitly");
    grad_root = ones(root.shape(), root.options());
  }
  KILN_CHECK(grad_root.shape() == root.shape() && grad_root.dtype() == root.dtype() &&
                 grad_root.device() == root.device(),
             "backward: gradient ", grad_root.describe(), " does not match the output ",
             root.describe());
  NoGradGuard no_grad;
  // Its self time is the engine's own: ordering the tape, zero gradients, accumulation.
  profiler::ProfileScope engine_scope("backward (engine)", profiler::Category::backward);
  if (root.is_leaf()) {
    accumulate_into_leaf(root.impl(), grad_root);
    if (on_leaf_ready) on_leaf_ready(root.impl());
    return;
  }

  // Every node reachable from the root, newest first.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{root.grad_fn().get()};
  seen.insert(stack.back());
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    order.push_back(node);
    for (const Edge& edge : node->inputs) {
      if (edge.node && seen.insert(edge.node.get()).second) stack.push_back(edge.node.get());
    }
  }
  std::sort(order.begin(), order.end(),
            [](Node* a, Node* b) { return a->sequence_nr > b->sequence_nr; });

  // With a leaf-ready callback: how many edges into each leaf are still to be processed.
  std::unordered_map<TensorImpl*, int> edges_left;
  if (on_leaf_ready) {
    for (Node* node : order) {
      for (const Edge& edge : node->inputs) {
        if (edge.leaf) edges_left[edge.leaf.get()]++;
      }
    }
  }
  auto leaf_edges_done = [&](Node* node) {
    if (!on_leaf_ready) return;
    for (const Edge& edge : node->inputs) {
      if (edge.leaf && --edges_left[edge.leaf.get()] == 0) on_leaf_ready(*edge.leaf);
    }
  };

  std::unordered_map<Node*, TensorList> pending;
  pending[root.grad_fn().get()].resize(root.grad_fn()->output_meta.size());
  pending[root.grad_fn().get()][root.impl().output_nr] = grad_root;

  for (Node* node : order) {
    auto found = pending.find(node);
    if (found == pending.end()) {
      leaf_edges_done(node);
      continue;
    }
    TensorList grad_outputs = std::move(found->second);
    pending.erase(found);
    KILN_CHECK(
        !node->released, "backward: the graph through '", node->name,
        "' has already been freed by an earlier backward(); pass retain_graph=true to the first "
        "backward() to run backward twice");
    for (size_t k = 0; k < grad_outputs.size(); ++k) {
      if (!grad_outputs[k].defined()) {
        const TensorMeta& meta = node->output_meta[k];
        grad_outputs[k] = zeros(meta.shape, {meta.dtype, meta.device});
      }
    }
    TensorList grad_inputs;
    {
      profiler::ProfileScope scope(node->name.c_str(), profiler::Category::backward);
      grad_inputs = node->backward_fn(grad_outputs);
    }
    KILN_CHECK(grad_inputs.size() == node->inputs.size(), "backward of '", node->name,
               "' returned ", grad_inputs.size(), " gradients for ", node->inputs.size(),
               " inputs");
    if (!retain_graph) {
      node->backward_fn = nullptr;  // frees the saved tensors now, not when the graph dies
      node->released = true;
    }
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      const Edge& edge = node->inputs[i];
      const Tensor& grad = grad_inputs[i];
      if (!edge.valid() || !grad.defined()) continue;
      check_grad_matches(*node, i, grad);
      if (edge.leaf) {
        accumulate_into_leaf(*edge.leaf, grad);
        continue;
      }
      TensorList& slot = pending[edge.node.get()];
      if (slot.empty()) slot.resize(edge.node->output_meta.size());
      Tensor& acc = slot[edge.output_nr];
      acc = acc.defined() ? add(acc, grad) : grad;
    }
    leaf_edges_done(node);
  }
}

}  // namespace kiln
