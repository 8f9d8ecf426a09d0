//! Fuzz the reply parser the SMTP client uses on whatever a server sends.
#![no_main]
libfuzzer_sys::fuzz_target!(|buf: &[u8]| {
    if let Ok(Some((_, used))) = petrel_smtp_proto::parse_reply(buf) {
        assert!(used <= buf.len());
    }
});
