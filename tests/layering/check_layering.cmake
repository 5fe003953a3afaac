# ctest `layering`: the build enforces the layer graph of CMakeLists.txt (ranktune_layer).
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -P check_layering.cmake
# Each probe in tests/layering is one include compiled with one layer's view of the headers.

function(build_probe probe result_var output_var)
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target layering_${probe}
                  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${result_var} ${result} PARENT_SCOPE)
  set(${output_var} "${out}${err}" PARENT_SCOPE)
endfunction()

# A lower layer's header is found (so the failures below are about the layering, not the setup).
build_probe(peft_sees_io result output)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "peft could not include ranktune/io/file.h:\n${output}")
endif()

# Upward includes (peft -> train; train -> eval, whose evaluator is injected) and another layer's
# private header are not found.
foreach(probe_and_header "peft_includes_train;ranktune/train/trainer.h"
                         "train_includes_eval;ranktune/eval/gsm8k_eval.h"
                         "prompt_includes_tokenizer_private;tokenizer/pattern.h")
  list(GET probe_and_header 0 probe)
  list(GET probe_and_header 1 header)
  build_probe(${probe} result output)
  if(result EQUAL 0)
    message(FATAL_ERROR "layering_${probe} compiled: ${header} is visible where it must not be")
  endif()
  string(FIND "${output}" "${header}: No such file or directory" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "layering_${probe} failed for another reason than ${header} missing:\n${output}")
  endif()
  message(STATUS "layering_${probe}: ${header} not visible, as required")
endforeach()

# Relative includes that leave a layer's folder would go around the include directories.
file(GLOB_RECURSE sources ${SOURCE_DIR}/src/*.h ${SOURCE_DIR}/src/*.cpp)
set(escapes)
foreach(source ${sources})
  file(STRINGS ${source} lines REGEX "^[ \t]*#[ \t]*include[ \t]+\"\\.\\./")
  foreach(line ${lines})
    list(APPEND escapes "${source}: ${line}")
  endforeach()
endforeach()
if(escapes)
  list(JOIN escapes "\n" escapes)
  message(FATAL_ERROR "includes that reach into another folder of src/:\n${escapes}")
endif()
