#include "coordinator/bounded_task_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace fanmap {
namespace {

// A gate that tasks wait at until the test opens it.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return open_; });
  }
  void WaitForWaiters(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return waiting_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int waiting_ = 0;
  bool open_ = false;
};

TEST(BoundedTaskQueueTest, RunsEveryTaskBeforeShutdownReturns) {
  std::atomic<int> ran{0};
  BoundedTaskQueue queue(3, 4);
  for (int i = 0; i < 200; ++i) queue.enqueue([&ran] { ++ran; });
  queue.shutdown();
  EXPECT_EQ(ran, 200);
  queue.shutdown();  // twice is fine
}

TEST(BoundedTaskQueueTest, EnqueueWaitsWhileTheQueueIsFull) {
  Gate gate;
  std::atomic<int> ran{0};
  BoundedTaskQueue queue(1, 2);
  queue.enqueue([&] {
    gate.Wait();
    ++ran;
  });
  gate.WaitForWaiters(1);  // the only thread is busy
  queue.enqueue([&ran] { ++ran; });
  queue.enqueue([&ran] { ++ran; });
  EXPECT_EQ(queue.queued(), 2u);
  std::atomic<bool> returned{false};
  std::thread producer([&] {
    queue.enqueue([&ran] { ++ran; });
    returned = true;
  });
  // A broken queue takes the fourth task at once; a second is only the
  // bound of the wait for that to show.
  for (int i = 0; i < 100 && !returned; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(returned) << "a third task was queued beside two";
  EXPECT_EQ(queue.queued(), 2u);
  gate.Open();
  producer.join();
  EXPECT_TRUE(returned);
  queue.shutdown();
  EXPECT_EQ(ran, 4);
}

}  // namespace
}  // namespace fanmap
