// Command-line mistakes as users meet them: every parse error of bertctl
// exits 2 (kExitUsage, as --help promises) with one line naming the command
// and the flag, and, where a flag or command name was mistyped, the nearest
// real one ("did you mean --epochs?"). CLI11's own codes (105-109) never
// reach the shell.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace bert::cli {

// The name in `names` nearest to `word` (case-insensitive): one that starts
// with `word` or that `word` starts with (3 letters at least), else the one
// fewest edits away within max(2, |word| / 3); "" when none is.
std::string NearestName(const std::string& word, const std::vector<std::string>& names);

// Before parsing: argv[1] when it is neither a flag nor a subcommand of
// `app` -> prints "bertctl: unknown command 'X'" (with the nearest command)
// and returns 2; otherwise -1 (go on and parse).
int CheckCommandName(const CLI::App& app, int argc, char** argv);

// After CLI11 threw: help and version requests exit 0 as CLI11 prints them;
// everything else prints one line to stderr and returns 2.
int HandleParseError(CLI::App& app, const CLI::ParseError& error, int argc, char** argv);

}  // namespace bert::cli
