// safetensors: round trips of every dtype, the exact bytes of a small file, atomic saves that fail
// cleanly, and a table of hostile inputs whose errors are checked for their message.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/safetensors.h"
#include "test_util.h"

namespace kiln {
namespace {

using kiln::testing::error_of;

namespace fs = std::filesystem;

// A fresh directory per test, removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            detail::concat("kiln_safetensors_", test->name(), "_", ::getpid());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> entries() const {  // sorted file names
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path_))
      names.push_back(entry.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string le64(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
  return bytes;
}

// A file with this header text and `data_bytes` zero bytes of data.
std::string file_with(const std::string& header, size_t data_bytes = 0) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

template <class T>
void expect_same(const Tensor& actual, const Tensor& expected, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(actual.dtype(), expected.dtype());
  EXPECT_EQ(actual.shape(), expected.shape());
  EXPECT_TRUE(actual.device().is_cpu());
  EXPECT_EQ(actual.to_vector<T>(), expected.to_vector<T>());
}

safetensors::TensorMap all_dtypes(Device device) {
  return {
      {"weight", from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f}, {2, 3}, device)},
      {"scale", from_vector<double>({3.141592653589793}, {}, device)},  // 0-d
      {"index", from_vector<int32_t>({}, {0, 3}, device)},              // empty
      {"step", from_vector<int64_t>({-1, int64_t{1} << 40, 7}, {3}, device)},
  };
}

void expect_round_trip(const safetensors::TensorMap& saved, const safetensors::File& loaded) {
  ASSERT_EQ(loaded.tensors.size(), saved.size());
  expect_same<float>(loaded.tensors.at("weight"), saved.at("weight"), "weight");
  expect_same<double>(loaded.tensors.at("scale"), saved.at("scale"), "scale");
  expect_same<int32_t>(loaded.tensors.at("index"), saved.at("index"), "index");
  expect_same<int64_t>(loaded.tensors.at("step"), saved.at("step"), "step");
}

TEST(Safetensors, RoundTripAllDtypes) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  safetensors::TensorMap tensors = all_dtypes(Device::cpu());
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode \"quoted\""}};
  safetensors::save(path, tensors, metadata);
  safetensors::File loaded = safetensors::load(path);
  expect_round_trip(tensors, loaded);
  EXPECT_EQ(loaded.metadata, metadata);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

TEST(Safetensors, Bf16RoundTripsWithItsBitsAndName) {
  TempDir dir;
  std::string path = dir.file("half.safetensors");
  std::vector<bf16> values{bf16(1.5f), bf16(-3e38f), bf16::from_bits(0x0001),
                           bf16::from_bits(0xFFC0)};
  safetensors::save(path, {{"half", from_vector<bf16>(values, {2, 2})}});
  safetensors::File loaded = safetensors::load(path);
  const Tensor& half = loaded.tensors.at("half");
  EXPECT_EQ(half.dtype(), DType::bf16);
  EXPECT_EQ(half.shape(), (Shape{2, 2}));
  std::vector<bf16> got = half.to_vector<bf16>();
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(got[i].bits, values[i].bits) << i;
  std::ifstream file(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_CONTAINS(bytes, R"("dtype":"BF16")");
}

TEST(Safetensors, RoundTripFromGpu) {
  KILN_REQUIRE_GPU();
  TempDir dir;
  std::string path = dir.file("gpu.safetensors");
  safetensors::TensorMap tensors = all_dtypes(Device::cuda());
  safetensors::save(path, tensors);
  safetensors::File loaded = safetensors::load(path);
  expect_round_trip(tensors, loaded);
  EXPECT_TRUE(loaded.metadata.empty());
  // Identical bytes to the same tensors saved from the host.
  safetensors::save(dir.file("cpu.safetensors"), all_dtypes(Device::cpu()));
  EXPECT_EQ(read_bytes(path), read_bytes(dir.file("cpu.safetensors")));
}

TEST(Safetensors, ByteLayout) {
  TempDir dir;
  std::string path = dir.file("small.safetensors");
  safetensors::save(
      path, {{"b", from_vector<int64_t>({7}, {})}, {"a", from_vector<float>({1.0f, -2.0f}, {2})}},
      {{"k", "v"}});
  // 132 bytes of JSON, padded with 4 spaces to 136 = 0x88 so that the data starts at 8 + 136 = 144.
  std::string json = R"({"__metadata__":{"k":"v"},)"
                     R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})";
  ASSERT_EQ(json.size(), 132u);
  std::string length("\x88\0\0\0\0\0\0\0", 8);   // 136, little-endian
  std::string one("\x00\x00\x80\x3f", 4);        // 1.0f = 0x3f800000
  std::string minus_two("\x00\x00\x00\xc0", 4);  // -2.0f = 0xc0000000
  std::string seven("\x07\0\0\0\0\0\0\0", 8);    // int64 7
  std::string expected = length + json + "    " + one + minus_two + seven;
  ASSERT_EQ(expected.size(), 160u);
  EXPECT_EQ(read_bytes(path), expected);
}

