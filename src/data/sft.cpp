#include "ranktune/data/sft.h"

#include "jsonl.h"
#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/json.h"

#include <optional>

namespace ranktune::data {
namespace {

const std::vector<std::string>& format_names() {
  static const std::vector<std::string> names = {"messages", "prompt_completion", "text", "alpaca"};
  return names;
}

std::optional<SftFormat> detect(const io::ordered_json& record, const SftOptions& o) {
  if (!record.is_object()) return std::nullopt;
  if (record.contains(o.messages_field)) return SftFormat::messages;
  if (record.contains(o.prompt_field) && record.contains(o.completion_field)) return SftFormat::prompt_completion;
  if (record.contains(o.text_field)) return SftFormat::text;
  if (record.contains(o.instruction_field) && record.contains(o.output_field)) return SftFormat::alpaca;
  return std::nullopt;
}

[[noreturn]] void fail_undetected(const SftOptions& options, const std::string& source) {
  throw Error(c10::str("cannot tell the data format: the record has none of the fields '", options.messages_field,
                       "' (messages), '", options.prompt_field, "' + '", options.completion_field,
                       "' (prompt_completion), '", options.text_field, "' (text), '", options.instruction_field,
                       "' + '", options.output_field, "' (alpaca); set data.format or the data.*_field names"),
              ErrorContext{source, "data.format", -1});
}

// A list of {"role", "content"} objects; roles are TRL's three.
std::vector<Message> read_messages(io::JsonFields& fields, const std::string& key) {
  const io::ordered_json& list = fields.get_list(key);
  std::vector<Message> out;
  for (size_t i = 0; i < list.size(); ++i) {
    io::JsonFields m(list[i], fields.at(key)[i]);
    Message message{m.get_string("role"), m.get_string("content")};
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      m.fail("role", "is '" + message.role + "'; expected system, user or assistant");
    }
    out.push_back(std::move(message));
  }
  if (out.empty()) fields.fail(key, "is an empty list of messages");
  return out;
}

SftRecord read_record(io::JsonFields& fields, SftFormat format, const SftOptions& o) {
  SftRecord r;
  r.format = format;
  switch (format) {
    case SftFormat::messages: {
      r.messages = read_messages(fields, o.messages_field);
      r.completion_start = r.messages.size();
      bool any_assistant = false;
      for (const auto& m : r.messages) any_assistant = any_assistant || m.role == "assistant";
      if (!any_assistant && o.loss.assistant_only_loss) {
        fields.fail(o.messages_field, "has no assistant message (nothing to train on with assistant_only_loss)");
      }
      break;
    }
    case SftFormat::prompt_completion: {
      const bool listed = fields.has(o.prompt_field) && fields.raw(o.prompt_field).is_array();
      if (listed) {  // conversational: both are message lists
        r.messages = read_messages(fields, o.prompt_field);
        r.completion_start = r.messages.size();
        const std::vector<Message> completion = read_messages(fields, o.completion_field);
        r.messages.insert(r.messages.end(), completion.begin(), completion.end());
      } else {
        r.prompt = fields.get_string(o.prompt_field);
        r.completion = fields.get_string(o.completion_field);
        if (r.completion.empty()) fields.fail(o.completion_field, "is empty (nothing to train on)");
      }
      break;
    }
    case SftFormat::text:
      r.text = fields.get_string(o.text_field);
      if (r.text.empty()) fields.fail(o.text_field, "is empty");
      break;
    case SftFormat::alpaca: {
      // Alpaca's instruction and optional input form the user turn; the output is the assistant's.
      std::string user = fields.get_string(o.instruction_field);
      const std::optional<std::string> input = fields.get_optional_string(o.input_field);
      if (input && !trim(*input).empty()) user += "\n\n" + *input;
      const std::string output = fields.get_string(o.output_field);
      if (output.empty()) fields.fail(o.output_field, "is empty (nothing to train on)");
      r.messages = {{"user", user}, {"assistant", output}};
      r.completion_start = r.messages.size();
      break;
    }
  }
  return r;
}

}  // namespace

std::string to_string(SftFormat format) { return format_names()[static_cast<size_t>(format)]; }

SftFormat detect_format(const std::string& json_line, const SftOptions& options, const std::string& source) {
  const auto found = detect(io::parse_json(json_line, source), options);
  if (!found) fail_undetected(options, source);
  return *found;
}

std::vector<SftRecord> load_sft_jsonl(const std::string& path, const SftOptions& options) {
  std::vector<SftRecord> out;
  std::optional<SftFormat> format = options.format;
  for_each_jsonl_record(path, options.limit, [&](const io::ordered_json& record, int64_t line) {
    if (!format) format = detect(record, options);
    if (!format) fail_undetected(options, path);
    io::JsonFields fields(record, path);
    SftRecord r = read_record(fields, *format, options);
    r.line = line;
    out.push_back(std::move(r));
  });
  return out;
}

// ---- rendering -------------------------------------------------------------------------------

std::vector<Segment> render_conversation(const std::vector<Message>& messages, const RenderChat& chat,
                                         bool assistant_only, size_t completion_start) {
  std::vector<Segment> out;
  std::string done;  // the text rendered so far: the sum of the segments
  // Appends `text`'s part beyond `done`; `text` must extend it.
  const auto extend = [&](const std::string& text, bool trained, size_t upto) {
    if (text.compare(0, done.size(), done) != 0) {
      throw Error(c10::str("the chat template renders the first ", upto,
                           " messages differently from the start of the longer conversation, so the assistant "
                           "turns cannot be told apart; use data.assistant_only_loss=false or another template"));
    }
    if (text.size() > done.size()) out.push_back({text.substr(done.size()), trained || !assistant_only});
    done = text;
  };
  std::vector<Message> prefix;
  for (size_t i = 0; i < messages.size(); ++i) {
    const bool assistant = messages[i].role == "assistant";
    if (assistant) extend(chat(prefix, true), false, i);  // the assistant header belongs to the prompt
    prefix.push_back(messages[i]);
    const bool trained = completion_start < messages.size() ? i >= completion_start : assistant;
    extend(chat(prefix, false), trained, prefix.size());
  }
  return out;
}

std::vector<Segment> render_record(const SftRecord& record, const RenderChat& chat, const LossOptions& loss) {
  switch (record.format) {
    case SftFormat::text: return {{record.text, true}};
    case SftFormat::prompt_completion:
      if (record.conversational()) {
        return render_conversation(record.messages, chat, loss.completion_only_loss, record.completion_start);
      }
      return {{record.prompt, !loss.completion_only_loss}, {record.completion, true}};
    case SftFormat::messages:
    case SftFormat::alpaca: return render_conversation(record.messages, chat, loss.assistant_only_loss, record.messages.size());
  }
  return {};
}

}  // namespace ranktune::data
