#include "cli/usage_errors.h"

#include <algorithm>
#include <cctype>
#include <iostream>

#include "cli/supervisor.h"  // ExitCode

namespace bert::cli {
namespace {

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::vector<std::string> CommandNames(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

// The subcommand argv names (the first word that is one), or null.
CLI::App* ChosenCommand(CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    for (CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      if (sub->get_name() == word) return sub;
    }
    return nullptr;
  }
  return nullptr;
}

// The first "--flag" of argv (after the command) that `command` does not know.
std::string UnknownFlag(CLI::App* command, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word.rfind("--", 0) != 0 || word == "--") continue;
    word = word.substr(2, word.find('=') == std::string::npos ? std::string::npos : word.find('=') - 2);
    bool known = word == "help";
    for (const CLI::Option* option : command->get_options()) {
      for (const std::string& name : option->get_lnames()) known = known || name == word;
    }
    if (!known) return word;
  }
  return "";
}

}  // namespace

std::string NearestName(const std::string& word, const std::vector<std::string>& names) {
  const std::string w = Lower(word);
  // A name one is the start of the other ("evaluate" / "eval") first, then
  // the fewest edits within max(2, |word| / 3).
  std::string best;
  size_t best_distance = std::max<size_t>(2, w.size() / 3) + 1;
  bool best_prefix = false;
  for (const std::string& name : names) {
    const std::string n = Lower(name);
    const size_t distance = EditDistance(w, n);
    const bool prefix = std::min(w.size(), n.size()) >= 3 && (n.rfind(w, 0) == 0 || w.rfind(n, 0) == 0);
    const bool better = prefix != best_prefix ? prefix : distance < best_distance;
    if ((prefix || distance < std::max<size_t>(2, w.size() / 3) + 1) && (best.empty() || better)) {
      best = name;
      best_distance = distance;
      best_prefix = prefix;
    }
  }
  return best;
}

int CheckCommandName(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-' || argv[1][0] == '\0') return -1;
  const std::string word = argv[1];
  const std::vector<std::string> names = CommandNames(app);
  if (std::find(names.begin(), names.end(), word) != names.end()) return -1;
  const std::string nearest = NearestName(word, names);
  std::cerr << "bertctl: unknown command '" << word << "'"
            << (nearest.empty() ? "" : "; did you mean '" + nearest + "'?") << " (bertctl --help lists them)\n";
  return kExitUsage;
}

int HandleParseError(CLI::App& app, const CLI::ParseError& error, int argc, char** argv) {
  if (error.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(error);  // --help, --version
  CLI::App* command = ChosenCommand(app, argc, argv);
  const std::string who = command ? "bertctl " + command->get_name() : "bertctl";
  std::string line = who + ": " + error.what();
  if (command != nullptr) {
    const std::string unknown = UnknownFlag(command, argc, argv);
    if (!unknown.empty()) {
      std::vector<std::string> flags;
      for (const CLI::Option* option : command->get_options()) {
        for (const std::string& name : option->get_lnames()) flags.push_back(name);
      }
      const std::string nearest = NearestName(unknown, flags);
      line = who + ": unknown flag --" + unknown + (nearest.empty() ? "" : "; did you mean --" + nearest + "?");
    }
  }
  std::cerr << line << " (" << who << " --help shows the flags)\n";
  return kExitUsage;
}

}  // namespace bert::cli
