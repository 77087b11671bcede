// The autograd tape. Every differentiable op that sees an input requiring grad records one Node:
// where each input's gradient goes (an Edge), what each output looks like, and a backward
// function holding exactly the tensors it saved. A node can have several outputs (an LSTM layer
// returns y, h_n and c_n from one node).
//
// backward() gathers the nodes reachable from the loss and runs them in reverse creation order:
// creation order is already a topological order, and this walk is a loop, never a recursion whose
// depth grows with the sequence length. A node's backward function (and with it every saved
// tensor) is destroyed once it has run, unless the graph is retained.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/grad_mode.h"
#include "core/tensor.h"

namespace kiln::autograd {

using TensorList = std::vector<Tensor>;
// grad_outputs (one per output, never undefined) -> grad_inputs (one per input; undefined where
// the input needs no gradient).
using BackwardFn = std::function<TensorList(const TensorList& grad_outputs)>;

struct TensorMeta {
  Shape shape;
  DType dtype;
  Device device;
  static TensorMeta of(const Tensor& t) { return {t.shape(), t.dtype(), t.device()}; }
};

// Where the gradient of one input goes: output `output_nr` of `node`, or a leaf's .grad.
struct Edge {
  std::shared_ptr<Node> node;
  int output_nr = 0;
  std::shared_ptr<TensorImpl> leaf;
  bool valid() const { return node || leaf; }
};

struct Node {
  std::string name;
  uint64_t sequence_nr = 0;
  std::vector<Edge> inputs;
  std::vector<TensorMeta> input_meta;
  std::vector<TensorMeta> output_meta;
  BackwardFn backward_fn;  // empty once released
  bool released = false;

  bool needs_input_grad(size_t i) const { return i < inputs.size() && inputs[i].valid(); }

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Releases the chain of input nodes iteratively: a graph over a long sequence would otherwise
  // be destroyed by one recursive destructor call per node.
  ~Node();
};

// True when grad mode is on and any of the tensors requires grad.
bool needs_grad(const TensorList& inputs);

// Records `outputs` as computed from `inputs` by the op `name`. Call only when needs_grad(inputs).
// Returns the node so an op can ask needs_input_grad() before saving tensors for an input.
std::shared_ptr<Node> record(const char* name, const TensorList& inputs, const TensorList& outputs,
                             BackwardFn backward_fn);

}  // namespace kiln::autograd

namespace kiln {

// Backpropagation from `root` (usually the loss): d root / d leaf is accumulated into the .grad()
// of every leaf that requires grad. grad_root defaults to ones for a single-element root. The
// graph's saved tensors are freed as it runs unless retain_graph.
void backward(const Tensor& root, const Tensor& grad_root = Tensor(), bool retain_graph = false);

// Called once per leaf that the graph reaches, as soon as its .grad is final for this backward:
// every node with an edge into it has run (or had no gradient to pass on; the leaf's .grad is then
// what it was before). Data parallelism uses it to send a bucket of gradients while backward goes
// on with the rest (dist/data_parallel.h). Runs on the calling thread, in grad mode off.
using LeafReadyFn = std::function<void(TensorImpl& leaf)>;
void backward(const Tensor& root, const Tensor& grad_root, bool retain_graph,
              const LeafReadyFn& on_leaf_ready);

}  // namespace kiln
