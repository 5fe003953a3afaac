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

TEST(YamlFieldsTest, NullMappingReadsAsEmptyAndOtherKindsAreRefused) {
  const YAML::Node empty = ranktune::io::parse_yaml("", "empty.yaml");
  ranktune::io::YamlFields none(empty, "empty.yaml");
  EXPECT_FALSE(none.has("anything"));
  EXPECT_TRUE(none.unread().empty());

  const Error list = thrown_error([] { ranktune::io::YamlFields f(ranktune::io::parse_yaml("- a\n- b\n", "l.yaml"), "l.yaml"); });
  EXPECT_THAT(list.what(), HasSubstr("l.yaml:1: expected a mapping of keys to values, got a list"));
  EXPECT_EQ(ranktune::io::yaml_type_name(ranktune::io::parse_yaml("x", "s.yaml")), "scalar");
  EXPECT_EQ(ranktune::io::yaml_type_name(YAML::Node()), "null");
  EXPECT_EQ(ranktune::io::yaml_type_name(YAML::Node(YAML::NodeType::Undefined)), "missing");
}

TEST(YamlFieldsTest, ExplicitNullIsReadButHasNoValue) {
  const YAML::Node root = ranktune::io::parse_yaml("a: ~\nb: 1\nc: 2\n", "n.yaml");
  ranktune::io::YamlFields f(root, "n.yaml");
  EXPECT_TRUE(f.has("a"));
  EXPECT_FALSE(f.has_value("a"));
  EXPECT_TRUE(f.has_value("b"));
  EXPECT_EQ(f.unread(), (std::vector<std::string>{"c"}));  // a and b were looked at
}

TEST(YamlFieldsTest, TypeErrorsNameTheKeyTheValueAndTheLine) {
  const std::string text =
      "flag: maybe\n"
      "count: 2.5\n"
      "lr: fast\n"
      "tags: [a, [b]]\n"
      "section: [1, 2]\n"
      "items: {x: 1}\n"
      "nested:\n"
      "  inner: [1]\n";
  const YAML::Node root = ranktune::io::parse_yaml(text, "t.yaml");
  ranktune::io::YamlFields f(root, "t.yaml");
  EXPECT_THAT(thrown_error([&] { f.get_bool("flag"); }).what(), HasSubstr("t.yaml:1: 'flag': expected true or false, got 'maybe'"));
  EXPECT_THAT(thrown_error([&] { f.get_int("count"); }).what(), HasSubstr("t.yaml:2: 'count': expected an integer, got '2.5'"));
  EXPECT_THAT(thrown_error([&] { f.get_number("lr"); }).what(), HasSubstr("t.yaml:3: 'lr': expected a number, got 'fast'"));
  EXPECT_THAT(thrown_error([&] { f.get_string_list("tags"); }).what(), HasSubstr("t.yaml:4: 'tags[1]': expected a string, got a list"));
  EXPECT_THAT(thrown_error([&] { f.get_map("section"); }).what(), HasSubstr("t.yaml:5: 'section': expected a mapping, got a list"));
  EXPECT_THAT(thrown_error([&] { f.get_map_list("items"); }).what(), HasSubstr("t.yaml:6: 'items': expected a list, got a mapping"));
  EXPECT_THAT(thrown_error([&] { f.get_map("nested").get_string("inner"); }).what(),
              HasSubstr("t.yaml:8: 'nested.inner': expected a single value, got a list"));
}

TEST(YamlFieldsTest, RejectUnknownNamesTheFirstWithItsLineAndListsTheOthers) {
  const YAML::Node root = ranktune::io::parse_yaml("train:\n  lr: 1\n  stpes: 2\n  warmpu: 3\n", "r.yaml");
  ranktune::io::YamlFields top(root, "r.yaml");
  ranktune::io::YamlFields train = top.get_map("train");
  const Error e = thrown_error([&] { train.reject_unknown({"lr", "steps", "warmup"}); });
  EXPECT_EQ(e.context().key, "train.stpes");
  EXPECT_EQ(e.context().line, 3);
  EXPECT_THAT(e.what(), HasSubstr("unknown key (did you mean 'steps'?)"));
  EXPECT_THAT(e.what(), HasSubstr("also unknown: 'train.warmpu' on line 4 (did you mean 'warmup'?)"));
  EXPECT_THAT(e.what(), HasSubstr("valid keys: lr, steps, warmup"));
  EXPECT_NO_THROW(train.reject_unknown({"lr", "stpes", "warmpu"}));
  // A key that is absent is reported at the line of its mapping.
  EXPECT_EQ(thrown_error([&] { train.get_int("epochs"); }).context().line, 1);
  // One string reads as a list of one.
  const YAML::Node one = ranktune::io::parse_yaml("stop: END\n", "s.yaml");
  EXPECT_EQ(ranktune::io::YamlFields(one, "s.yaml").get_string_list("stop"), (std::vector<std::string>{"END"}));
}
