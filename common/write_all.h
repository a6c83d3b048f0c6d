// WriteAll: writes every byte of a buffer to a file descriptor, retrying
// short writes and EINTR, so that callers with their own buffers (records,
// the job log) need not each carry the loop.
#ifndef FANMAP_COMMON_WRITE_ALL_H_
#define FANMAP_COMMON_WRITE_ALL_H_

#include <cstddef>

namespace fanmap {

// Returns 0 once all `size` bytes are written, else the errno of the write
// that failed (EAGAIN on a non-blocking descriptor included). On failure an
// unknown prefix of the data may have been written.
int WriteAll(int fd, const char* data, size_t size);

}  // namespace fanmap

#endif  // FANMAP_COMMON_WRITE_ALL_H_
