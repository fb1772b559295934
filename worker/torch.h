// The one header through which the worker includes LibTorch (and with it,
// glog). Every file under worker/, and the tests and benchmarks that use the
// worker, include this instead of <torch/torch.h>.
//
// Why: a LibTorch built without glog (USE_GLOG=OFF, as PyTorch's PyPI wheels
// are) defines its own LOG, VLOG, CHECK, CHECK_EQ, DCHECK... macros in
// c10/util/logging_is_not_google_glog.h, which collide with glog's. The
// project logs with glog, so here glog's definitions are saved, c10's are
// let in for LibTorch's own headers, and glog's are put back. After this
// header, LOG/CHECK are glog's whatever the LibTorch. Headers of LibTorch
// included after this one by name (ATen/...) do not include Logging.h again
// (it has an include guard), so they cannot bring c10's macros back.
#pragma once

#include <glog/logging.h>

// The macros both define; push_macro/pop_macro (GCC, Clang) keep glog's.
#pragma push_macro("LOG")
#pragma push_macro("VLOG")
#pragma push_macro("LOG_IF")
#pragma push_macro("VLOG_IF")
#pragma push_macro("VLOG_IS_ON")
#pragma push_macro("CHECK")
#pragma push_macro("CHECK_EQ")
#pragma push_macro("CHECK_NE")
#pragma push_macro("CHECK_LE")
#pragma push_macro("CHECK_LT")
#pragma push_macro("CHECK_GE")
#pragma push_macro("CHECK_GT")
#pragma push_macro("CHECK_NOTNULL")
#pragma push_macro("DCHECK")
#pragma push_macro("DCHECK_EQ")
#pragma push_macro("DCHECK_NE")
#pragma push_macro("DCHECK_LE")
#pragma push_macro("DCHECK_LT")
#pragma push_macro("DCHECK_GE")
#pragma push_macro("DCHECK_GT")
#pragma push_macro("DLOG")
#undef LOG
#undef VLOG
#undef LOG_IF
#undef VLOG_IF
#undef VLOG_IS_ON
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LE
#undef CHECK_LT
#undef CHECK_GE
#undef CHECK_GT
#undef CHECK_NOTNULL
#undef DCHECK
#undef DCHECK_EQ
#undef DCHECK_NE
#undef DCHECK_LE
#undef DCHECK_LT
#undef DCHECK_GE
#undef DCHECK_GT
#undef DLOG

#include <ATen/Parallel.h>
#include <torch/torch.h>

// c10's, where it defined them (a LibTorch without glog); glog's come back.
#undef LOG
#undef VLOG
#undef LOG_IF
#undef VLOG_IF
#undef VLOG_IS_ON
#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LE
#undef CHECK_LT
#undef CHECK_GE
#undef CHECK_GT
#undef CHECK_NOTNULL
#undef DCHECK
#undef DCHECK_EQ
#undef DCHECK_NE
#undef DCHECK_LE
#undef DCHECK_LT
#undef DCHECK_GE
#undef DCHECK_GT
#undef DLOG
#pragma pop_macro("LOG")
#pragma pop_macro("VLOG")
#pragma pop_macro("LOG_IF")
#pragma pop_macro("VLOG_IF")
#pragma pop_macro("VLOG_IS_ON")
#pragma pop_macro("CHECK")
#pragma pop_macro("CHECK_EQ")
#pragma pop_macro("CHECK_NE")
#pragma pop_macro("CHECK_LE")
#pragma pop_macro("CHECK_LT")
#pragma pop_macro("CHECK_GE")
#pragma pop_macro("CHECK_GT")
#pragma pop_macro("CHECK_NOTNULL")
#pragma pop_macro("DCHECK")
#pragma pop_macro("DCHECK_EQ")
#pragma pop_macro("DCHECK_NE")
#pragma pop_macro("DCHECK_LE")
#pragma pop_macro("DCHECK_LT")
#pragma pop_macro("DCHECK_GE")
#pragma pop_macro("DCHECK_GT")
#pragma pop_macro("DLOG")
