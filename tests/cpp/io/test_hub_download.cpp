// The hub download (io/hub_download.h) against a local imitation of the hub's API
// (tests/tools/fake_hub.py, started per test): the cache layout, a resumed partial file, a
// checksum mismatch, HF_ENDPOINT and HF_TOKEN. No outside network.

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "ranktune/io/hub_download.h"
#include "hub_test_util.h"
#include "io/digest.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

using namespace ranktune;
using ::testing::HasSubstr;
using ranktune::testing::error_of;
using ranktune::testing::ScopedHubEnv;

namespace {

namespace fs = std::filesystem;

const std::string kCommit = "c0ffee0000000000000000000000000000000001";
const std::string kWeights = std::string(3000, 'w') + "end";
const std::string kConfig = "{\"model_type\": \"llama\"}";

// tests/tools/fake_hub.py serving `spec` on a free port; stopped on destruction.
class FakeHub {
 public:
  FakeHub(const nlohmann::json& spec, const fs::path& work) : work_(work) {
    fs::create_directories(work);
    io::write_file_atomic((work / "spec.json").string(), spec.dump());
    const fs::path port_file = work / "port";
    fs::remove(port_file);
    const std::string script = std::string(RANKTUNE_SOURCE_DIR) + "/tests/tools/fake_hub.py";
    pid_ = fork();
    if (pid_ == 0) {
      execlp("python3", "python3", script.c_str(), (work / "spec.json").c_str(), port_file.c_str(), log().c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 200 && !fs::exists(port_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (fs::exists(port_file)) url_ = "http://127.0.0.1:" + io::read_file(port_file.string());
  }
  ~FakeHub() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& url() const { return url_; }  // "" when it did not start
  std::string log() const { return (work_ / "requests.log").string(); }
  std::string requests() const { return fs::exists(log()) ? io::read_file(log()) : ""; }

 private:
  fs::path work_;
  pid_t pid_ = -1;
  std::string url_;
};

nlohmann::json spec(const std::string& served_weights = kWeights) {
  nlohmann::json files;
  files["config.json"] = {{"text", kConfig}};
  files["model.safetensors"] = {{"text", kWeights}, {"lfs", true}, {"served", served_weights}};
  files["sub/dir/notes.txt"] = {{"text", "nested"}};
  return {{"repos", {{"acme/tiny", {{"commit", kCommit}, {"refs", {"main", "v1"}}, {"files", files}}}}}};
}

class HubDownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = fs::temp_directory_path() / ("ranktune_hub_download_" + std::to_string(getpid()));
    fs::remove_all(work_);
    cache_ = work_ / "cache";
  }
  void TearDown() override { fs::remove_all(work_); }
  fs::path repo_dir() const { return cache_ / "models--acme--tiny"; }

  fs::path work_, cache_;
};

#define START_HUB(hub, spec_json)                                        \
  FakeHub hub(spec_json, work_ / "hub");                                 \
  if (hub.url().empty()) GTEST_SKIP() << "python3 could not start tests/tools/fake_hub.py"

TEST_F(HubDownloadTest, ASnapshotIsWrittenInHuggingfaceHubsLayoutAndThenResolvesOffline) {
  START_HUB(hub, spec());
  ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}});
  const std::string snapshot = io::download_snapshot("acme/tiny");
  EXPECT_EQ(snapshot, (repo_dir() / "snapshots" / kCommit).string());
  EXPECT_EQ(io::read_file(snapshot + "/config.json"), kConfig);
  EXPECT_EQ(io::read_file(snapshot + "/model.safetensors"), kWeights);
  EXPECT_EQ(io::read_file(snapshot + "/sub/dir/notes.txt"), "nested");
  // Blobs named by the LFS sha256 and by the git blob sha1, relative links, refs/main.
  const fs::path check = work_ / "check";
  io::write_file_atomic(check.string(), kWeights);
  EXPECT_EQ(fs::read_symlink(snapshot + "/model.safetensors").string(), "../../blobs/" + io::sha256_file(check.string()));
  io::write_file_atomic(check.string(), "nested");
  EXPECT_EQ(fs::read_symlink(snapshot + "/sub/dir/notes.txt").string(), "../../../../blobs/" + io::git_blob_sha1_file(check.string()));
  EXPECT_EQ(io::git_blob_sha1_file(check.string()), "bfe53d766e64d78f80050b73cd1c88095bc70abb");  // git hash-object
  EXPECT_EQ(io::read_file((repo_dir() / "refs" / "main").string()), kCommit);
  EXPECT_EQ(io::resolve_pretrained("acme/tiny"), snapshot);
  for (const auto& entry : fs::recursive_directory_iterator(cache_)) EXPECT_NE(entry.path().extension(), ".incomplete");
  // A second download asks for the file list only.
  const std::string before = hub.requests();
  io::download_snapshot("acme/tiny");
  const std::string after = hub.requests().substr(before.size());
  EXPECT_THAT(after, HasSubstr("GET /api/models/acme/tiny/revision/main?blobs=true"));
  EXPECT_THAT(after, ::testing::Not(HasSubstr("/resolve/")));
  // Another branch of the same commit reuses the snapshot and writes its ref.
  io::download_snapshot("acme/tiny", io::HubDownloadOptions{"v1"});
  EXPECT_EQ(io::resolve_pretrained("acme/tiny@v1"), snapshot);
}

