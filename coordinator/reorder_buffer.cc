#include "coordinator/reorder_buffer.h"

#include <utility>

namespace fanmap {

uint64_t ReorderBuffer::Add(std::string item) {
  size_t at = head_ + size_;
  if (at == blocks_.size() * kBlockSlots) {
    blocks_.push_back(spare_ != nullptr ? std::move(spare_) : std::make_unique<Block>());
  }
  item_bytes_ += item.size();
  blocks_[at / kBlockSlots]->slots[at % kBlockSlots].item = std::move(item);
  ++size_;
  return end() - 1;
}

Slot* ReorderBuffer::Find(uint64_t index) {
  if (index < base_ || index >= end()) return nullptr;
  size_t at = head_ + static_cast<size_t>(index - base_);
  return &blocks_[at / kBlockSlots]->slots[at % kBlockSlots];
}

bool ReorderBuffer::Complete(uint64_t index, Result&& result) {
  Slot* slot = Find(index);
  if (slot == nullptr || slot->state == SlotState::kDone) return false;
  slot->state = SlotState::kDone;
  slot->result = std::move(result);
  return true;
}

void ReorderBuffer::PopFront() {
  ++base_;
  --size_;
  // Mid-block (empty or not), the next slot is the one after it.
  if (++head_ < kBlockSlots) return;
  head_ = 0;
  spare_ = std::move(blocks_.front());
  blocks_.pop_front();
}

}  // namespace fanmap
