// Logging setup: glog to stderr, lines tagged with a component, e.g. "[prepare]".
#pragma once

#include <glog/logging.h>

#include <string>

namespace bert {

// Initialises glog once for a command-line program: log to stderr, no log
// files, INFO and above. Safe to call more than once.
void InitLogging(const char* argv0);

// Formats a duration in seconds as "1h02m", "3m05s" or "12s" (for ETAs).
std::string FormatDuration(double seconds);

}  // namespace bert
