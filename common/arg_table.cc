#include "common/arg_table.h"

#include <msgpack.hpp>

namespace fanmap {

std::string EncodeArgTable(const ArgTable& table) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<uint32_t>(table.size()));
  for (const ArgRow& row : table) {
    packer.pack_array(static_cast<uint32_t>(row.size()));
    for (const std::string& field : row) {
      packer.pack_str(static_cast<uint32_t>(field.size()));
      packer.pack_str_body(field.data(), static_cast<uint32_t>(field.size()));
    }
  }
  return std::string(buffer.data(), buffer.size());
}

Status DecodeArgTable(const std::string& text, ArgTable* table) {
  table->clear();
  msgpack::object_handle handle;
  size_t offset = 0;
  try {
    // Limits proportional to the text: no count can claim more elements
    // than there are bytes.
    msgpack::unpack_limit limit(text.size(), text.size(), text.size(), text.size(), text.size(), 8);
    handle = msgpack::unpack(text.data(), text.size(), offset, nullptr, nullptr, limit);
  } catch (const std::exception& e) {
    return Status::Error(std::string("argument table is not msgpack: ") + e.what());
  }
  if (offset != text.size()) return Status::Error("argument table has trailing bytes");
  const msgpack::object& root = handle.get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size == 0) {
    return Status::Error("argument table is not a non-empty array");
  }
  table->reserve(root.via.array.size);
  for (uint32_t i = 0; i < root.via.array.size; ++i) {
    const msgpack::object& row = root.via.array.ptr[i];
    if (row.type != msgpack::type::ARRAY || row.via.array.size == 0) {
      return Status::Error("argument table row " + std::to_string(i) + " is not a non-empty array");
    }
    ArgRow fields;
    fields.reserve(row.via.array.size);
    for (uint32_t j = 0; j < row.via.array.size; ++j) {
      const msgpack::object& field = row.via.array.ptr[j];
      if (field.type != msgpack::type::STR) {
        return Status::Error("argument table field " + std::to_string(i) + "." + std::to_string(j) +
                             " is not a string");
      }
      fields.emplace_back(field.via.str.ptr, field.via.str.size);
    }
    table->push_back(std::move(fields));
  }
  return Status::Ok();
}

}  // namespace fanmap
