# The coordinator <-> worker protocol library (common/protocol.{proto,h,cc}).
# Included by coordinator/CMakeLists.txt (and by anyone else who needs it);
# defines bert_protocol once. Needs no LibTorch, so the coordinator, the CLI
# and the worker can all link it.
if(TARGET bert_protocol)
  return()
endif()
find_package(Protobuf REQUIRED)
find_package(cppzmq CONFIG REQUIRED)

# protoc writes common/protocol.pb.{h,cc} under build/proto, so the generated
# header is included as "common/protocol.pb.h", like the sources. A plain
# custom command rather than CMake 3.25's protobuf_generate(): that function
# names its outputs relative to the *calling* directory (coordinator/), which
# disagrees with where protoc writes for a .proto in another folder.
set(BERT_PROTO_OUT_DIR ${CMAKE_BINARY_DIR}/proto)
set(BERT_PROTO_SOURCES ${BERT_PROTO_OUT_DIR}/common/protocol.pb.cc ${BERT_PROTO_OUT_DIR}/common/protocol.pb.h)
file(MAKE_DIRECTORY ${BERT_PROTO_OUT_DIR}/common)
add_custom_command(
  OUTPUT ${BERT_PROTO_SOURCES}
  COMMAND protobuf::protoc --cpp_out=${BERT_PROTO_OUT_DIR} -I ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/common/protocol.proto
  DEPENDS ${CMAKE_SOURCE_DIR}/common/protocol.proto protobuf::protoc
  COMMENT "protoc common/protocol.proto"
  VERBATIM)

# curve_keys.cc: the run's CURVE key files (common/curve_keys.h).
add_library(bert_protocol STATIC ${CMAKE_SOURCE_DIR}/common/protocol.cc ${CMAKE_SOURCE_DIR}/common/curve_keys.cc
                          ${BERT_PROTO_SOURCES})
target_include_directories(bert_protocol PUBLIC ${CMAKE_SOURCE_DIR} ${BERT_PROTO_OUT_DIR})
target_link_libraries(bert_protocol PUBLIC protobuf::libprotobuf cppzmq glog::glog Threads::Threads)
