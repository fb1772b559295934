#include "datapipe/rocksdb_util.h"

#include <rocksdb/convenience.h>
#include <rocksdb/env.h>

#include <cstdarg>
#include <cstdio>
#include <memory>

#include "common/logging.h"

namespace bert {
namespace {

class GlogRocksLogger : public rocksdb::Logger {
 public:
  GlogRocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buffer[1024];
    std::vsnprintf(buffer, sizeof(buffer), format, ap);
    LOG(WARNING) << "[rocksdb] " << buffer;
  }
};

}  // namespace

rocksdb::Options CorpusDbOptions() {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  options.write_buffer_size = 64 << 20;
  options.info_log = std::make_shared<GlogRocksLogger>();
  for (rocksdb::CompressionType type : rocksdb::GetSupportedCompressions()) {
    if (type == rocksdb::kLZ4Compression) options.compression = rocksdb::kLZ4Compression;
  }
  return options;
}

Status FromRocks(const rocksdb::Status& status, const std::string& dir, const std::string& what) {
  if (status.ok()) return Status::Ok();
  return Status::IoError(dir + ": " + what + ": " + status.ToString());
}

}  // namespace bert
