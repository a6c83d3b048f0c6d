// ReorderBuffer: the window of items that have been read but whose records
// have not been written yet, in index order.
//
// Every item gets the next index when it is added. A slot goes
// kPending → kInFlight (sent to a worker; may go back to kPending if that
// worker dies) → kDone (first result kept). PopReady() hands out the longest
// finished prefix, in order, and forgets it, so memory is bounded by the
// window the caller allows (size()), not by the input's length.
#ifndef FANMAP_COORDINATOR_REORDER_BUFFER_H_
#define FANMAP_COORDINATOR_REORDER_BUFFER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "common/protocol.h"

namespace fanmap {

enum class SlotState : uint8_t { kPending, kInFlight, kDone };

// How a record already written by an interrupted run is handled (--resume).
enum class Resumed : uint8_t { kNo, kInFile, kCopy };

struct Slot {
  std::string item;
  SlotState state = SlotState::kPending;
  Resumed resumed = Resumed::kNo;
  bool written = false;         // --unordered: the record is already out
  bool speculated = false;      // a backup copy was sent
  uint8_t losses = 0;           // workers that died holding it (saturates)
  bool suspect = false;         // held by kSuspectAfterLosses of them: runs alone (Scheduler::Fits)
  bool retry_deadline = false;  // in Scheduler's retry_deadlines_ (--retry-for)
  bool failed_before = false;   // an attempt started and ended without its record: a retry
  uint32_t worker = 0;          // valid when kInFlight
  uint32_t backup_worker = 0;   // worker running the backup copy, 0 = none
  uint32_t attempts = 0;        // copies sent so far: the next copy's attempt number
  uint32_t charged = 0;         // attempts counted against --retries (started ones)
  uint32_t primary_attempt = 0;  // attempt number of the copy at `worker`
  uint32_t backup_attempt = 0;   // attempt number of the copy at `backup_worker`
  int64_t sent_us = 0;           // when the latest attempt was sent
  int64_t first_sent_ms = -1;    // when its first attempt was sent (--retry-for); -1 = none yet
                                 // (an attempt lost before it started is none)
  uint64_t sent_seq = 0;         // global send order of the latest attempt
  uint64_t fingerprint = 0;      // of the job and the item, for "fp" (item_fingerprint.h)
  Result result;                 // valid when kDone; kPending after a failure: that failure
};

class ReorderBuffer {
 public:
  // Adds an item; returns its index.
  uint64_t Add(std::string item);

  // The slot of `index`, or null if it was already popped or never added.
  Slot* Find(uint64_t index);
  const Slot* Find(uint64_t index) const { return const_cast<ReorderBuffer*>(this)->Find(index); }

  // Stores the first result for `index` and marks it done. Returns false
  // (and changes nothing) if the slot is gone or already done: a duplicate.
  bool Complete(uint64_t index, Result&& result);

  // Calls emit(index, slot) for each slot of the finished prefix, in order,
  // then drops them, until `stop()` says so before one. Returns how many
  // were popped.
  template <typename Emit, typename Stop>
  size_t PopReady(Emit&& emit, Stop&& stop) {
    size_t popped = 0;
    while (size_ > 0 && !stop()) {
      Slot& front = blocks_.front()->slots[head_];
      if (front.state != SlotState::kDone) break;
      emit(base_, front);
      // emit() may have freed the item already (FreeItem counts that).
      item_bytes_ -= front.item.size();
      // Ready for reuse, its memory freed now (assigning a new Slot would
      // keep the strings' buffers).
      std::destroy_at(&front);
      ::new (&front) Slot();
      PopFront();
      ++popped;
    }
    return popped;
  }
  template <typename Emit>
  size_t PopReady(Emit&& emit) {
    return PopReady(std::forward<Emit>(emit), [] { return false; });
  }

  // Items in the window.
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Bytes of item text held.
  size_t item_bytes() const { return item_bytes_; }
  // Drops the item text of a slot whose record is written.
  void FreeItem(Slot* slot) {
    item_bytes_ -= slot->item.size();
    std::string().swap(slot->item);
  }
  // Index of the oldest slot (the next record to write).
  uint64_t begin() const { return base_; }
  // Index the next Add() will return.
  uint64_t end() const { return base_ + size_; }

 private:
  static constexpr size_t kBlockSlots = 256;
  struct Block {
    Slot slots[kBlockSlots];
  };

  // Drops the front slot (already reset), and its block once it is empty.
  void PopFront();

  std::deque<std::unique_ptr<Block>> blocks_;  // slot `base_` is blocks_[0]->slots[head_]
  std::unique_ptr<Block> spare_;               // an emptied block, for the next Add()
  size_t head_ = 0;
  size_t size_ = 0;
  uint64_t base_ = 0;
  size_t item_bytes_ = 0;
};

}  // namespace fanmap

#endif  // FANMAP_COORDINATOR_REORDER_BUFFER_H_
