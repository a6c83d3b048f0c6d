#include "coordinator/reorder_buffer.h"

namespace fanmap {

uint64_t ReorderBuffer::Add(std::string item) {
  item_bytes_ += item.size();
  slots_.emplace_back();
  slots_.back().item = std::move(item);
  return end() - 1;
}

Slot* ReorderBuffer::Find(uint64_t index) {
  if (index < base_ || index >= end()) return nullptr;
  return &slots_[index - base_];
}

bool ReorderBuffer::Complete(uint64_t index, Result&& result) {
  Slot* slot = Find(index);
  if (slot == nullptr || slot->state == SlotState::kDone) return false;
  slot->state = SlotState::kDone;
  slot->result = std::move(result);
  return true;
}

}  // namespace fanmap
