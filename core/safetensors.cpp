// safetensors reading and writing; the format is described in core/safetensors.h. Writing goes
// through a DurableFile (core/durable_file.h); reading trusts nothing in the header: every size is
// checked in uint64 against the bytes actually present before anything is allocated or copied.
#include "core/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "core/cuda_runtime.h"
#include "core/durable_file.h"

namespace kiln::safetensors {
namespace {

using json = nlohmann::json;
using Metadata = std::map<std::string, std::string>;

// Tensor bytes are written and read as they lie in memory, which is the file's byte order only on
// a little-endian host (every platform kiln builds for).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors: expects a little-endian host");

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
const char* const kMetadataKey = "__metadata__";

const char* format_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::bf16: return "BF16";
  }
  return "?";
}

bool parse_dtype_name(const std::string& name, DType* dtype) {
  for (DType candidate : {DType::f32, DType::f64, DType::i32, DType::i64, DType::bf16}) {
    if (name == format_dtype_name(candidate)) {
      *dtype = candidate;
      return true;
    }
  }
  return false;
}

// ---- writing ------------------------------------------------------------------------------------

// The JSON header for `tensors` laid out in name order with contiguous offsets, padded with spaces
// to a multiple of 8 bytes (the data section then starts 8-byte aligned, as the reference writer
// does). Keys appear in the reference order: __metadata__ first, then dtype, shape, data_offsets.
std::string make_header(const std::string& path, const TensorMap& tensors,
                        const Metadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    KILN_CHECK(name != kMetadataKey, "safetensors::save: '", path, "': a tensor cannot be named '",
               kMetadataKey, "' (the key is reserved for metadata)");
    KILN_CHECK(tensor.defined(), "safetensors::save: '", path, "': tensor '", name,
               "' is undefined");
    uint64_t end = offset + tensor.nbytes();
    header[name] = {{"dtype", format_dtype_name(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    KILN_FAIL("safetensors::save: '", path, "': tensor names and metadata must be valid UTF-8 (",
              e.what(), ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// ---- reading ------------------------------------------------------------------------------------

std::string os_error() { return std::strerror(errno); }

// One tensor entry of the header, validated against the size of the data section.
struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

uint64_t read_u64_le(const char* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  return value;
}

// A non-negative JSON integer (nlohmann parses those as unsigned; negatives as signed).
bool as_uint64(const json& value, uint64_t* out) {
  if (!value.is_number_unsigned()) return false;
  *out = value.get<uint64_t>();
  return true;
}

// Parses the header text, refusing duplicate keys: nlohmann would silently keep the last one, so a
// parser callback keeps the keys of every open object.
json parse_header_json(const char* first, const char* last, const std::string& source) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  size_t duplicate_depth = 0;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end) open_objects.pop_back();
    if (event == json::parse_event_t::key &&
        !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
      duplicate_depth = open_objects.size();
    }
    return true;
  };
  json header;
  try {
    header = json::parse(first, last, on_event);
  } catch (const json::exception& e) {
    KILN_FAIL(source, ": header is not valid JSON: ", e.what());
  }
  KILN_CHECK(duplicate.empty() || duplicate_depth > 1, source, ": tensor '", duplicate,
             "' appears twice in the header");
  KILN_CHECK(duplicate.empty(), source, ": key '", duplicate,
             "' appears twice in one object of the header");
  KILN_CHECK(header.is_object(), source, ": header is not a JSON object (got ", header.type_name(),
             ")");
  return header;
}

Metadata parse_metadata(const json& value, const std::string& source) {
  Metadata metadata;
  if (value.is_null()) return metadata;  // the reference reader takes null as "no metadata"
  KILN_CHECK(value.is_object(), source, ": ", kMetadataKey, " is not an object of strings (got ",
             value.type_name(), ")");
  for (const auto& [key, item] : value.items()) {
    KILN_CHECK(item.is_string(), source, ": ", kMetadataKey, " value for key '", key,
               "' is not a string (got ", item.type_name(), ")");
    metadata[key] = item.get<std::string>();
  }
  return metadata;
}

// The shape and its element count, which must fit int64 (Shape, shape_numel); a zero dim makes
// numel 0, but the other dims' product must fit too, as shape_numel multiplies left to right.
Shape parse_shape(const json& value, const std::string& where, uint64_t* numel) {
  KILN_CHECK(value.is_array(), where, "shape is not an array (got ", value.type_name(), ")");
  Shape shape;
  uint64_t product = 1;
  bool has_zero = false;
  for (size_t i = 0; i < value.size(); ++i) {
    const json& item = value[i];
    KILN_CHECK(!item.is_number_integer() || item.is_number_unsigned(), where, "shape[", i,
               "] = ", item.dump(), " is negative");
    uint64_t size = 0;
    KILN_CHECK(as_uint64(item, &size), where, "shape[", i, "] = ", item.dump(),
               " is not an integer");
    constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
    bool overflow = size > kMax || (size > 0 && __builtin_mul_overflow(product, size, &product)) ||
                    product > kMax;
    KILN_CHECK(!overflow, where, "shape ", value.dump(),
               " has too many elements (numel overflows int64)");
    has_zero = has_zero || size == 0;
    shape.push_back(static_cast<int64_t>(size));
  }
  *numel = has_zero ? 0 : product;
  return shape;
}

Entry parse_entry(const std::string& name, const json& value, uint64_t data_bytes,
                  const std::string& source) {
  std::string where = detail::concat(source, ": tensor '", name, "': ");
  KILN_CHECK(value.is_object(), where, "entry is not an object (got ", value.type_name(), ")");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    KILN_CHECK(value.contains(key), where, "entry has no '", key, "'");
  }
  Entry entry;
  entry.name = name;
  const json& dtype = value["dtype"];
  KILN_CHECK(dtype.is_string(), where, "dtype is not a string (got ", dtype.type_name(), ")");
  KILN_CHECK(parse_dtype_name(dtype.get<std::string>(), &entry.dtype), where, "unknown dtype '",
             dtype.get<std::string>(), "' (kiln reads F32, F64, I32 and I64)");
  uint64_t numel = 0;
  entry.shape = parse_shape(value["shape"], where, &numel);

  const json& offsets = value["data_offsets"];
  KILN_CHECK(offsets.is_array() && offsets.size() == 2 && as_uint64(offsets[0], &entry.begin) &&
                 as_uint64(offsets[1], &entry.end),
             where, "data_offsets ", offsets.dump(),
             " is not two non-negative integers [begin, end]");
  std::string range = detail::concat("data_offsets [", entry.begin, ", ", entry.end, ")");
  KILN_CHECK(entry.begin <= entry.end, where, range, " are reversed (begin > end)");
  KILN_CHECK(entry.end <= data_bytes, where, range, " run past the end of the ", data_bytes,
             "-byte data section (is the file truncated?)");
  uint64_t element_bytes = dtype_size(entry.dtype);
  uint64_t bytes = 0;
  bool overflow = __builtin_mul_overflow(numel, element_bytes, &bytes);
  KILN_CHECK(!overflow && bytes == entry.end - entry.begin, where, range, " do not match shape ",
             shape_str(entry.shape), " x ", element_bytes,
             " bytes = ", overflow ? std::string("more than 2^64") : std::to_string(bytes),
             " bytes");
  return entry;
}

// The ranges, sorted by begin, must tile the data section: no overlap, no hole, nothing left over.
void check_coverage(std::vector<Entry>* entries, uint64_t data_bytes, const std::string& source) {
  std::sort(entries->begin(), entries->end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;  // the data section is covered up to here, by `previous`
  const Entry* previous = nullptr;
  for (const Entry& entry : *entries) {
    KILN_CHECK(entry.begin >= covered, source, ": tensors '", previous->name, "' [",
               previous->begin, ", ", previous->end, ") and '", entry.name, "' [", entry.begin,
               ", ", entry.end, ") overlap");
    KILN_CHECK(entry.begin == covered, source, ": a hole in the data section: bytes [", covered,
               ", ", entry.begin, ") before tensor '", entry.name, "' belong to no tensor");
    covered = entry.end;
    previous = &entry;
  }
  KILN_CHECK(covered == data_bytes, source, ": the last ", data_bytes - covered, " bytes of the ",
             data_bytes, "-byte data section (from offset ", covered, ") belong to no tensor");
}

}  // namespace

void save(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  std::string header = make_header(path, tensors, metadata);
  char length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));

  DurableFile file(path, "safetensors::save");
  file.write(length, sizeof(length));
  file.write(header.data(), header.size());
  std::vector<char> staging;  // host copy of one device tensor at a time
  for (const auto& [name, tensor] : tensors) {
    if (tensor.device().is_cpu()) {
      file.write(tensor.raw_data(), tensor.nbytes());
      continue;
    }
    staging.resize(tensor.nbytes());
    cuda::copy_bytes(staging.data(), Device::cpu(), tensor.raw_data(), tensor.device(),
                     tensor.nbytes());
    file.write(staging.data(), staging.size());
  }
  file.commit();
}

