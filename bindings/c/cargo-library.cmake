# Builds the Rust library with cargo and imports it as the target `servicepoint`, for the
# CMake projects inside this repository (tests/c, examples). Set REPO_ROOT and CARGO_PROFILE
# (debug or release) before including; defines SERVICEPOINT_LIB_DIR and SERVICEPOINT_LIB
# (under CARGO_TARGET_DIR: $CARGO_TARGET_DIR at configure time, else target/).
# (Projects outside the repository use the installed package: find_package(servicepoint).)
set(CARGO_FLAGS --locked)
if(CARGO_PROFILE STREQUAL "release")
  list(APPEND CARGO_FLAGS --release)
endif()
# cargo's target directory: $CARGO_TARGET_DIR if set when configuring (relative to the
# repository, where cargo runs), else target/ in the repository. Passed to cargo explicitly, so
# the build finds the library where configure said it would be, whatever the build's environment.
if(NOT "$ENV{CARGO_TARGET_DIR}" STREQUAL "")
  get_filename_component(_sp_target_dir "$ENV{CARGO_TARGET_DIR}" ABSOLUTE BASE_DIR "${REPO_ROOT}")
else()
  set(_sp_target_dir "${REPO_ROOT}/target")
endif()
set(CARGO_TARGET_DIR "${_sp_target_dir}" CACHE PATH "cargo's target directory")
list(APPEND CARGO_FLAGS --target-dir "${CARGO_TARGET_DIR}")
set(SERVICEPOINT_LIB_DIR "${CARGO_TARGET_DIR}/${CARGO_PROFILE}")
set(SERVICEPOINT_LIB
    "${SERVICEPOINT_LIB_DIR}/${CMAKE_SHARED_LIBRARY_PREFIX}servicepoint${CMAKE_SHARED_LIBRARY_SUFFIX}")

# cargo decides what is stale, so this always runs and is a no-op when nothing changed.
# Never list include/servicepoint.h as a byproduct: "clean" would delete the committed header.
# build.rs gives the library the SONAME libservicepoint.so.<ABI>: a program linked with it
# looks for that file name at run time, which cargo does not write. soname-link.sh then links
# it to libservicepoint.so in the same directory (found through the build RUNPATH CMake gives
# every program linking `servicepoint`, or LD_LIBRARY_PATH=${SERVICEPOINT_LIB_DIR}).
find_program(CARGO cargo HINTS "$ENV{CARGO_HOME}/bin" "$ENV{HOME}/.cargo/bin")
if(NOT CARGO)
  message(FATAL_ERROR "cargo not found: install Rust (https://rustup.rs) or put cargo on PATH")
endif()
add_custom_target(servicepoint_cargo ALL
  COMMAND "${CARGO}" build ${CARGO_FLAGS}
  COMMAND sh "${CMAKE_CURRENT_LIST_DIR}/soname-link.sh" "${SERVICEPOINT_LIB_DIR}"
  WORKING_DIRECTORY "${REPO_ROOT}"
  BYPRODUCTS "${SERVICEPOINT_LIB}"
  COMMENT "cargo build ${CARGO_FLAGS}"
  USES_TERMINAL)

add_library(servicepoint SHARED IMPORTED GLOBAL)
set_target_properties(servicepoint PROPERTIES
  IMPORTED_LOCATION "${SERVICEPOINT_LIB}"   # linked by path; NEEDED is the SONAME
  INTERFACE_INCLUDE_DIRECTORIES "${REPO_ROOT}/include")
add_dependencies(servicepoint servicepoint_cargo)
