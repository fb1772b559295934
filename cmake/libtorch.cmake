# Finds LibTorch for the worker and sets BERT_WITH_CUDA.
#
# Where from: Torch_DIR if given (-DTorch_DIR=...: a cluster's LibTorch, or
# Debian's CPU-only libtorch-dev 1.13), else the torch wheel in BERT_PYTHON's
# environment (scripts/setup.sh), through torch.utils.cmake_prefix_path.
if(NOT Torch_DIR AND EXISTS "${BERT_PYTHON}")
  execute_process(COMMAND "${BERT_PYTHON}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE bert_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE bert_torch_rc ERROR_QUIET)
  if(bert_torch_rc EQUAL 0 AND EXISTS "${bert_torch_prefix}/Torch/TorchConfig.cmake")
    set(Torch_DIR "${bert_torch_prefix}/Torch" CACHE PATH "LibTorch's CMake folder" FORCE)
  endif()
endif()
find_package(Torch REQUIRED)

# BERT_WITH_CUDA: this LibTorch has CUDA, so the device code (bf16 autocast,
# CUDA tensors in checkpoints, the NCCL communicator) is compiled and linked.
# Decided here, never by probing headers.
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(BERT_WITH_CUDA ON)
else()
  set(BERT_WITH_CUDA OFF)
endif()

# Workaround: PyTorch's wheels put the headers of the protobuf they were built
# with (3.13, from 2020) in torch/include/google/protobuf. That folder is on
# every LibTorch target's include path and comes before /usr/include, so a
# file that includes both LibTorch and our generated protocol.pb.h (Debian's
# protobuf 3.21) would compile against the wrong protobuf headers. LibTorch's
# public headers never include protobuf, so its include folder is mirrored in
# the build tree without google/ and the targets point at the mirror.
set(bert_torch_include "${TORCH_INSTALL_PREFIX}/include")
if(EXISTS "${bert_torch_include}/google/protobuf")
  set(bert_torch_mirror "${CMAKE_BINARY_DIR}/libtorch_include")
  file(MAKE_DIRECTORY "${bert_torch_mirror}")
  file(GLOB bert_torch_entries RELATIVE "${bert_torch_include}" "${bert_torch_include}/*")
  foreach(entry ${bert_torch_entries})
    if(NOT entry STREQUAL "google" AND NOT EXISTS "${bert_torch_mirror}/${entry}")
      file(CREATE_LINK "${bert_torch_include}/${entry}" "${bert_torch_mirror}/${entry}" SYMBOLIC)
    endif()
  endforeach()
  foreach(target torch torch_cpu torch_cuda c10 c10_cuda torch_library)
    if(TARGET ${target})
      foreach(property INTERFACE_INCLUDE_DIRECTORIES INTERFACE_SYSTEM_INCLUDE_DIRECTORIES)
        get_target_property(dirs ${target} ${property})
        if(dirs)
          list(TRANSFORM dirs REPLACE "^${bert_torch_include}$" "${bert_torch_mirror}")
          set_target_properties(${target} PROPERTIES ${property} "${dirs}")
        endif()
      endforeach()
    endif()
  endforeach()
  list(TRANSFORM TORCH_INCLUDE_DIRS REPLACE "^${bert_torch_include}$" "${bert_torch_mirror}")
endif()

# Workaround: the wheel's libtorch.so exports std::filesystem functions of
# its own (GCC 13's, linked in statically), and its remove_all jumps to a
# null pointer when called from our code. Its DT_NEEDED entry comes before
# libstdc++.so's, so the dynamic linker would bind our calls to it. Naming
# libstdc++ first on the link line of every LibTorch user puts libstdc++.so
# first in the search order.
if(TARGET torch)
  set_property(TARGET torch APPEND PROPERTY INTERFACE_LINK_OPTIONS "LINKER:--no-as-needed" "-lstdc++")
endif()

# The C++ standard LibTorch asks for (its torch target's CXX_STANDARD: 17 up
# to 2.11; newer releases may ask for 20): the project follows it upward.
if(TARGET torch)
  get_target_property(bert_torch_cxx_standard torch CXX_STANDARD)
  if(bert_torch_cxx_standard AND bert_torch_cxx_standard GREATER CMAKE_CXX_STANDARD)
    set(CMAKE_CXX_STANDARD ${bert_torch_cxx_standard})
    message(STATUS "LibTorch needs C++${bert_torch_cxx_standard}: building the project with it")
  endif()
endif()

# The libstdc++ ABI: Debian's libraries (glog, protobuf, yaml-cpp, RocksDB)
# use the C++11 ABI, so a LibTorch built with the old one (pre-2.7 PyPI
# wheels, _GLIBCXX_USE_CXX11_ABI=0) cannot link with them. Say so here
# rather than with a thousand undefined std::string symbols.
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
  message(FATAL_ERROR "LibTorch at ${Torch_DIR} is built with _GLIBCXX_USE_CXX11_ABI=0, but the system libraries "
                      "use the C++11 ABI: use a cxx11-ABI LibTorch (PyTorch >= 2.7 wheels, or the "
                      "'cxx11 ABI' LibTorch download) via -DTorch_DIR")
endif()
