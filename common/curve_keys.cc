#include "common/curve_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <zmq.h>

namespace bert {
namespace {

constexpr size_t kZ85KeyChars = 40;
constexpr char kServerSecret[] = "server.secret";
constexpr char kServerPublic[] = "server.pub";
constexpr char kWorkerSecret[] = "worker.secret";
constexpr char kWorkerPublic[] = "worker.pub";

std::string Errno() { return std::strerror(errno); }

Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Status::IoError(dir + ": open for fsync: " + Errno());
  const int rc = ::fsync(fd);
  const std::string error = Errno();
  ::close(fd);
  return rc == 0 ? Status::Ok() : Status::IoError(dir + ": fsync: " + error);
}

// The atomic write idiom of common/file_util.h, but the temp file is created
// 0600, so a secret is never readable by others, not even for a moment.
Status WritePrivateFileAtomic(const std::string& dir, const std::string& name, const std::string& contents) {
  const std::string path = dir + "/" + name, tmp_path = path + ".tmp";
  ::unlink(tmp_path.c_str());  // a leftover of a crash
  const int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IoError(tmp_path + ": cannot create: " + Errno());
  const bool written = ::write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size()) &&
                       ::fchmod(fd, 0600) == 0 && ::fsync(fd) == 0;
  const std::string error = Errno();
  ::close(fd);
  if (!written || std::rename(tmp_path.c_str(), path.c_str()) != 0) {
    ::unlink(tmp_path.c_str());
    return Status::IoError(path + ": cannot write: " + (written ? Errno() : error));
  }
  return FsyncDir(dir);
}

bool IsZ85Key(const std::string& text) {
  uint8_t decoded[32];
  return text.size() == kZ85KeyChars && zmq_z85_decode(decoded, text.c_str()) != nullptr;
}

// Reads a one-line key file; `secret` also refuses group/other permissions.
// Result: the key, or NotFound when the file does not exist.
Result<std::string> ReadKeyFile(const std::string& dir, const std::string& name, bool secret) {
  const std::string path = dir + "/" + name;
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return Status::NotFound(path + ": no such key file");
    return Status::IoError(path + ": " + Errno());
  }
  if (secret && (info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(info.st_mode & 07777));
    return Status::FailedPrecondition(path + ": mode " + mode +
                                      ": a secret key must not be accessible by group or others (chmod 600)");
  }
  std::ifstream in(path);
  std::string key;
  if (!in || !std::getline(in, key)) return Status::IoError(path + ": cannot read");
  if (!IsZ85Key(key)) return Status::Corruption(path + ": line 1 is not a Z85 CURVE key (40 characters)");
  return key;
}

Result<std::string> PublicOf(const std::string& secret_z85) {
  char public_z85[kZ85KeyChars + 1] = {0};
  if (zmq_curve_public(public_z85, secret_z85.c_str()) != 0) {
    return Status::Internal(std::string("zmq_curve_public: ") + zmq_strerror(zmq_errno()));
  }
  return std::string(public_z85);
}

// Loads one pair: the secret (generated if missing) and its derived public
// key, checked against (or written to) the .pub file.
Result<CurveKeyPair> LoadOrCreatePair(const std::string& dir, const char* secret_name, const char* public_name,
                                      bool* created) {
  CurveKeyPair pair;
  Result<std::string> secret = ReadKeyFile(dir, secret_name, /*secret=*/true);
  if (secret.ok()) {
    pair.secret_z85 = *secret;
    Result<std::string> derived = PublicOf(pair.secret_z85);
    if (!derived.ok()) return derived.status();
    pair.public_z85 = *derived;
  } else if (secret.status().code() == Status::Code::kNotFound) {
    Result<CurveKeyPair> fresh = NewCurveKeyPair();
    if (!fresh.ok()) return fresh.status();
    pair = *fresh;
    BERT_RETURN_IF_ERROR(WritePrivateFileAtomic(dir, secret_name, pair.secret_z85 + "\n"));
    if (created) *created = true;
  } else {
    return secret.status();
  }
  Result<std::string> stored = ReadKeyFile(dir, public_name, /*secret=*/false);
  if (stored.ok()) {
    if (*stored != pair.public_z85) {
      return Status::Corruption(dir + "/" + public_name + ": does not match " + secret_name +
                                " (remove the .pub file to derive it again)");
    }
  } else if (stored.status().code() == Status::Code::kNotFound) {
    BERT_RETURN_IF_ERROR(WritePrivateFileAtomic(dir, public_name, pair.public_z85 + "\n"));
  } else {
    return stored.status();
  }
  return pair;
}

}  // namespace

std::string KeysDir(const std::string& run_dir) { return run_dir + "/keys"; }

Result<CurveKeyPair> NewCurveKeyPair() {
  char public_z85[kZ85KeyChars + 1] = {0}, secret_z85[kZ85KeyChars + 1] = {0};
  if (zmq_curve_keypair(public_z85, secret_z85) != 0) {
    return Status::FailedPrecondition(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()) +
                                      " (libzmq built without CURVE? use --insecure)");
  }
  return CurveKeyPair{public_z85, secret_z85};
}

Result<ServerKeys> LoadOrCreateServerKeys(const std::string& keys_dir, bool* created) {
  if (created) *created = false;
  if (::mkdir(keys_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError(keys_dir + ": cannot create: " + Errno());
  }
  Result<CurveKeyPair> server = LoadOrCreatePair(keys_dir, kServerSecret, kServerPublic, created);
  if (!server.ok()) return server.status();
  Result<CurveKeyPair> worker = LoadOrCreatePair(keys_dir, kWorkerSecret, kWorkerPublic, created);
  if (!worker.ok()) return worker.status();
  return ServerKeys{*server, worker->public_z85};
}

Result<WorkerKeys> LoadWorkerKeys(const std::string& keys_dir) {
  WorkerKeys keys;
  Result<std::string> server_public = ReadKeyFile(keys_dir, kServerPublic, /*secret=*/false);
  if (!server_public.ok()) return server_public.status();
  Result<std::string> worker_secret = ReadKeyFile(keys_dir, kWorkerSecret, /*secret=*/true);
  if (!worker_secret.ok()) return worker_secret.status();
  Result<std::string> worker_public = PublicOf(*worker_secret);
  if (!worker_public.ok()) return worker_public.status();
  keys.server_public_z85 = *server_public;
  keys.worker = CurveKeyPair{*worker_public, *worker_secret};
  return keys;
}

void SetCurveServer(zmq::socket_t& socket, const ServerKeys& keys) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, keys.server.secret_z85);
  socket.set(zmq::sockopt::curve_publickey, keys.server.public_z85);
}

void SetCurveClient(zmq::socket_t& socket, const WorkerKeys& keys) {
  socket.set(zmq::sockopt::curve_serverkey, keys.server_public_z85);
  socket.set(zmq::sockopt::curve_publickey, keys.worker.public_z85);
  socket.set(zmq::sockopt::curve_secretkey, keys.worker.secret_z85);
}

std::string KeyTag(const std::string& z85) { return z85.substr(0, 8); }

}  // namespace bert
