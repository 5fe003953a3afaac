// io/yaml: typed access to YAML mappings, with errors naming the file, key path and line.

#include "ranktune/core/error.h"
#include "ranktune/io/yaml.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <string>
#include <vector>

using ranktune::Error;
using ranktune::testing::thrown_error;
using ::testing::HasSubstr;

TEST(PromptYamlFieldsTest, ReadsTypedValuesAndNamesLinesInErrors) {
  const std::string text =
      "name: run\n"
      "train:\n"
      "  lr: 1e-4\n"
      "  steps: 100\n"
      "  shuffle: yes\n"
      "  tags: [a, b]\n"
      "items:\n"
      "  - x: 1\n"
      "  - y: 2\n";
  const YAML::Node root = ranktune::io::parse_yaml(text, "run.yaml");
  ranktune::io::YamlFields fields(root, "run.yaml");
  EXPECT_EQ(fields.get_string("name"), "run");
  ranktune::io::YamlFields train = fields.get_map("train");
  EXPECT_DOUBLE_EQ(train.get_number("lr"), 1e-4);
  EXPECT_EQ(train.get_int("steps"), 100);
  EXPECT_TRUE(train.get_bool("shuffle"));
  EXPECT_EQ(train.get_string_list("tags"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(train.line("steps"), 4);
  EXPECT_EQ(train.qualified("steps"), "train.steps");

  const Error bad_int = thrown_error([&] { train.get_int("lr"); });
  EXPECT_EQ(bad_int.context().file, "run.yaml");
  EXPECT_EQ(bad_int.context().key, "train.lr");
  EXPECT_EQ(bad_int.context().line, 3);
  EXPECT_THAT(bad_int.what(), HasSubstr("run.yaml:3: 'train.lr': expected an integer"));

  auto items = fields.get_map_list("items");
  ASSERT_EQ(items.size(), 2u);
  const Error unknown = thrown_error([&] { items[1].reject_unknown({"x"}); });
  EXPECT_EQ(unknown.context().key, "items[1].y");
  EXPECT_EQ(unknown.context().line, 9);
  EXPECT_THAT(unknown.what(), HasSubstr("did you mean 'x'?"));

  const Error missing = thrown_error([&] { fields.get_string("model"); });
  EXPECT_THAT(missing.what(), HasSubstr("'model': missing required key"));
  EXPECT_FALSE(fields.has("model"));
  EXPECT_FALSE(fields.raw("model").IsDefined());
  EXPECT_TRUE(fields.unread().empty());
}

TEST(PromptYamlFieldsTest, SyntaxErrorsAndDuplicateKeysHaveLines) {
  const Error syntax = thrown_error([] { ranktune::io::parse_yaml("a: 1\nb: [1, 2\n", "bad.yaml"); });
  EXPECT_EQ(syntax.context().file, "bad.yaml");
  EXPECT_GT(syntax.context().line, 0);
  EXPECT_THAT(syntax.what(), HasSubstr("invalid YAML"));

  const YAML::Node dup = ranktune::io::parse_yaml("a: 1\nb: 2\na: 3\n", "dup.yaml");
  const Error duplicate = thrown_error([&] { ranktune::io::YamlFields f(dup, "dup.yaml"); });
  EXPECT_EQ(duplicate.context().line, 3);
  EXPECT_THAT(duplicate.what(), HasSubstr("duplicate key (first given on line 1)"));
}
