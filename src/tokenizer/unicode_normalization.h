#pragma once
// Canonical Unicode normalization forms (UAX #15) for the NFC and NFD normalizers, from the
// tables in unicode_data.cpp (no ICU). Input must be valid UTF-8.

#include <string>
#include <string_view>

namespace ranktune::tokenizer {

std::string to_nfc(std::string_view text);
std::string to_nfd(std::string_view text);

}  // namespace ranktune::tokenizer