TEST_F(HubDownloadTest, APartialFileIsResumedWithARangeRequest) {
  START_HUB(hub, spec());
  ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}});
  // The list gives the blob name; an interrupted download left its first 1000 bytes.
  io::download_snapshot("acme/tiny");
  const fs::path blob = fs::canonical(repo_dir() / "snapshots" / kCommit / "model.safetensors");
  fs::remove_all(repo_dir() / "snapshots");
  fs::remove(blob);
  io::write_file_atomic(blob.string() + ".incomplete", kWeights.substr(0, 1000));
  const std::string before = hub.requests();
  const std::string snapshot = io::download_snapshot("acme/tiny");
  EXPECT_THAT(hub.requests().substr(before.size()), HasSubstr("/resolve/" + kCommit + "/model.safetensors range=bytes=1000-"));
  EXPECT_EQ(io::read_file(snapshot + "/model.safetensors"), kWeights);
  EXPECT_FALSE(fs::exists(blob.string() + ".incomplete"));
}

TEST_F(HubDownloadTest, AChecksumMismatchRejectsTheFileAndLeavesNothingBehind) {
  std::string corrupt = kWeights;
  corrupt[100] = 'X';
  START_HUB(hub, spec(corrupt));
  ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}});
  const std::string message = error_of([] { io::download_snapshot("acme/tiny"); });
  EXPECT_THAT(message, HasSubstr("'model.safetensors' rejected: sha256 "));
  EXPECT_THAT(message, HasSubstr("does not match the hub's"));
  EXPECT_THAT(message, HasSubstr("the download was deleted"));
  EXPECT_FALSE(fs::exists(repo_dir() / "refs"));
  EXPECT_THAT(error_of([] { io::resolve_pretrained("acme/tiny"); }), HasSubstr("not found"));
  for (const auto& entry : fs::recursive_directory_iterator(cache_)) {
    const std::string name = entry.path().filename().string();
    EXPECT_FALSE(name.size() == 64 || ends_with(name, ".incomplete") || name == "model.safetensors") << entry.path();
  }
}

TEST_F(HubDownloadTest, TheTokenIsSentAndItsAbsenceExplained) {
  nlohmann::json gated = spec();
  gated["token"] = "hf_secret";
  START_HUB(hub, gated);
  {
    ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}});
    const std::string message = error_of([] { io::download_snapshot("acme/tiny"); });
    EXPECT_THAT(message, HasSubstr("HTTP 401"));
    EXPECT_THAT(message, HasSubstr("set HF_TOKEN"));
    EXPECT_FALSE(fs::exists(repo_dir()));
  }
  ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url() + "/"}, {"HF_TOKEN", "hf_secret"}});
  io::download_snapshot("acme/tiny");
  EXPECT_THAT(hub.requests(), HasSubstr("/resolve/" + kCommit + "/config.json range= auth=Bearer hf_secret"));
}

// Without $HF_TOKEN, the token `huggingface-cli login` saved: $HF_TOKEN_PATH, else $HF_HOME/token.
TEST_F(HubDownloadTest, TheTokenFileIsReadAsHuggingfaceHubReadsIt) {
  nlohmann::json gated = spec();
  gated["token"] = "hf_from_file";
  START_HUB(hub, gated);
  const fs::path home = cache_.parent_path() / "hf_home";
  fs::create_directories(home);
  std::ofstream(home / "token") << "hf_from_file\n";  // as login writes it, with a newline
  {
    ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}, {"HF_HOME", home.string()}});
    io::download_snapshot("acme/tiny");
    EXPECT_THAT(hub.requests(), HasSubstr("auth=Bearer hf_from_file"));
  }
  fs::remove_all(cache_);
  const fs::path elsewhere = home / "elsewhere";
  std::ofstream(elsewhere) << "  hf_from_file  ";
  fs::remove(home / "token");
  {
    ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}, {"HF_HOME", home.string()},
                      {"HF_TOKEN_PATH", elsewhere.string()}});
    io::download_snapshot("acme/tiny");
  }
  fs::remove_all(cache_);
  {  // $HF_TOKEN wins over the file
    std::ofstream(elsewhere) << "hf_wrong";
    ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}, {"HF_TOKEN_PATH", elsewhere.string()},
                      {"HF_TOKEN", "hf_from_file"}});
    io::download_snapshot("acme/tiny");
  }
  fs::remove_all(cache_);
  {  // a wrong token from the file is sent, and refused
    ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}, {"HF_TOKEN_PATH", elsewhere.string()}});
    EXPECT_THAT(error_of([] { io::download_snapshot("acme/tiny"); }), HasSubstr("HTTP 401"));
  }
}

TEST_F(HubDownloadTest, UnknownRepositoriesAndRevisionsAreNamed) {
  START_HUB(hub, spec());
  ScopedHubEnv env({{"HF_HUB_CACHE", cache_.string()}, {"HF_ENDPOINT", hub.url()}});
  EXPECT_THAT(error_of([] { io::download_snapshot("acme/other"); }),
              HasSubstr("not found on the hub: model acme/other at revision main (RepoNotFound)"));
  EXPECT_THAT(error_of([] { io::download_snapshot("acme/tiny", io::HubDownloadOptions{"v9"}); }),
              HasSubstr("model acme/tiny at revision v9 (RevisionNotFound)"));
  EXPECT_THAT(error_of([] { io::download_snapshot("not a name"); }), HasSubstr("is not a hub repository name"));
}

}  // namespace
