#pragma once
// Floating-point dtypes by name: the one parser for the spellings people write (recipes'
// model.dtype, config.json's torch_dtype, Python's dtype= arguments) and the one name we print.

#include <c10/core/ScalarType.h>

#include <string>
#include <string_view>

namespace ranktune {

// float32 (also fp32, float), float64 (fp64, double), bfloat16 (bf16), float16 (fp16, half); a
// "torch." prefix is accepted ("torch.bfloat16"). Anything else throws ranktune::Error naming the
// value and the accepted spellings; the caller adds where it came from (Error::with_context).
c10::ScalarType parse_dtype(std::string_view name);

// The name parse_dtype reads back: kFloat -> "float32", kBFloat16 -> "bfloat16", ...; other types by
// c10's name ("Long").
std::string dtype_name(c10::ScalarType dtype);

}  // namespace ranktune
