#include "coordinator/reorder_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace fanmap {
namespace {

class ReorderBufferTest : public ::testing::Test {
 protected:
  // Adds items "item0", "item1", ... until `n` were added in all.
  void AddItems(uint64_t n) {
    while (buffer_.end() < n) buffer_.Add("item" + std::to_string(buffer_.end()));
  }

  bool Complete(uint64_t index, const std::string& value) {
    Result result;
    result.index = index;
    result.ok = true;
    result.value = value;
    return buffer_.Complete(index, std::move(result));
  }

  bool Complete(uint64_t index) { return Complete(index, "result" + std::to_string(index)); }

  // Pops the finished prefix; returns "index:item:value" of each popped slot.
  std::vector<std::string> Pop() {
    std::vector<std::string> popped;
    size_t n = buffer_.PopReady([&](uint64_t index, const Slot& slot) {
      EXPECT_EQ(slot.state, SlotState::kDone);
      popped.push_back(std::to_string(index) + ":" + slot.item + ":" + slot.result.value);
    });
    EXPECT_EQ(n, popped.size());
    return popped;
  }

  ReorderBuffer buffer_;
};

using Popped = std::vector<std::string>;

TEST_F(ReorderBufferTest, ItemBytesCountItemsFreedBeforeTheirPop) {
  buffer_.Add("abcd");
  buffer_.Add("ef");
  ASSERT_EQ(buffer_.item_bytes(), 6u);
  Complete(1);
  buffer_.FreeItem(buffer_.Find(1));  // --unordered: written at once
  EXPECT_EQ(buffer_.item_bytes(), 4u);
  Complete(0);
  buffer_.PopReady([this](uint64_t index, Slot& slot) { buffer_.FreeItem(&slot); });
  EXPECT_EQ(buffer_.item_bytes(), 0u) << "freed bytes must not be counted twice, nor kept";
}

TEST_F(ReorderBufferTest, AssignsIndicesInOrder) {
  EXPECT_EQ(buffer_.Add("a"), 0u);
  EXPECT_EQ(buffer_.Add("b"), 1u);
  EXPECT_EQ(buffer_.Add("c"), 2u);
  EXPECT_EQ(buffer_.size(), 3u);
}

TEST_F(ReorderBufferTest, KeepsAssigningIndicesAfterPop) {
  AddItems(2);
  Complete(0);
  Complete(1);
  Pop();
  EXPECT_EQ(buffer_.Add("c"), 2u);
}

TEST_F(ReorderBufferTest, NewSlotIsPendingWithItem) {
  AddItems(1);
  Slot* slot = buffer_.Find(0);
  ASSERT_NE(slot, nullptr);
  EXPECT_EQ(slot->item, "item0");
  EXPECT_EQ(slot->state, SlotState::kPending);
  EXPECT_EQ(slot->attempts, 0u);
}

TEST_F(ReorderBufferTest, EmitsContiguousPrefixOnly) {
  AddItems(4);
  Complete(0);
  Complete(1);
  Complete(3);
  EXPECT_EQ(Pop(), (Popped{"0:item0:result0", "1:item1:result1"}));
  EXPECT_EQ(buffer_.size(), 2u);
  EXPECT_EQ(buffer_.begin(), 2u);
}

TEST_F(ReorderBufferTest, EmitsNothingWhileOldestIsUnfinished) {
  AddItems(3);
  Complete(1);
  Complete(2);
  EXPECT_EQ(Pop(), Popped{});
  EXPECT_EQ(buffer_.size(), 3u);
}

TEST_F(ReorderBufferTest, EmitsInIndexOrderAfterOutOfOrderCompletion) {
  AddItems(4);
  Complete(3);
  Complete(1);
  Complete(2);
  EXPECT_EQ(Pop(), Popped{});
  Complete(0);
  EXPECT_EQ(Pop(),
            (Popped{"0:item0:result0", "1:item1:result1", "2:item2:result2", "3:item3:result3"}));
  EXPECT_TRUE(buffer_.empty());
}

TEST_F(ReorderBufferTest, InFlightSlotIsNotEmitted) {
  AddItems(2);
  buffer_.Find(0)->state = SlotState::kInFlight;
  Complete(1);
  EXPECT_EQ(Pop(), Popped{});
}

TEST_F(ReorderBufferTest, DuplicateCompleteKeepsFirstResult) {
  AddItems(2);
  EXPECT_TRUE(Complete(1, "first"));
  EXPECT_FALSE(Complete(1, "second"));
  EXPECT_EQ(buffer_.Find(1)->result.value, "first");
  EXPECT_EQ(buffer_.Find(1)->state, SlotState::kDone);
}

TEST_F(ReorderBufferTest, CompleteOfPoppedIndexIsDuplicate) {
  AddItems(2);
  Complete(0, "first");
  Pop();
  EXPECT_FALSE(Complete(0, "again"));
  EXPECT_EQ(buffer_.size(), 1u);
  EXPECT_EQ(buffer_.begin(), 1u);
}

TEST_F(ReorderBufferTest, CompleteOfIndexNeverAddedIsRejected) {
  AddItems(2);
  EXPECT_FALSE(Complete(2));
  EXPECT_FALSE(Complete(1000));
  EXPECT_EQ(buffer_.size(), 2u);
  EXPECT_EQ(buffer_.end(), 2u);
}

TEST_F(ReorderBufferTest, FindReturnsNullAfterPop) {
  AddItems(2);
  Complete(0);
  Pop();
  EXPECT_EQ(buffer_.Find(0), nullptr);
  ASSERT_NE(buffer_.Find(1), nullptr);
  EXPECT_EQ(buffer_.Find(1)->item, "item1");
}

TEST_F(ReorderBufferTest, FindReturnsNullForIndexNeverAdded) {
  AddItems(1);
  EXPECT_EQ(buffer_.Find(1), nullptr);
  EXPECT_EQ(buffer_.Find(UINT64_MAX), nullptr);
}

TEST_F(ReorderBufferTest, CountsItemBytesUntilPopped) {
  EXPECT_EQ(buffer_.item_bytes(), 0u);
  buffer_.Add("abc");
  buffer_.Add("");
  buffer_.Add("defgh");
  EXPECT_EQ(buffer_.item_bytes(), 8u);
  Complete(0);
  EXPECT_EQ(buffer_.item_bytes(), 8u);  // done but not popped: still held
  Pop();
  EXPECT_EQ(buffer_.item_bytes(), 5u);
  Complete(1);
  Complete(2);
  Pop();
  EXPECT_EQ(buffer_.item_bytes(), 0u);
}

TEST_F(ReorderBufferTest, BeginAndEndBracketTheWindow) {
  EXPECT_EQ(buffer_.begin(), 0u);
  EXPECT_EQ(buffer_.end(), 0u);
  AddItems(5);
  EXPECT_EQ(buffer_.begin(), 0u);
  EXPECT_EQ(buffer_.end(), 5u);
  Complete(0);
  Complete(1);
  Pop();
  EXPECT_EQ(buffer_.begin(), 2u);
  EXPECT_EQ(buffer_.end(), 5u);
  EXPECT_EQ(buffer_.size(), 3u);
}

TEST_F(ReorderBufferTest, PopsEverythingWhenAllDone) {
  AddItems(100);
  for (uint64_t i = 100; i-- > 0;) Complete(i);
  EXPECT_EQ(Pop().size(), 100u);
  EXPECT_TRUE(buffer_.empty());
  EXPECT_EQ(buffer_.begin(), 100u);
  EXPECT_EQ(buffer_.end(), 100u);
}

// Callers hold Find()'s pointer while more items are added (Dispatch adds
// nothing, but AddItem completes the slot it just added): a slot must not
// move while the window grows past any number of blocks.
TEST_F(ReorderBufferTest, SlotsDoNotMoveWhileTheWindowGrows) {
  AddItems(1);
  Slot* first = buffer_.Find(0);
  first->attempts = 7;
  AddItems(5000);
  EXPECT_EQ(buffer_.Find(0), first);
  EXPECT_EQ(first->item, "item0");
  EXPECT_EQ(first->attempts, 7u);
  std::vector<Slot*> seen;
  for (uint64_t i = 0; i < 5000; ++i) seen.push_back(buffer_.Find(i));
  AddItems(9000);
  for (uint64_t i = 0; i < 5000; ++i) {
    ASSERT_EQ(buffer_.Find(i), seen[i]) << "slot " << i << " moved";
    ASSERT_EQ(seen[i]->item, "item" + std::to_string(i));
  }
}

// Slots are reused once popped: a new item must find none of the state,
// result or flags of the item that had its place before.
TEST_F(ReorderBufferTest, ReusedSlotsStartClean) {
  for (uint64_t round = 0; round < 20; ++round) {
    uint64_t from = buffer_.end();
    AddItems(from + 300);  // more than a block, so blocks are emptied and reused
    for (uint64_t i = from; i < buffer_.end(); ++i) {
      Slot* slot = buffer_.Find(i);
      ASSERT_NE(slot, nullptr);
      ASSERT_EQ(slot->state, SlotState::kPending) << i;
      ASSERT_EQ(slot->attempts, 0u) << i;
      ASSERT_FALSE(slot->written) << i;
      ASSERT_EQ(slot->worker, 0u) << i;
      ASSERT_EQ(slot->fingerprint, 0u) << i;
      ASSERT_TRUE(slot->result.value.empty()) << i;
      // ... nor keep its memory: a popped slot's buffers are freed.
      ASSERT_LE(slot->result.value.capacity(), std::string().capacity()) << i;
      ASSERT_TRUE(slot->result.extra.empty()) << i;
      ASSERT_TRUE(slot->result.limits->empty()) << i;
      ASSERT_EQ(slot->item, "item" + std::to_string(i));
      slot->state = SlotState::kInFlight;
      slot->attempts = 3;
      slot->written = true;
      slot->worker = 9;
      slot->fingerprint = 42;
      Result result;
      result.ok = true;
      result.value = "a value long enough to be on the heap: " + std::to_string(i);
      result.extra["status"] = int64_t{200};
      result.limits.mut().limit_requests = 100;
      slot->state = SlotState::kPending;
      ASSERT_TRUE(buffer_.Complete(i, std::move(result)));
    }
    std::vector<uint64_t> popped;
    buffer_.PopReady([&](uint64_t index, Slot& slot) {
      EXPECT_EQ(slot.result.value,
                "a value long enough to be on the heap: " + std::to_string(index));
      popped.push_back(index);
    });
    ASSERT_EQ(popped.size(), 300u);
    EXPECT_EQ(popped.front(), from);
    EXPECT_EQ(popped.back(), from + 299);
    EXPECT_TRUE(buffer_.empty());
    EXPECT_EQ(buffer_.item_bytes(), 0u);
  }
}

// The window slides across block boundaries, in order, with a finished
// prefix that ends anywhere in a block.
TEST_F(ReorderBufferTest, PrefixPopsAcrossBlocks) {
  AddItems(1000);
  uint64_t next = 0;
  for (uint64_t upto : {1u, 255u, 256u, 257u, 511u, 513u, 999u, 1000u}) {
    for (uint64_t i = next; i < upto; ++i) ASSERT_TRUE(Complete(i));
    Popped popped = Pop();
    ASSERT_EQ(popped.size(), upto - next);
    EXPECT_EQ(popped.front(), std::to_string(next) + ":item" + std::to_string(next) + ":result" +
                                  std::to_string(next));
    next = upto;
    EXPECT_EQ(buffer_.begin(), upto);
    EXPECT_EQ(buffer_.size(), 1000 - upto);
    if (upto < 1000) {
      EXPECT_EQ(buffer_.Find(upto)->item, "item" + std::to_string(upto));
    }
  }
  EXPECT_EQ(buffer_.Find(999), nullptr);
  EXPECT_EQ(buffer_.Add("again"), 1000u);
  EXPECT_EQ(buffer_.Find(1000)->item, "again");
}

}  // namespace
}  // namespace fanmap
