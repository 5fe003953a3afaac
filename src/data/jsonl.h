#pragma once
// The line loop both JSONL readers share (examples.h's GSM8K records, sft.h's SFT records).

#include "ranktune/io/json.h"

#include <cstdint>
#include <functional>
#include <string>

namespace ranktune::data {

// Calls `read(record, line_number)` for each non-blank line of `path`, parsed as JSON, until
// `limit` records were read (0: all). An error thrown while reading a line gets the file and the
// line; a file without records is an error.
void for_each_jsonl_record(const std::string& path, int64_t limit,
                           const std::function<void(const io::ordered_json& record, int64_t line)>& read);

}  // namespace ranktune::data
