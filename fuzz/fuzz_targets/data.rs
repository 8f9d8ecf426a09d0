//! Fuzz the DATA state machine: feeding the input in two pieces, split
//! anywhere, must give the same verdict and message as feeding it whole.
#![no_main]
use petrel_smtp_proto::{DataReceiver, DataStatus};

libfuzzer_sys::fuzz_target!(|input: (&[u8], u16)| {
    let (bytes, split) = input;
    let split = usize::from(split) % (bytes.len() + 1);
    let mut whole = DataReceiver::new(1 << 20);
    let whole_status = whole.feed(bytes);
    let mut parts = DataReceiver::new(1 << 20);
    let parts_status = match parts.feed(&bytes[..split]) {
        DataStatus::Done(n) => DataStatus::Done(n),
        DataStatus::NeedMore => match parts.feed(&bytes[split..]) {
            DataStatus::Done(n) => DataStatus::Done(n + split),
            other => other,
        },
    };
    assert_eq!(whole_status, parts_status);
    assert_eq!(whole.finish(), parts.finish());
});
