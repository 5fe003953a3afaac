#include "jsonl.h"

#include "ranktune/core/error.h"
#include "ranktune/core/strings.h"
#include "ranktune/io/file.h"

#include <sstream>

namespace ranktune::data {

void for_each_jsonl_record(const std::string& path, int64_t limit,
                           const std::function<void(const io::ordered_json& record, int64_t line)>& read) {
  std::istringstream in(io::read_file(path));
  std::string line;
  int64_t number = 0, records = 0;
  while (std::getline(in, line)) {
    ++number;
    if (trim(line).empty()) continue;
    if (limit > 0 && records >= limit) break;
    try {
      read(io::parse_json(line, path), number);
      ++records;
    } catch (const Error& e) {
      throw e.with_context(ErrorContext{path, "", number});
    }
  }
  RANKTUNE_CHECK_CTX(records > 0, (ErrorContext{path, "", -1}), "no examples in the file");
}

}  // namespace ranktune::data
