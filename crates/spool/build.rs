//! Builds the small C++ shim that hands RocksDB a logger writing to
//! Petrel's log instead of a file on the spool's disk (see cpp/logger.cc).

fn main() {
    println!("cargo:rerun-if-changed=cpp/logger.cc");
    let include = std::env::var("ROCKSDB_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(include)
        .file("cpp/logger.cc")
        .warnings(false)
        .compile("petrel_rocksdb_logger");
}
