# tests/cpp/<layer>/ mirrors src/<layer>/. Its tests may include that layer's private headers
# ("tokenizer/pattern.h", to check building blocks directly) and no other layer's: each source gets
# an include directory holding only a link to its own layer's src/ folder. Used by the test suite
# (tests/) and by the sanitized parser tests (fuzz/).
function(ranktune_test_include_views test_root)  # ARGN: the test sources
  foreach(source ${ARGN})
    file(RELATIVE_PATH relative ${test_root} ${source})
    if(relative MATCHES "^([^/]+)/" AND CMAKE_MATCH_1 IN_LIST RANKTUNE_LAYERS)
      set(view ${CMAKE_CURRENT_BINARY_DIR}/private/${CMAKE_MATCH_1})
      if(NOT EXISTS ${view}/${CMAKE_MATCH_1})
        file(MAKE_DIRECTORY ${view})
        file(CREATE_LINK ${PROJECT_SOURCE_DIR}/src/${CMAKE_MATCH_1} ${view}/${CMAKE_MATCH_1} SYMBOLIC)
      endif()
      set_property(SOURCE ${source} APPEND PROPERTY INCLUDE_DIRECTORIES ${view})
    endif()
  endforeach()
endfunction()
