// io/json: typed reads from JSON objects, with errors naming the file and the field's JSON path.

#include "ranktune/core/error.h"
#include "ranktune/io/json.h"
#include "test_util.h"

#include <gmock/gmock.h>

#include <string>
#include <vector>

using ranktune::Error;
using ranktune::io::JsonFields;
using ranktune::io::JsonPath;
using ranktune::io::SortedJsonFields;
using ranktune::testing::thrown_error;
using ::testing::HasSubstr;

namespace {

const char* const kConfig = R"({"r": 8, "alpha": 16.0, "count": 8.0, "name": "q_proj", "targets": ["q", "v"],
  "single": "k", "layers": 3, "fused": true, "nothing": null,
  "rope_scaling": {"type": "linear", "factor": "two"},
  "added_tokens": [{"id": 1}, {"id": -4}], "zeta": 1})";

TEST(JsonFieldsTest, ReadsTypedValuesAndListsTheUnreadFieldsInFileOrder) {
  const auto root = ranktune::io::parse_json(kConfig, "adapter_config.json");
  JsonFields f(root, "adapter_config.json");
  EXPECT_EQ(f.get_int("r"), 8);
  EXPECT_EQ(f.get_int("count"), 8);  // 8.0 is an integer
  EXPECT_DOUBLE_EQ(f.get_number("alpha"), 16.0);
  EXPECT_EQ(f.get_string("name"), "q_proj");
  EXPECT_EQ(f.get_string_list("targets"), (std::vector<std::string>{"q", "v"}));
  EXPECT_EQ(f.get_string_list("single"), (std::vector<std::string>{"k"}));
  EXPECT_EQ(f.get_int_list("layers"), (std::vector<int64_t>{3}));
  EXPECT_TRUE(f.get_bool("fused"));
  EXPECT_TRUE(f.has("nothing"));
  EXPECT_TRUE(f.is_null("nothing"));
  EXPECT_FALSE(f.has_value("nothing"));  // read, but null
  EXPECT_FALSE(f.has_value("absent"));
  EXPECT_EQ(f.unread(), (std::vector<std::string>{"rope_scaling", "added_tokens", "zeta"}));
}

TEST(JsonFieldsTest, OptionalReadsGiveTheDefaultWhenAbsentOrNull) {
  const auto root = ranktune::io::parse_json(kConfig, "c.json");
  JsonFields f(root, "c.json");
  EXPECT_TRUE(f.get_bool("absent", true));
  EXPECT_FALSE(f.get_bool("nothing", false));
  EXPECT_TRUE(f.get_bool("fused", false));
  EXPECT_EQ(f.get_index("absent", -1), -1);
  EXPECT_EQ(f.get_index("r", -1), 8);
  EXPECT_EQ(f.get_optional_string("nothing"), std::nullopt);
  EXPECT_EQ(f.get_optional_string("name"), std::optional<std::string>("q_proj"));
}

TEST(JsonFieldsTest, ErrorsNameTheFileThePathAndTheValue) {
  const auto root = ranktune::io::parse_json(kConfig, "c.json");
  JsonFields f(root, "c.json");
  EXPECT_STREQ(thrown_error([&] { f.get_int("alpha2"); }).what(), "c.json: 'alpha2': missing field");
  EXPECT_STREQ(thrown_error([&] { f.get_string("r"); }).what(), "c.json: 'r': expected a string, got integer 8");
  EXPECT_STREQ(thrown_error([&] { f.get_bool("name"); }).what(), "c.json: 'name': expected true or false, got string \"q_proj\"");
  const auto fraction = ranktune::io::parse_json(R"({"r": 8.5})", "f.json");
  EXPECT_STREQ(thrown_error([&] { JsonFields(fraction, "f.json").get_int("r"); }).what(),
               "f.json: 'r': expected an integer, got number 8.5");
  EXPECT_THAT(thrown_error([&] { f.get_list("name"); }).what(), HasSubstr("'name': expected a list, got string"));

  // Nested objects and list items carry their path.
  JsonFields rope = f.get_object("rope_scaling");
  EXPECT_EQ(rope.get_string("type"), "linear");
  const Error factor = thrown_error([&] { rope.get_number("factor"); });
  EXPECT_EQ(factor.context().file, "c.json");
  EXPECT_EQ(factor.context().key, "rope_scaling.factor");
  const auto& tokens = f.get_list("added_tokens");
  JsonFields second(tokens[1], f.at("added_tokens")[1]);
  EXPECT_STREQ(thrown_error([&] { second.get_index("id", 0); }).what(),
               "c.json: 'added_tokens[1].id': expected a non-negative integer, got integer -4");
  EXPECT_STREQ(thrown_error([&] { f.get_object("zeta"); }).what(), "c.json: 'zeta': expected an object, got integer");
}

TEST(JsonFieldsTest, SortedFieldsReadTheSameAndParseErrorsNameThePosition) {
  const auto root = ranktune::io::parse_json<ranktune::io::json>(kConfig, "tokenizer.json");
  SortedJsonFields f(root, JsonPath("tokenizer.json", "model"));
  EXPECT_EQ(f.get_int("r"), 8);
  EXPECT_STREQ(thrown_error([&] { f.get_string("layers"); }).what(), "tokenizer.json: 'model.layers': expected a string, got integer 3");
  EXPECT_EQ(f.unread().front(), "added_tokens");  // sorted by key, not in file order

  const Error syntax = thrown_error([] { ranktune::io::parse_json("{\"a\": 1,}", "bad.json"); });
  EXPECT_EQ(syntax.context().file, "bad.json");
  EXPECT_THAT(syntax.what(), HasSubstr("bad.json: invalid JSON: parse error at line 1, column 9"));
  EXPECT_STREQ(thrown_error([] { JsonFields(ranktune::io::ordered_json::array(), "list.json"); }).what(),
               "list.json: expected an object, got list");
}

}  // namespace
