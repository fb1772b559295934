#include "common/logging.h"

#include <cstdio>
#include <mutex>

namespace bert {

void InitLogging(const char* argv0) {
  static std::once_flag once;
  std::call_once(once, [argv0] {
    FLAGS_logtostderr = true;
    FLAGS_minloglevel = 0;
    google::InitGoogleLogging(argv0);
  });
}

std::string FormatDuration(double seconds) {
  if (seconds < 0 || seconds != seconds) return "?";
  long total = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", total / 3600, (total % 3600) / 60);
  } else if (total >= 60) {
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", total / 60, total % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%lds", total);
  }
  return buf;
}

}  // namespace bert
