// The local Hugging Face cache (io/hub_cache.h), on a fake cache tree laid out as huggingface_hub
// lays it out: models--org--name/{refs/<branch>, snapshots/<commit>/<file> -> ../../blobs/<hash>}.

#include "ranktune/core/error.h"
#include "ranktune/io/file.h"
#include "ranktune/io/hub_cache.h"
#include "hub_test_util.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <cstdlib>
#include <filesystem>
#include <map>

using namespace ranktune;
using ::testing::HasSubstr;
using ranktune::testing::add_cached_file;
using ranktune::testing::error_of;
using ranktune::testing::set_cached_ref;
using ScopedEnv = ranktune::testing::ScopedHubEnv;

namespace {

namespace fs = std::filesystem;

const std::string kMain = "0123456789abcdef0123456789abcdef01234567";
const std::string kOld = "89abcdef0123456789abcdef0123456789abcdef";

// <cache>/models--acme--tiny-model: main -> kMain (config with "main"), branch v1 -> kOld.
fs::path make_cache(const std::string& tag) {
  const fs::path cache = fs::temp_directory_path() / ("ranktune_hub_cache_" + tag);
  fs::remove_all(cache);
  const fs::path repo = cache / "models--acme--tiny-model";
  add_cached_file(repo, kMain, "config.json", "{\"revision\": \"main\"}", "1111111111111111111111111111111111111111");
  add_cached_file(repo, kOld, "config.json", "{\"revision\": \"v1\"}", "2222222222222222222222222222222222222222");
  add_cached_file(repo, kOld, "sub/dir/file.txt", "nested", "3333333333333333333333333333333333333333");
  set_cached_ref(repo, "main", kMain);
  set_cached_ref(repo, "v1", kOld + "\n");
  return cache;
}

TEST(HubCacheTest, RepoNamesAndRevisionsAreParsedAndPathsAreNot) {
  const auto plain = io::parse_hub_repo("Qwen/Qwen2.5-0.5B-Instruct");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->repo_id, "Qwen/Qwen2.5-0.5B-Instruct");
  EXPECT_EQ(plain->revision, "main");
  const auto pinned = io::parse_hub_repo("org/name@" + kOld);
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->revision, kOld);
  for (const std::string path : {"name", "/abs/dir", "./org/name", "a/b/c", "org/../x", "../name", "org/name@", "org/name@../x", "org/na me", "org/a--b"}) {
    EXPECT_FALSE(io::parse_hub_repo(path)) << path;
  }
}

TEST(HubCacheTest, TheCacheDirectoryFollowsHuggingfaceHubsEnvironment) {
  {
    ScopedEnv env({{"HF_HUB_CACHE", "/c/hub"}, {"HF_HOME", "/h"}});
    EXPECT_EQ(io::hub_cache_dir(), "/c/hub");
  }
  {
    ScopedEnv env({{"HF_HOME", "/h"}, {"XDG_CACHE_HOME", "/x"}});
    EXPECT_EQ(io::hub_cache_dir(), "/h/hub");
  }
  {
    ScopedEnv env({{"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(io::hub_cache_dir(), "/x/huggingface/hub");
  }
  {
    ScopedEnv env({{"HOME", "/home/u"}});
    EXPECT_EQ(io::hub_cache_dir(), "/home/u/.cache/huggingface/hub");
  }
}

TEST(HubCacheTest, NamesResolveToTheSnapshotOfTheirRevision) {
  const fs::path cache = make_cache("resolve");
  ScopedEnv env({{"HF_HOME", cache.parent_path().string() + "/unused"}, {"HF_HUB_CACHE", cache.string()}});
  const fs::path repo = cache / "models--acme--tiny-model";
  EXPECT_EQ(io::resolve_pretrained("acme/tiny-model"), (repo / "snapshots" / kMain).string());
  EXPECT_EQ(io::resolve_pretrained("acme/tiny-model@v1"), (repo / "snapshots" / kOld).string());
  EXPECT_EQ(io::resolve_pretrained("acme/tiny-model@" + kOld), (repo / "snapshots" / kOld).string());
  // The snapshot's files are read through their relative symlinks into blobs/.
  EXPECT_EQ(io::read_file(io::resolve_pretrained("acme/tiny-model@v1") + "/config.json"), "{\"revision\": \"v1\"}");
  EXPECT_EQ(io::read_file(io::resolve_pretrained("acme/tiny-model@v1") + "/sub/dir/file.txt"), "nested");
  EXPECT_EQ(fs::read_symlink(repo / "snapshots" / kOld / "sub/dir/file.txt").string(),
            "../../../../blobs/3333333333333333333333333333333333333333");
  fs::remove_all(cache);
}

TEST(HubCacheTest, AnExistingLocalDirectoryWinsOverTheCache) {
  const fs::path cache = make_cache("local");
  ScopedEnv env({{"HF_HUB_CACHE", cache.string()}});
  const fs::path cwd = fs::current_path();
  fs::current_path(cache);
  fs::create_directories("acme/tiny-model");
  EXPECT_EQ(io::resolve_pretrained("acme/tiny-model"), "acme/tiny-model");
  fs::current_path(cwd);
  fs::remove_all(cache);
}

TEST(HubCacheTest, AMissingModelNamesEveryPlaceTried) {
  const fs::path cache = make_cache("missing");
  ScopedEnv env({{"HF_HUB_CACHE", cache.string()}});
  const std::string missing = error_of([] { io::resolve_pretrained("acme/other-model"); });
  EXPECT_THAT(missing, HasSubstr("acme/other-model: not found: no local directory 'acme/other-model'"));
  EXPECT_THAT(missing, HasSubstr((cache / "models--acme--other-model" / "refs" / "main").string()));
  EXPECT_THAT(missing, HasSubstr("ranktune download acme/other-model"));
  const std::string branch = error_of([] { io::resolve_pretrained("acme/tiny-model@v2"); });
  EXPECT_THAT(branch, HasSubstr("refs/v2"));
  EXPECT_THAT(branch, HasSubstr("--revision v2"));
  const std::string commit = "fedcba9876543210fedcba9876543210fedcba98";
  EXPECT_THAT(error_of([&] { io::resolve_pretrained("acme/tiny-model@" + commit); }), HasSubstr("snapshots/" + commit));
  // A ref pointing to a snapshot that is gone (a partly deleted cache) is not found either.
  fs::remove_all(cache / "models--acme--tiny-model" / "snapshots" / kOld);
  EXPECT_THAT(error_of([] { io::resolve_pretrained("acme/tiny-model@v1"); }), HasSubstr("not found"));
  // Something that is not a hub name is left to the caller, which reports it as before.
  EXPECT_EQ(io::resolve_pretrained("/no/such/dir"), "/no/such/dir");
  fs::remove_all(cache);
}

}  // namespace
