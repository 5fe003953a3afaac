// Cooperative interruption: a check installed for a scope makes throw_if_interrupted() throw, and
// the previous check comes back when the scope ends.

#include "ranktune/core/interrupt.h"

#include <gtest/gtest.h>

namespace ranktune {
namespace {

TEST(InterruptTest, NoCheckInstalledNeverThrows) { EXPECT_NO_THROW(throw_if_interrupted()); }

TEST(InterruptTest, AScopedCheckThrowsWhileItSaysStopAndNestedScopesRestoreTheOuterOne) {
  bool stop_outer = false;
  ScopedInterruptCheck outer([&] { return stop_outer; });
  EXPECT_NO_THROW(throw_if_interrupted());
  {
    ScopedInterruptCheck inner([] { return true; });
    EXPECT_THROW(throw_if_interrupted(), Interrupted);
  }
  EXPECT_NO_THROW(throw_if_interrupted());
  stop_outer = true;
  try {
    throw_if_interrupted();
    FAIL() << "expected Interrupted";
  } catch (const Error& e) {  // an Interrupted is a ranktune::Error, so callers that catch Error see it
    EXPECT_EQ(e.message(), "interrupted");
  }
}

}  // namespace
}  // namespace ranktune
