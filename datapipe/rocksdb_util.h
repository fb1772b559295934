// RocksDB helpers shared by the corpus store and ingest: options, status
// conversion, and a logger that keeps RocksDB's info log out of the database
// directory.
#pragma once

#include <rocksdb/options.h>
#include <rocksdb/status.h>

#include <string>

#include "common/status.h"

namespace bert {

// Options for the corpus databases: LZ4 when available, bulk-load friendly
// buffers, and RocksDB's own log routed to glog (warnings and errors only).
//
// Why not RocksDB's default LOG file: Debian's librocksdb (7.8) is built with
// assertions, and once a write to the database's disk fails (ENOSPC), its
// file logger asserts in WritableFileWriter::Append while logging that very
// error, aborting the process instead of returning the IO error. Logging
// through glog avoids that file, so a full disk surfaces as a Status.
rocksdb::Options CorpusDbOptions();

// "DIR: WHAT: rocksdb message" as an IoError, or OK.
Status FromRocks(const rocksdb::Status& status, const std::string& dir, const std::string& what);

}  // namespace bert
