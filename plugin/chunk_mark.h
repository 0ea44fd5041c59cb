// Writes each chunk of a writer (the delivery log, device statistics)
// exactly once, even when a COMMIT's answer is lost: on PostgreSQL the
// connection can break or stall after COMMIT was sent, and the commit may
// then have taken effect or not. Writing the chunk again on the next
// attempt would add its log rows and its counts a second time.
//
// So each chunk's transaction also stores a mark unique to the chunk in its
// writer's row of write_marks (node, writer). A retry's transaction first
// locks that row, which waits for the earlier attempt's transaction should
// the server still be finishing it (e.g. a synchronous standby that has
// not answered; the wait is bounded by the session's lock timeout, and a
// timeout is one more failed attempt), then reads it: the chunk's own mark
// means an earlier attempt committed, and the retry commits nothing. On
// SQLite a failed COMMIT never took effect; the same statements run there.
//
// Rule for callers: after Write fails, the next Write must carry the same
// chunk (same rows, same counts); after it succeeds, the next Write is a new
// chunk. One thread at a time; each writer of a node has its own `writer`.
#ifndef HOMEPOT_PLUGIN_CHUNK_MARK_H_
#define HOMEPOT_PLUGIN_CHUNK_MARK_H_

#include <cstdint>
#include <functional>
#include <string>

#include "database.h"
#include "status.h"

namespace homepot {

class ChunkMark {
 public:
  // `node` is the broker node (Config::node_id); `writer` names the writer
  // ("delivery_log", "device_stats").
  ChunkMark(std::string node, std::string writer);

  // How a Write ended.
  enum class Outcome {
    kWritten,         // this attempt committed the chunk
    kAlreadyWritten,  // an earlier attempt had; nothing was written now
  };

  // In one transaction on `db`: unless an earlier attempt of this chunk
  // committed, runs `statements` (the chunk's writes, no transaction of
  // their own) and stores the chunk's mark, then commits. An error means
  // the chunk must be tried again as it is.
  Result<Outcome> Write(Database* db,
                        const std::function<Status()>& statements);

 private:
  std::string CurrentMark() const;
  // Locks this writer's row (creating it when missing) and tells whether it
  // holds the current chunk's mark.
  Result<bool> HoldsCurrentMark(Database* db);

  const std::string node_;
  const std::string writer_;
  const uint64_t token_;  // random: this process's marks are its own
  uint64_t chunk_ = 1;    // the current chunk's number
  bool retry_ = false;    // an attempt of the current chunk failed
};

}  // namespace homepot

#endif  // HOMEPOT_PLUGIN_CHUNK_MARK_H_
