// The CUDA-graph training step (kernels/cuda_graph.h, `kiln train --cuda-graph`). Capture and
// replay need a GPU; what a captured step relies on is checked on the CPU too: the embedding
// backward's device grouping, the length mask made by a kernel, the learning rate read from the
// device, padded lengths and the fixed-shape loss, and the refusals.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli_util.h"
#include "kernels/index.h"
#include "models/data/batching.h"
#include "models/seq2seq/model.h"
#include "models/seq2seq/options.h"
#include "models/seq2seq/trainer.h"
#include "test_util.h"

namespace kiln {
namespace {

// Pairs of varied lengths over small vocabularies (ids 4.. are words).
std::vector<data::EncodedPair> varied_pairs(int64_t count) {
  std::vector<data::EncodedPair> pairs;
  for (int64_t i = 0; i < count; ++i) {
    data::EncodedPair p;
    for (int64_t k = 0; k < 2 + i % 5; ++k) p.source.push_back(4 + (i * 7 + k * 3) % 9);
    for (int64_t k = 0; k < 1 + (i * i) % 6; ++k) p.target.push_back(4 + (i * 5 + k) % 11);
    pairs.push_back(p);
  }
  return pairs;
}

seq2seq::ModelConfig small_config() {
  seq2seq::ModelConfig config;
  config.source_vocab = 13;
  config.target_vocab = 15;
  config.embed_size = 6;
  config.hidden_size = 8;
  config.attention = seq2seq::Attention::bahdanau;
  config.dropout = 0.1;
  return config;
}

// The CUDA path of the embedding backward, run on the CPU, sums the same rows in the same order as
// the CPU's host grouping: equal bit for bit, padding row skipped, with i32 and i64 ids.
TEST(CudaGraph, EmbeddingGradientGroupedOnTheDeviceMatchesTheHostGrouping) {
  manual_seed(3);
  const int64_t vocab = 11, cols = 5, n = 40;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back((i * 7 + i / 3) % vocab);  // repeats, row 10 rare
  for (DType index_dtype : {DType::i64, DType::i32}) {
    for (int64_t skip : {int64_t(-1), int64_t(2)}) {
      Tensor index = to(from_vector(ids, {n}), index_dtype);
      Tensor grad_out = uniform({n, cols}, -1, 1);
      Tensor host = uniform({vocab, cols}, -1, 1);
      Tensor grouped = copy_to(host, host.options());
      kernels::scatter_add_rows(grad_out, index, host, skip);
      kernels::scatter_add_rows_grouped_on_device(grad_out, index, grouped, skip);
      EXPECT_EQ(grouped.to_vector<float>(), host.to_vector<float>())
          << dtype_name(index_dtype) << ", skip " << skip;
    }
  }
}

TEST(CudaGraph, LengthMaskIsMadeByAKernelWhereTheLengthsAre) {
  Tensor lengths = from_vector<int64_t>({3, 0, 5, 1}, {4});
  Tensor mask = nn::sequence_mask(lengths, 5, {DType::f64});
  std::vector<double> expected;
  for (int64_t t = 0; t < 5; ++t) {
    for (int64_t length : {3, 0, 5, 1}) expected.push_back(t < length ? 1.0 : 0.0);
  }
  EXPECT_EQ(mask.to_vector<double>(), expected);
  EXPECT_EQ(mask.shape(), (Shape{5, 4}));
  std::string error = testing::error_of([&] { nn::sequence_mask(lengths, 4, {DType::f32}); });
  EXPECT_NE(error.find("length 5 of sequence 2 is outside [0, 4]"), std::string::npos) << error;
}

// The rate set between steps reaches the fused update (which reads it from the device, as a replayed
// graph must): loss = sum(p), so every gradient is 1 and SGD moves each p by -lr.
TEST(CudaGraph, LearningRateSetBetweenStepsReachesTheUpdate) {
  Tensor p = full({3}, 1.0, {DType::f64});
  p.set_requires_grad(true);
  nn::SGD sgd({p}, nn::SgdOptions{0.5});
  for (double lr : {0.5, 0.25, 0.125}) {
    sgd.set_lr(lr);
    sgd.zero_grad();
    backward(sum(p));
    sgd.step();
  }
  EXPECT_EQ(p.detach().to_vector<double>(), std::vector<double>(3, 1.0 - 0.5 - 0.25 - 0.125));
  EXPECT_EQ(sgd.step_count(), 3);
  sgd.count_replayed_step();
  EXPECT_EQ(sgd.step_count(), 4);
}

// --cuda-graph pads lengths to a multiple of 8 and takes the loss over every position weighted by
// the mask: the loss and every gradient are those of the unpadded batch and the gathered loss, up to
// summation order.
TEST(CudaGraph, PaddedLengthsAndTheFixedShapeLossChangeNothingButRounding) {
  std::vector<data::EncodedPair> pairs = varied_pairs(12);
  data::BatchOptions plain, padded;
  plain.batch_size = padded.batch_size = 12;
  padded.pad_steps_to = 8;
  data::Batch a = data::make_batches(pairs, plain)[0], b = data::make_batches(pairs, padded)[0];
  ASSERT_LT(a.source.size(0), 8);
  EXPECT_EQ(b.source.size(0), 8);
  EXPECT_EQ(b.target_in.size(0), 8);
  EXPECT_EQ(b.num_target_tokens, a.num_target_tokens);
  EXPECT_EQ(b.source_lengths.to_vector<int64_t>(), a.source_lengths.to_vector<int64_t>());
  auto run = [&](const data::Batch& batch, bool fixed_shapes, std::vector<Tensor>& grads) {
    manual_seed(5);
    seq2seq::ModelConfig config = small_config();
    config.dropout = 0;  // the draws' count follows the shapes
    seq2seq::Seq2Seq model(config, {DType::f64});
    model.train();
    Tensor loss =
        seq2seq::accumulate_gradients(model, {&batch}, 0.1, 1.0, nullptr, 0, fixed_shapes);
    for (const Tensor& p : model.parameters()) grads.push_back(p.grad());
    return loss.item();
  };
  std::vector<Tensor> grads_a, grads_b;
  const double loss_a = run(a, false, grads_a), loss_b = run(b, true, grads_b);
  EXPECT_NEAR(loss_b, loss_a, 1e-12);
  ASSERT_EQ(grads_a.size(), grads_b.size());
  for (size_t k = 0; k < grads_a.size(); ++k) {
    EXPECT_TRUE(testing::all_close(grads_b[k], grads_a[k], 1e-12, 1e-10)) << "parameter " << k;
  }
}

TEST(CudaGraph, TrainRefusesWhatACapturedStepCannotDo) {
  seq2seq::TrainOptions o = testing::tiny_reverse_options();
  o.cuda_graph = true;
  std::string error = testing::error_of([&] { o.validate(); });
  EXPECT_NE(error.find("--cuda-graph needs a CUDA device (--device cuda:N)"), std::string::npos)
      << error;
  o.device = "cuda:0";
  o.accum_steps = 2;
  error = testing::error_of([&] { o.validate(); });
  EXPECT_NE(error.find("--accum-steps 2 is not supported"), std::string::npos) << error;
  o.accum_steps = 1;
  o.teacher_forcing = 0.5;
  error = testing::error_of([&] { o.validate(); });
  EXPECT_NE(error.find("--cuda-graph needs --teacher-forcing 1"), std::string::npos) << error;
  o.teacher_forcing = 1;
  EXPECT_NO_THROW(o.validate());
  EXPECT_TRUE(seq2seq::resume_knows_flag("--cuda-graph"));
}

TEST(CudaGraph, CaptureNeedsACudaDevice) {
  std::string error = testing::error_of([&] { CudaGraph graph(Device::cpu()); });
  EXPECT_NE(error.find("graphs are captured on a CUDA device, got cpu"), std::string::npos) << error;
  if (testing::gpu_available()) return;
  error = testing::error_of([&] { CudaGraph graph(Device::cuda(0)); });
  EXPECT_NE(error.find("cuda:0 requested but"), std::string::npos) << error;
}

TEST(CudaGraph, CliRefusesTheFlagOnTheCpuBeforeWritingAnything) {
  std::filesystem::path dir = testing::temp_dir("cuda_graph_cli");
  std::filesystem::path out = dir / "run", log = dir / "log.txt";
  int code = testing::run_kiln("train --task reverse --task-size 50 --epochs 1 --cuda-graph --out " +
                                   out.string(),
                               log.string());
  std::string text = testing::read_file(log);
  EXPECT_EQ(code, 1) << text;
  EXPECT_NE(text.find("--cuda-graph needs a CUDA device"), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(out / "last")) << text;
  std::filesystem::remove_all(dir);
}

// ---- on a GPU ----

// One training step's device work, as the trainer's graph runs it (fixed shapes, clip, Adam).
struct StepWork {
  seq2seq::Seq2Seq& model;
  nn::Adam& adam;
  Tensor loss, norm;
  void operator()(const data::Batch& b) {
    adam.zero_grad();
    loss = seq2seq::accumulate_gradients(model, {&b}, 0.1, 1.0, nullptr, 0, true);
    nn::ClipFactor clip = nn::clip_grad_norm_factor(model.parameters(), 0.5);
    adam.step(clip.scale);
    norm = clip.norm;
  }
};

// Four steps over two batches of one shape, with dropout, attention, clipping and a learning rate
// that changes every step: eagerly on one model; on another, eagerly once, then captured and
// replayed with each batch copied into the graph's. The weights end equal bit for bit.
TEST(CudaGraph, ReplayEqualsTheEagerStepBitForBit) {
  KILN_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  std::vector<data::EncodedPair> pairs = varied_pairs(24);
  data::BatchOptions options;
  options.batch_size = 12;
  options.pad_steps_to = 8;
  options.bucket_by_length = false;
  options.shuffle = false;
  std::vector<data::Batch> batches = data::make_batches(pairs, options, gpu);
  ASSERT_EQ(batches.size(), 2u);
  ASSERT_EQ(batches[0].source.shape(), batches[1].source.shape());
  ASSERT_EQ(batches[0].target_in.shape(), batches[1].target_in.shape());
  const std::vector<int> order{0, 1, 1, 0, 1};
  auto make = [&](std::unique_ptr<seq2seq::Seq2Seq>& model, std::unique_ptr<nn::Adam>& adam) {
    manual_seed(9);
    model = std::make_unique<seq2seq::Seq2Seq>(small_config());
    model->to(gpu);
    model->train();
    adam = std::make_unique<nn::Adam>(model->parameters(), nn::AdamOptions{0.01});
  };
  cuda::StreamScope stream;
  std::unique_ptr<seq2seq::Seq2Seq> eager_model, graph_model;
  std::unique_ptr<nn::Adam> eager_adam, graph_adam;
  make(eager_model, eager_adam);
  make(graph_model, graph_adam);
  StepWork eager{*eager_model, *eager_adam, {}, {}}, graphed{*graph_model, *graph_adam, {}, {}};
  std::vector<double> eager_losses, graph_losses;
  for (size_t s = 0; s < order.size(); ++s) {
    manual_seed(100 + s);
    eager_adam->set_lr(0.01 / (1.0 + s));
    eager(batches[order[s]]);
    eager_losses.push_back(eager.loss.item());
  }
  data::Batch inputs = batches[order[1]];  // the graph's batch
  for (Tensor* t : {&inputs.source, &inputs.source_lengths, &inputs.target_in, &inputs.target_out,
                    &inputs.target_mask}) {
    *t = copy_to(*t, t->options());
  }
  CudaGraph graph(gpu);
  for (size_t s = 0; s < order.size(); ++s) {
    manual_seed(100 + s);
    graph_adam->set_lr(0.01 / (1.0 + s));
    if (s == 0) {
      graphed(batches[order[s]]);
    } else {
      const data::Batch& b = batches[order[s]];
      if (s == 1) {
        graph.capture([&] { graphed(inputs); });
      } else {
        NoGradGuard no_grad;
        copy_(inputs.source, b.source);
        copy_(inputs.source_lengths, b.source_lengths);
        copy_(inputs.target_in, b.target_in);
        copy_(inputs.target_out, b.target_out);
        copy_(inputs.target_mask, b.target_mask);
      }
      graph.replay();
    }
    graph_losses.push_back(graphed.loss.item());
  }
  EXPECT_GT(graph.num_nodes(), 50u);
  EXPECT_EQ(graph_losses, eager_losses);
  std::vector<Tensor> a = eager_model->parameters(), b = graph_model->parameters();
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(b[k].to_vector<float>(), a[k].to_vector<float>()) << "parameter " << k;
  }
  EXPECT_EQ(eager_adam->applied_steps(), graph_adam->applied_steps());
}

// Inside a capture a read back or an upload is refused by name, the capture is dropped, and the
// stream works on afterwards.
TEST(CudaGraph, CaptureRefusesHostTrafficAndRecovers) {
  KILN_REQUIRE_GPU();
  const Device gpu = Device::cuda(0);
  cuda::StreamScope stream;
  Tensor x = full({4}, 2.0, {DType::f32, gpu});
  CudaGraph graph(gpu);
  std::string error = testing::error_of([&] { graph.capture([&] { (x * 3.0).item(); }); });
  EXPECT_NE(error.find("copy device->host during CUDA graph capture"), std::string::npos) << error;
  EXPECT_FALSE(graph.captured());
  CudaGraph upload(gpu);
  error = testing::error_of(
      [&] { upload.capture([&] { from_vector<float>({1, 2}, {2}, gpu); }); });
  EXPECT_NE(error.find("copy host->device during CUDA graph capture"), std::string::npos) << error;
  EXPECT_EQ((x * 3.0).to_vector<float>(), std::vector<float>(4, 6.0f));
  CudaGraph doubling(gpu);
  Tensor y = empty({4}, {DType::f32, gpu});
  doubling.capture([&] {
    NoGradGuard no_grad;
    copy_(y, x * 2.0);
  });
  doubling.replay();
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>(4, 4.0f));
  fill_(x, 5.0);
  doubling.replay();
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>(4, 10.0f));
}

// `kiln train --cuda-graph` end to end: the same epochs' losses as the eager run (the graph run pads
// lengths, so equal up to rounding), and its log says what was captured.
TEST(CudaGraph, TrainingWithGraphsFollowsTheEagerRun) {
  KILN_REQUIRE_GPU();
  std::filesystem::path dir = testing::temp_dir("cuda_graph_train");
  seq2seq::TrainOptions o = testing::tiny_reverse_options();
  o.device = "cuda:0";
  o.model.dropout = 0;
  auto eager = seq2seq::train(o, (dir / "eager").string());
  o.cuda_graph = true;
  std::string log;
  auto graphed = seq2seq::train(o, (dir / "graph").string(), "",
                                [&](const std::string& line) { log += line + "\n"; });
  ASSERT_EQ(eager.size(), graphed.size());
  for (size_t e = 0; e < eager.size(); ++e) {
    EXPECT_NEAR(graphed[e].train_loss, eager[e].train_loss, 1e-4 * eager[e].train_loss)
        << "epoch " << e + 1;
  }
  EXPECT_NE(log.find("shapes captured"), std::string::npos) << log;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiln
