// RocksDB's diagnostic logger, routed to Petrel's log through a callback.
//
// By default RocksDB writes a LOG file next to its data. On a full disk a
// failed write to that file leaves its writer in an error state, and the
// next log line aborts the process inside librocksdb 7.8 (an assertion in
// WritableFileWriter). Forwarding the lines to Petrel keeps the spool's disk
// out of the diagnostics path entirely.

#include <cstdarg>
#include <cstdio>
#include <memory>

#include <rocksdb/env.h>
#include <rocksdb/options.h>

extern "C" void petrel_rocksdb_log(int level, const char* message, size_t len);

namespace {

class ForwardingLogger : public rocksdb::Logger {
 public:
  explicit ForwardingLogger(rocksdb::InfoLogLevel level) : rocksdb::Logger(level) {}

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }

  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    // HEADER lines are the option dump written at every open: noise here.
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) {
      return;
    }
    char buf[1024];
    int n = vsnprintf(buf, sizeof buf, format, ap);
    if (n < 0) {
      return;
    }
    size_t len = static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1;
    petrel_rocksdb_log(static_cast<int>(level), buf, len);
  }
};

}  // namespace

// The C API's options handle, as librocksdb's c.cc defines it.
struct rocksdb_options_t {
  rocksdb::Options rep;
};

extern "C" void petrel_rocksdb_forward_logs(rocksdb_options_t* options, int level) {
  options->rep.info_log = std::make_shared<ForwardingLogger>(static_cast<rocksdb::InfoLogLevel>(level));
}

// Not in the 7.8 C API: replay the WAL into memory without writing SSTs, so
// reopening a spool on a nearly full disk needs no space.
extern "C" void petrel_rocksdb_avoid_flush_during_recovery(rocksdb_options_t* options) {
  options->rep.avoid_flush_during_recovery = true;
}

// Read back what `petrel_rocksdb_forward_logs` set, so the Rust side can
// check it handed over the right pointer.
extern "C" int petrel_rocksdb_forwards_logs(rocksdb_options_t* options) {
  return dynamic_cast<ForwardingLogger*>(options->rep.info_log.get()) != nullptr;
}