File parse(const std::string& bytes, const std::string& source) {
  KILN_CHECK(bytes.size() >= 8, source, ": ", bytes.size(),
             " bytes is too short for a safetensors file (the header length alone takes 8 bytes)");
  uint64_t header_bytes = read_u64_le(bytes.data());
  uint64_t after_length = bytes.size() - 8;
  KILN_CHECK(header_bytes <= kMaxHeaderBytes, source, ": header length ", header_bytes,
             " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  KILN_CHECK(header_bytes <= after_length, source, ": header length ", header_bytes,
             " runs past the end of the file (", after_length, " bytes follow the length field)");
  const char* header_begin = bytes.data() + 8;
  const char* data = header_begin + header_bytes;
  uint64_t data_bytes = after_length - header_bytes;

  json header = parse_header_json(header_begin, data, source);
  File file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      file.metadata = parse_metadata(value, source);
    } else {
      entries.push_back(parse_entry(key, value, data_bytes, source));
    }
  }
  check_coverage(&entries, data_bytes, source);

  for (const Entry& entry : entries) {
    Tensor tensor = empty(entry.shape, entry.dtype);
    if (entry.end > entry.begin)
      std::memcpy(tensor.raw_data(), data + entry.begin, entry.end - entry.begin);
    file.tensors.emplace(entry.name, tensor);
  }
  return file;
}

File load(const std::string& path) {
  std::error_code ignored;
  KILN_CHECK(!std::filesystem::is_directory(path, ignored), "safetensors::load: '", path,
             "' is a directory");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  KILN_CHECK(in.is_open(), "safetensors::load: cannot open '", path, "': ", os_error());
  std::streamoff size = in.tellg();
  KILN_CHECK(size >= 0, "safetensors::load: cannot find the size of '", path, "': ", os_error());
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  in.read(bytes.data(), size);
  KILN_CHECK(in.gcount() == size, "safetensors::load: '", path, "': read ", in.gcount(), " of ",
             size, " bytes: ", os_error());
  return parse(bytes, path);
}

}  // namespace kiln::safetensors
