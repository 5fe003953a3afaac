// core/error: the one exception type and the context it carries (file, line, key).

#include "ranktune/core/error.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <string>

using ranktune::Error;
using ranktune::ErrorContext;
using ranktune::format_error;
using ranktune::testing::thrown_error;
using ::testing::HasSubstr;

TEST(ErrorContextTest, MessageNamesFileLineAndKeyLeavingOutWhatIsEmpty) {
  EXPECT_EQ(format_error("must be positive", ErrorContext{"run.yaml", "train.lr", 7}), "run.yaml:7: 'train.lr': must be positive");
  EXPECT_EQ(format_error("must be positive", ErrorContext{"run.yaml", "train.lr", -1}), "run.yaml: 'train.lr': must be positive");
  EXPECT_EQ(format_error("must be positive", ErrorContext{"run.yaml", "", -1}), "run.yaml: must be positive");
  EXPECT_EQ(format_error("must be positive", ErrorContext{"", "train.lr", -1}), "'train.lr': must be positive");
  EXPECT_EQ(format_error("must be positive", ErrorContext{}), "must be positive");
  EXPECT_EQ(format_error("x", ErrorContext{"", "", 3}), "x");  // a line without a file says nothing

  const Error e("bad value", ErrorContext{"a.json", "r", -1});
  EXPECT_STREQ(e.what(), "a.json: 'r': bad value");
  EXPECT_EQ(e.message(), "bad value");
  EXPECT_EQ(e.context().key, "r");
}

TEST(ErrorContextTest, WithContextFillsOnlyWhatTheInnerErrorDoesNotKnow) {
  const Error inner("expected an integer", ErrorContext{"", "r", -1});
  const Error outer = inner.with_context(ErrorContext{"adapter_config.json", "ignored", 4});
  EXPECT_EQ(outer.context().file, "adapter_config.json");
  EXPECT_EQ(outer.context().key, "r");  // the inner key wins
  EXPECT_EQ(outer.context().line, 4);
  EXPECT_STREQ(outer.what(), "adapter_config.json:4: 'r': expected an integer");
  EXPECT_EQ(outer.message(), "expected an integer");
}

TEST(ErrorContextTest, CheckMacrosJoinTheirPartsAndAttachTheContext) {
  const int64_t r = -2;
  const Error plain = thrown_error([&] { RANKTUNE_CHECK(r > 0, "r must be positive, got ", r); });
  EXPECT_STREQ(plain.what(), "r must be positive, got -2");
  const Error located = thrown_error([&] { RANKTUNE_CHECK_CTX(r > 0, (ErrorContext{"c.json", "r", -1}), "got ", r); });
  EXPECT_STREQ(located.what(), "c.json: 'r': got -2");
  EXPECT_NO_THROW(RANKTUNE_CHECK(r < 0, "never"));
}
