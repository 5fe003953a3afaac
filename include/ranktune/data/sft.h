#pragma once
// Supervised fine-tuning data in the shapes TRL's SFTTrainer accepts, beside the GSM8K records of
// examples.h: conversations (`messages`), prompt–completion pairs (plain strings or message lists),
// plain `text`, and Alpaca records (instruction/input/output). A record becomes text segments, each
// marked trained or not; tokenize_segments (batching.h) turns them into ids and labels.
//
//   data::SftOptions o;                                  // no format: detected from the first record
//   auto records = data::load_sft_jsonl("chats.jsonl", o);
//   data::RenderChat chat = ...;                         // the template's chat roles, or a model's template
//   auto segments = data::render_record(records[0], chat, o.loss);
//
// Messages are rendered by a RenderChat function (messages, add_generation_prompt) -> text. The
// assistant spans are found as TRL finds them: render each prefix of the conversation and take the
// differences, so any template that renders prefixes as prefixes works unchanged.

#include "ranktune/tokenizer/chat_template.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ranktune::data {

// One turn: role system | user | assistant, and its text (the tokenizer's chat message).
using Message = tokenizer::ChatMessage;

// (messages, add_generation_prompt) -> the conversation as text; with add_generation_prompt the
// text ends with the header of the assistant turn that follows.
using RenderChat = std::function<std::string(const std::vector<Message>&, bool add_generation_prompt)>;

enum class SftFormat { messages, prompt_completion, text, alpaca };

// "messages", "prompt_completion", "text", "alpaca".
std::string to_string(SftFormat format);

// One record of a file. messages: `messages` is the conversation. prompt_completion: either
// `prompt`/`completion` strings, or the conversation with the completion's messages from
// `completion_start` on. text: `text`. Alpaca records are read as a user/assistant conversation.
struct SftRecord {
  SftFormat format = SftFormat::text;
  std::string text, prompt, completion;
  std::vector<Message> messages;
  size_t completion_start = 0;  // first message of the completion (conversational prompt_completion)
  bool conversational() const { return !messages.empty(); }
  int64_t line = 0;  // 1-based line in the source file
};

// Which tokens carry labels (TRL's SFTConfig names).
struct LossOptions {
  bool assistant_only_loss = true;   // messages: only assistant turns; false: every token
  bool completion_only_loss = true;  // prompt_completion: only the completion; false: every token
};

struct SftOptions {
  std::optional<SftFormat> format;  // empty: detected from the first record (data.format auto)
  std::string messages_field = "messages";
  std::string prompt_field = "prompt", completion_field = "completion";
  std::string text_field = "text";
  std::string instruction_field = "instruction", input_field = "input", output_field = "output";
  LossOptions loss;
  int64_t limit = 0;  // keep at most this many records (from the start of the file); 0 = all
};

// The format of one JSON record, from its fields: messages, then prompt + completion, then text,
// then instruction + output. Throws (naming the fields looked for) when none fits.
SftFormat detect_format(const std::string& json_line, const SftOptions& options, const std::string& source);

// Reads a JSONL file of one format (detected from the first record when options.format is empty).
// A line that is not JSON, lacks a field, has a field of the wrong type, a message with another
// role or no text to train on is an error naming the file, the line and the field. Blank lines are
// skipped.
std::vector<SftRecord> load_sft_jsonl(const std::string& path, const SftOptions& options = {});

// A piece of rendered text and whether its tokens carry labels.
struct Segment {
  std::string text;
  bool trained = false;
};

// The segments of a conversation: system/user turns and assistant headers untrained, each assistant
// turn's text (up to and including its end-of-turn marker) trained when `assistant_only` (else
// everything is trained). Messages from `completion_start` on are trained as one completion when
// `completion_start` < messages.size(). Throws when `chat` renders a prefix of the conversation as
// something that is not a prefix of the whole (the spans could not be found).
std::vector<Segment> render_conversation(const std::vector<Message>& messages, const RenderChat& chat,
                                         bool assistant_only, size_t completion_start);

// The segments of any record. Non-conversational prompt_completion and text are not rendered: the
// prompt and completion are concatenated as they are (as TRL does).
std::vector<Segment> render_record(const SftRecord& record, const RenderChat& chat, const LossOptions& loss);

}  // namespace ranktune::data
