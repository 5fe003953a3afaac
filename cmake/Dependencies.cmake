# Every dependency comes from a Debian 12 package (see scripts/setup.sh).
find_package(Torch REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
# The hub download (src/io/hub_download.cpp): HTTP and the files' digests.
find_package(CURL REQUIRED)
find_package(OpenSSL REQUIRED)
