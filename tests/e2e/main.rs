//! End-to-end: the daemon in-process, a real RocksDB spool in a temp dir,
//! a real SMTP sink on loopback, mail injected over SMTP.

mod architecture;
mod automation;
mod bounces;
mod console;
mod delivery_engine;
mod dkim;
mod dsn;
mod egress;
mod eight_bit;
mod full_disk;
mod held_queue;
mod http;
mod http_hardening;
mod kumomta_compat;
mod log_hooks;
mod lua_isolation;
mod momentum;
mod openapi;
mod operator;
mod outcomes;
mod policy_errors;
mod recovery;
mod relay;
mod reload;
mod reports;
mod route_agrees;
mod shared_limits;
mod suspensions;
mod warmup;
