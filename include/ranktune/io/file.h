#pragma once
// Whole-file reads with errors that name the file, and atomic writes: data goes to a temporary
// file in the same directory, is flushed, then renamed over the target, so a crash leaves either
// the old file or the new one, never half of either.

#include <string>
#include <string_view>

namespace ranktune::io {

// Reads a whole file. Throws ranktune::Error naming the path if it is missing or unreadable.
std::string read_file(const std::string& path);

// Writes `bytes` to `path` atomically (temporary file + fsync + rename).
void write_file_atomic(const std::string& path, std::string_view bytes);

// A temporary name next to `path`, unique to this process and call: `path.tmp.<pid>.<n>`.
std::string temporary_path_for(const std::string& path);

}  // namespace ranktune::io
