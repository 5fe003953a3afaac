// core/utf8: validity and lossy repair of UTF-8.

#include "ranktune/core/utf8.h"

#include <gtest/gtest.h>

#include <string>

TEST(TokenizerUnicode, Utf8ValidationAndLossyRepair) {
  using ranktune::find_invalid_utf8;
  using ranktune::utf8_lossy;
  EXPECT_EQ(find_invalid_utf8("h\u00e9llo \U0001F999"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xC0\xAF"), 2u);          // overlong
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u);        // surrogate
  EXPECT_EQ(find_invalid_utf8("x\xF4\x90\x80\x80"), 1u);   // above U+10FFFF
  // Rust's from_utf8_lossy: one U+FFFD per maximal invalid subpart.
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98z"), "a\uFFFDz");
  EXPECT_EQ(utf8_lossy("\xFF\xFE"), "\uFFFD\uFFFD");
  EXPECT_EQ(utf8_lossy("\xE2\x82"), "\uFFFD");
}

TEST(Utf8Test, LossyRepairIsPythonsDecodeWithReplace) {
  using ranktune::utf8_lossy;
  // Expected values from Python: bytes.decode("utf-8", "replace").
  EXPECT_EQ(utf8_lossy("h\u00e9llo \U0001F999"), "h\u00e9llo \U0001F999");  // valid text is unchanged
  EXPECT_EQ(utf8_lossy("The answer is 42 \xE2\x82"), "The answer is 42 \uFFFD");  // a completion cut mid-character
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), "\uFFFD\uFFFD");                  // overlong: each byte
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");        // surrogate: each byte
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");  // above U+10FFFF
  EXPECT_EQ(utf8_lossy("\xE2\x82z\xE2\x82\xAC"), "\uFFFDz\u20AC");
  EXPECT_EQ(utf8_lossy(""), "");
  EXPECT_EQ(ranktune::find_invalid_utf8(utf8_lossy("\xFF a \xF0\x9F")), std::string::npos);
}
