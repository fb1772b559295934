# Included by the root CMakeLists.txt when BERT_BUILD_FUZZ=ON, before any
# library is defined, so that every library the fuzz targets link is built
# with coverage instrumentation (-fsanitize=fuzzer-no-link) and ASan+UBSan.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "BERT_BUILD_FUZZ=ON needs clang (libFuzzer), but the C++ compiler is "
                      "${CMAKE_CXX_COMPILER_ID} (${CMAKE_CXX_COMPILER}); configure with "
                      "-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang")
endif()
if(BERT_BUILD_WORKER)
  message(FATAL_ERROR "BERT_BUILD_FUZZ=ON needs -DBERT_BUILD_WORKER=OFF: fuzz targets link only "
                      "torch-free libraries, and LibTorch code should not be compiled with fuzzer flags")
endif()
if(BERT_SANITIZE)
  message(FATAL_ERROR "BERT_BUILD_FUZZ=ON sets its own sanitizers (address,undefined); leave BERT_SANITIZE empty")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer -g)
add_link_options(-fsanitize=address,undefined)
