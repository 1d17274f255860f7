//! Control channel messages: `ListenerMessage` (listener to relay) and `RelayMessage`
//! (relay to listener) from arbitrary JSON; whatever parses must serialize and parse
//! back to an equal value, and the serialized form must be a fixed point.
#![no_main]

use hyco::protocol::{ListenerMessage, RelayMessage};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(msg) = serde_json::from_slice::<T>(data) else { return };
    let json = serde_json::to_vec(&msg).expect("serializes");
    let again: T = match serde_json::from_slice(&json) {
        Ok(again) => again,
        Err(e) => panic!("re-serialized {:?} does not parse: {e}", String::from_utf8_lossy(&json)),
    };
    assert_eq!(again, msg);
    assert_eq!(serde_json::to_vec(&again).expect("serializes"), json);
    // The text frame path parses from a str.
    let text = String::from_utf8(json).expect("serde_json writes UTF-8");
    assert_eq!(serde_json::from_str::<T>(&text).ok().as_ref(), Some(&msg));
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<ListenerMessage>(data);
    roundtrip::<RelayMessage>(data);
});