TEST(Safetensors, SaveIntoMissingDirectoryLeavesNothing) {
  TempDir dir;
  std::string path = dir.file("missing/model.safetensors");
  std::string msg = error_of([&] { safetensors::save(path, all_dtypes(Device::cpu())); });
  EXPECT_CONTAINS(msg, "safetensors::save: '" + path + "'");
  EXPECT_CONTAINS(msg, "cannot create temporary file");
  EXPECT_CONTAINS(msg, std::strerror(ENOENT));
  EXPECT_TRUE(dir.entries().empty());
}

TEST(Safetensors, SaveRejectsBadTensorsBeforeTouchingTheFile) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  safetensors::save(path, {{"x", ones({2})}});
  std::string old_bytes = read_bytes(path);
  std::string msg = error_of([&] { safetensors::save(path, {{"x", ones({3})}, {"y", Tensor()}}); });
  EXPECT_CONTAINS(msg, "tensor 'y' is undefined");
  msg = error_of([&] { safetensors::save(path, {{"__metadata__", ones({3})}}); });
  EXPECT_CONTAINS(msg, "a tensor cannot be named '__metadata__'");
  msg = error_of([&] { safetensors::save(path, {{std::string("bad\xff"), ones({3})}}); });
  EXPECT_CONTAINS(msg, "must be valid UTF-8");
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

// While in scope, writes past `bytes` into any regular file fail with EFBIG (SIGXFSZ ignored
// rather than killing the process): a disk filling up in the middle of a save. Keep the scope
// free of test output, which may go to a file too.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old_limit_);
    rlimit limit = old_limit_;
    limit.rlim_cur = bytes;
    active_ = ::setrlimit(RLIMIT_FSIZE, &limit) == 0;
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_limit_);
    ::signal(SIGXFSZ, old_handler_);
  }
  bool active() const { return active_; }

 private:
  rlimit old_limit_{};
  bool active_ = false;
  void (*old_handler_)(int) = nullptr;
};

TEST(Safetensors, FailedOverwriteKeepsOldFile) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  safetensors::save(path, {{"small", ones({4})}}, {{"version", "old"}});
  std::string old_bytes = read_bytes(path);

  std::string msg;
  bool limited = false;
  {
    FileSizeLimit limit(64 * 1024);
    limited = limit.active();
    if (limited) msg = error_of([&] { safetensors::save(path, {{"big", ones({64 * 1024})}}); });
  }
  if (!limited) GTEST_SKIP() << "cannot lower RLIMIT_FSIZE here";
  EXPECT_CONTAINS(msg, "safetensors::save: '" + path + "': cannot write temporary file");
  EXPECT_CONTAINS(msg, std::strerror(EFBIG));
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(safetensors::load(path).metadata.at("version"), "old");

  // A successful overwrite replaces the contents and also leaves no temporary file.
  safetensors::save(path, {{"big", ones({64 * 1024})}});
  EXPECT_EQ(safetensors::load(path).tensors.at("big").numel(), 64 * 1024);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

TEST(Safetensors, LoadMissingFile) {
  TempDir dir;
  std::string path = dir.file("absent.safetensors");
  std::string msg = error_of([&] { safetensors::load(path); });
  EXPECT_CONTAINS(msg, "safetensors::load: cannot open '" + path + "': " + std::strerror(ENOENT));
  msg = error_of([&] { safetensors::load(dir.file("")); });
  EXPECT_CONTAINS(msg, "is a directory");
}

TEST(Safetensors, TruncatedFileOnDisk) {
  TempDir dir;
  std::string path = dir.file("cut.safetensors");
  safetensors::save(path, all_dtypes(Device::cpu()));
  fs::resize_file(path, fs::file_size(path) - 3);
  std::string msg = error_of([&] { safetensors::load(path); });
  EXPECT_CONTAINS(
      msg, path + ": tensor 'weight': data_offsets [32, 56) run past the end of the 53-byte");
  EXPECT_CONTAINS(msg, "truncated");
}

struct HostileCase {
  const char* what;
  std::string bytes;
  const char* expected;  // part of the error message
};

