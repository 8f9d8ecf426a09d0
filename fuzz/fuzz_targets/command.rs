//! Fuzz the SMTP command parser: any line is a command or an error.
#![no_main]
libfuzzer_sys::fuzz_target!(|line: &[u8]| {
    let _ = petrel_smtp_proto::parse_command(line);
});
