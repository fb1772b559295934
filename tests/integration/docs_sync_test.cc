// The operator's docs stay in step with the binary: every flag that
// `bertctl CMD --help` lists has a row in the flag table under that
// command's heading in docs/commands.md ("## bertctl CMD"), every
// subcommand is named in the docs and the README, and every
// relative link of README.md and docs/*.md leads to a file (and heading)
// that exists. A flag added to a command without a line in the docs, or a
// page renamed under a link, fails here with the command, flag or link named.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace bert {
namespace {

namespace fs = std::filesystem;
using testing::Bertctl;
using testing::CommandResult;
using testing::RunCommand;

const std::string kCommandsPage = "docs/commands.md";

std::string ReadSourceFile(const std::string& relative_path) {
  std::ifstream in(std::string(BERT_SOURCE_DIR) + "/" + relative_path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The lines of a CLI11 help section ("Options:", "Subcommands:"): from its
// title to the first empty line.
std::vector<std::string> HelpSection(const std::string& help, const std::string& title) {
  std::vector<std::string> section;
  bool inside = false;
  for (const std::string& line : Lines(help)) {
    if (inside && line.empty()) break;
    if (inside) section.push_back(line);
    if (line == title) inside = true;
  }
  return section;
}

// A command's own long flags, as CLI11 prints them: an option line starts
// with two spaces and a dash ("  --workers UINT ...", "  -h,--help");
// wrapped descriptions are indented further. --help is everywhere and
// needs no documenting.
std::vector<std::string> LongFlags(const std::string& help) {
  static const std::regex option_line(R"(^  (?:-[A-Za-z],)?(--[A-Za-z0-9][A-Za-z0-9-]*))");
  std::vector<std::string> flags;
  for (const std::string& line : HelpSection(help, "Options:")) {
    std::smatch match;
    if (std::regex_search(line, match, option_line) && match[1] != "--help") flags.push_back(match[1]);
  }
  return flags;
}

std::vector<std::string> Subcommands(const std::string& help) {
  std::vector<std::string> names;
  for (const std::string& line : HelpSection(help, "Subcommands:")) {
    std::istringstream words(line);
    std::string name;
    if (words >> name) names.push_back(name);
  }
  return names;
}

struct Command {
  std::string path;  // e.g. "pretrain", "corpus stats"
  std::string help;
  bool is_group = false;  // has subcommands of its own (bertctl corpus)
};

std::string Help(const std::string& path) {
  CommandResult result = RunCommand(Bertctl() + (path.empty() ? "" : " " + path) + " --help");
  EXPECT_EQ(result.exit_code, 0) << "bertctl " << path << " --help: " << result.output;
  return result.output;
}

// Every command reachable from `bertctl --help`, groups and their
// subcommands included, in the order the help lists them.
std::vector<Command> AllCommands() {
  std::vector<Command> commands;
  std::vector<std::string> pending = Subcommands(Help(""));
  for (size_t i = 0; i < pending.size(); ++i) {
    Command command{pending[i], Help(pending[i])};
    for (const std::string& sub : Subcommands(command.help)) pending.push_back(command.path + " " + sub);
    command.is_group = !Subcommands(command.help).empty();
    commands.push_back(command);
  }
  return commands;
}

// The lines under "## bertctl PATH" up to the next "## " heading; none
// when the page has no such heading.
std::vector<std::string> CommandSection(const std::string& page, const std::string& path) {
  const std::string heading = "## bertctl " + path;
  std::vector<std::string> section;
  bool inside = false;
  for (const std::string& line : Lines(page)) {
    if (inside && line.rfind("## ", 0) == 0) break;
    if (inside) section.push_back(line);
    if (line == heading) inside = true;
  }
  return section;
}

// The first cells of a section's table rows ("| `--workers N` | ..." gives
// "`--workers N`"): a flag is documented when it has a row of its own, not
// merely a mention in a synopsis or an example.
std::string FlagCells(const std::vector<std::string>& section) {
  std::string cells;
  for (const std::string& line : section) {
    if (line.rfind("| `", 0) != 0) continue;
    cells += line.substr(1, line.find('|', 1) - 1) + "\n";
  }
  return cells;
}

bool IsFlagChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; }

// `flag` occurs as a whole word: "--max" is not found in "--max-restarts".
bool MentionsFlag(const std::string& text, const std::string& flag) {
  for (size_t at = text.find(flag); at != std::string::npos; at = text.find(flag, at + 1)) {
    const bool starts = at == 0 || !IsFlagChar(text[at - 1]);
    const bool ends = at + flag.size() == text.size() || !IsFlagChar(text[at + flag.size()]);
    if (starts && ends) return true;
  }
  return false;
}

TEST(DocsSyncTest, TheHelpParserFindsTheFlagsAndCommands) {
  // Guards the tests below against passing vacuously on a help format the
  // parser no longer reads.
  const std::vector<Command> commands = AllCommands();
  std::set<std::string> paths;
  size_t flag_count = 0;
  for (const Command& command : commands) {
    paths.insert(command.path);
    flag_count += LongFlags(command.help).size();
  }
  for (const std::string expected : {"pretrain", "status", "finetune", "corpus", "corpus stats"}) {
    EXPECT_TRUE(paths.count(expected)) << "bertctl --help no longer lists '" << expected << "'";
  }
  EXPECT_GT(flag_count, 100u);
  const std::vector<std::string> pretrain = LongFlags(Help("pretrain"));
  EXPECT_NE(std::find(pretrain.begin(), pretrain.end(), "--config"), pretrain.end());
  EXPECT_NE(std::find(pretrain.begin(), pretrain.end(), "--worker-args"), pretrain.end());
  EXPECT_EQ(std::find(pretrain.begin(), pretrain.end(), "--help"), pretrain.end());
}

TEST(DocsSyncTest, EveryFlagOfEveryCommandHasARowUnderItsCommandInTheReference) {
  const std::string page = ReadSourceFile(kCommandsPage);
  ASSERT_FALSE(page.empty()) << kCommandsPage << " is missing";
  for (const Command& command : AllCommands()) {
    const std::vector<std::string> flags = LongFlags(command.help);
    if (command.is_group && flags.empty()) continue;  // its subcommands have the sections
    const std::vector<std::string> section = CommandSection(page, command.path);
    if (section.empty()) {
      ADD_FAILURE() << "bertctl " << command.path << ": no section '## bertctl " << command.path << "' in "
                    << kCommandsPage;
      continue;
    }
    const std::string rows = FlagCells(section);
    for (const std::string& flag : flags) {
      EXPECT_TRUE(MentionsFlag(rows, flag))
          << "bertctl " << command.path << " " << flag << ": listed by `bertctl " << command.path
          << " --help` but has no row in the flag table of " << kCommandsPage << " under '## bertctl "
          << command.path << "'";
    }
  }
}

TEST(DocsSyncTest, EveryCommandIsNamedInTheDocsAndTheReadme) {
  std::string docs;
  for (const fs::directory_entry& entry : fs::directory_iterator(std::string(BERT_SOURCE_DIR) + "/docs")) {
    if (entry.path().extension() == ".md") docs += ReadSourceFile("docs/" + entry.path().filename().string());
  }
  const std::string readme = ReadSourceFile("README.md");
  for (const Command& command : AllCommands()) {
    EXPECT_NE(docs.find("bertctl " + command.path), std::string::npos)
        << "bertctl " << command.path << ": not mentioned in docs/*.md";
    // The README's map names each top-level command (as `bertctl x` or in
    // a list such as "`bertctl finetune`, `eval`").
    const std::string top = command.path.substr(0, command.path.find(' '));
    EXPECT_TRUE(readme.find("bertctl " + top) != std::string::npos || readme.find("`" + top + "`") != std::string::npos)
        << "bertctl " << top << ": not named in README.md";
  }
}

// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
// to hyphens ("## bertctl corpus stats" -> "bertctl-corpus-stats").
std::string Anchor(const std::string& heading) {
  std::string anchor;
  for (char c : heading) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
      anchor += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (c == ' ') {
      anchor += '-';
    }
  }
  return anchor;
}

std::set<std::string> Anchors(const std::string& markdown) {
  std::set<std::string> anchors;
  bool in_code = false;
  for (const std::string& line : Lines(markdown)) {
    if (line.rfind("```", 0) == 0) in_code = !in_code;
    if (in_code || line.empty() || line[0] != '#') continue;
    const size_t text = line.find_first_not_of('#');
    if (text != std::string::npos && line[text] == ' ') anchors.insert(Anchor(line.substr(text + 1)));
  }
  return anchors;
}

// Checks each relative link `[text](target)` of one page: the file exists,
// and a "#anchor" names one of its headings.
void CheckLinks(const std::string& page_path) {
  const std::string page = ReadSourceFile(page_path);
  ASSERT_FALSE(page.empty()) << page_path << " is missing";
  static const std::regex link(R"(\]\(([^)\s]+)\))");
  const fs::path page_dir = fs::path(BERT_SOURCE_DIR) / fs::path(page_path).parent_path();
  for (std::sregex_iterator it(page.begin(), page.end(), link), end; it != end; ++it) {
    const std::string target = (*it)[1];
    if (target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0 || target.rfind("mailto:", 0) == 0) {
      continue;
    }
    const size_t hash = target.find('#');
    const std::string file = target.substr(0, hash);
    const fs::path resolved = file.empty() ? fs::path(BERT_SOURCE_DIR) / page_path : page_dir / file;
    if (!fs::exists(resolved)) {
      ADD_FAILURE() << page_path << ": link (" << target << ") leads to " << resolved.string() << ", which does not exist";
      continue;
    }
    if (hash == std::string::npos || resolved.extension() != ".md") continue;
    const std::string anchor = target.substr(hash + 1);
    const fs::path relative = fs::relative(resolved, BERT_SOURCE_DIR);
    EXPECT_TRUE(Anchors(ReadSourceFile(relative.string())).count(anchor))
        << page_path << ": link (" << target << "): " << relative.string() << " has no heading #" << anchor;
  }
}

TEST(DocsSyncTest, EveryRelativeLinkOfTheReadmeAndTheDocsResolves) {
  CheckLinks("README.md");
  for (const fs::directory_entry& entry : fs::directory_iterator(std::string(BERT_SOURCE_DIR) + "/docs")) {
    if (entry.path().extension() == ".md") CheckLinks("docs/" + entry.path().filename().string());
  }
}

TEST(DocsSyncTest, TheReadmeLinksEveryDocsPage) {
  const std::string readme = ReadSourceFile("README.md");
  for (const fs::directory_entry& entry : fs::directory_iterator(std::string(BERT_SOURCE_DIR) + "/docs")) {
    if (entry.path().extension() != ".md") continue;
    const std::string link = "](docs/" + entry.path().filename().string() + ")";
    EXPECT_NE(readme.find(link), std::string::npos) << "README.md does not link docs/" << entry.path().filename().string();
  }
}

}  // namespace
}  // namespace bert