// Each case breaks one thing of a valid file, whose tensor 'a' is F32 [2] at [0, 8).
std::vector<HostileCase> hostile_cases() {
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  return {
      {"empty buffer", "", "0 bytes is too short for a safetensors file"},
      {"7 bytes", std::string(7, '\0'), "7 bytes is too short"},
      {"header length 2^63", le64(uint64_t{1} << 63) + "{}",
       "header length 9223372036854775808 exceeds the limit of 100000000 bytes"},
      {"header length beyond the buffer", le64(100) + "{}",
       "header length 100 runs past the end of the file (2 bytes follow"},
      {"truncated JSON", file_with(R"({"a":{"dtype":"F32")"), "header is not valid JSON"},
      {"invalid UTF-8", file_with("{\"\xff\":{}}"), "header is not valid JSON"},
      {"JSON array", file_with("[1, 2]"), "header is not a JSON object (got array)"},
      {"entry not an object", file_with(R"({"a":[0, 8]})"),
       "tensor 'a': entry is not an object (got array)"},
      {"missing dtype", file_with(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor 'a': entry has no 'dtype'"},
      {"missing data_offsets", file_with(R"({"a":{"dtype":"F32","shape":[2]}})", 8),
       "tensor 'a': entry has no 'data_offsets'"},
      {"unknown dtype", file_with(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4),
       "tensor 'a': unknown dtype 'F16'"},
      {"dtype not a string", file_with(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8),
       "dtype is not a string (got number)"},
      {"shape not an array",
       file_with(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8),
       "shape is not an array (got number)"},
      {"negative shape",
       file_with(R"({"a":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}})", 8),
       "tensor 'a': shape[1] = -1 is negative"},
      {"fractional shape",
       file_with(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8),
       "shape[0] = 2.5 is not an integer"},
      {"numel overflow",
       file_with(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                 8),
       "numel overflows int64"},
      {"numel overflow before a zero",
       file_with(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})"),
       "numel overflows int64"},
      {"bytes overflow",
       file_with(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8),
       "do not match shape [4611686018427387904] x 8 bytes = more than 2^64 bytes"},
      {"one offset", file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
       "data_offsets [0] is not two non-negative integers"},
      {"negative offset",
       file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8),
       "data_offsets [-8,0] is not two non-negative integers"},
      {"offsets reversed",
       file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
       "tensor 'a': data_offsets [8, 0) are reversed"},
      {"offsets beyond the data", file_with("{" + a + "}", 4),
       "tensor 'a': data_offsets [0, 8) run past the end of the 4-byte data section"},
      {"size mismatch", file_with(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       "tensor 'a': data_offsets [0, 8) do not match shape [3] x 4 bytes = 12 bytes"},
      {"overlapping ranges",
       file_with("{" + a + R"(,"b":{"dtype":"I32","shape":[2],"data_offsets":[4,12]}})", 12),
       "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
      {"hole between ranges",
       file_with("{" + a + R"(,"b":{"dtype":"I32","shape":[2],"data_offsets":[12,20]}})", 20),
       "a hole in the data section: bytes [8, 12) before tensor 'b' belong to no tensor"},
      {"hole at the start",
       file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "bytes [0, 4) before tensor 'a'"},
      {"bytes after the last range", file_with("{" + a + "}", 12),
       "the last 4 bytes of the 12-byte data section (from offset 8) belong to no tensor"},
      {"non-string metadata", file_with(R"({"__metadata__":{"step":3},)" + a + "}", 8),
       "__metadata__ value for key 'step' is not a string (got number)"},
      {"metadata not an object", file_with(R"({"__metadata__":["x"],)" + a + "}", 8),
       "__metadata__ is not an object of strings (got array)"},
      {"duplicate tensor name", file_with("{" + a + "," + a + "}", 8),
       "tensor 'a' appears twice in the header"},
      {"duplicate key in an entry",
       file_with(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       "key 'dtype' appears twice"},
  };
}

TEST(Safetensors, HostileInputs) {
  // The valid file the cases start from, with what the reader tolerates: null metadata, an
  // unknown key in an entry, and empty tensors sharing an offset.
  safetensors::File valid = safetensors::parse(
      file_with(
          R"({"__metadata__":null,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1},)"
          R"("e":{"dtype":"I64","shape":[0],"data_offsets":[0,0]},)"
          R"("f":{"dtype":"F64","shape":[3,0],"data_offsets":[0,0]}})",
          8),
      "valid");
  EXPECT_EQ(valid.tensors.size(), 3u);
  EXPECT_EQ(valid.tensors.at("a").to_vector<float>(), std::vector<float>({0.0f, 0.0f}));

  for (const HostileCase& c : hostile_cases()) {
    SCOPED_TRACE(c.what);
    std::string msg = error_of([&] { safetensors::parse(c.bytes, "mem.safetensors"); });
    EXPECT_CONTAINS(msg, "mem.safetensors: ");
    EXPECT_CONTAINS(msg, c.expected);
  }
}

// Every truncation and many single-byte corruptions of a real file either load or throw a
// kiln::Error: never a crash or another exception (run under build-asan for out-of-bounds reads).
TEST(Safetensors, CorruptedBytesNeverCrash) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  safetensors::save(path, all_dtypes(Device::cpu()), {{"format", "pt"}});
  const std::string good = read_bytes(path);
  int loaded = 0, rejected = 0;
  auto try_parse = [&](const std::string& bytes) {
    try {
      safetensors::parse(bytes, "fuzz");
      ++loaded;
    } catch (const Error&) {
      ++rejected;
    }
  };
  for (size_t size = 0; size < good.size(); ++size) try_parse(good.substr(0, size));
  for (size_t i = 0; i < good.size(); ++i) {
    for (char value : {'\0', '\xff', '"', '}', '[', '9', '-', ' '}) {
      std::string bytes = good;
      bytes[i] = value;
      try_parse(bytes);
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(loaded, 0);  // bytes of tensor data, and padding changed to padding, still load
}

}  // namespace
}  // namespace kiln
