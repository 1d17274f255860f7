//! `hyco::connstr`: parse arbitrary connection strings; whatever parses must write back
//! (`to_string_with_secrets`) to a string that parses to the same value.
//!
//! `ConnectionString` derives `PartialEq` (the key and token compare as `Secret`s), but
//! `use_development_emulator` is written from the endpoint's security, not as given
//! (a plain `ws` endpoint always gets `UseDevelopmentEmulator=true`, a secure one never),
//! so that field is compared against `!endpoint.secure`, and the rest field by field.
#![no_main]

use hyco::connstr::{self, ConnectionString, Credential};
use hyco::secret::Secret;
use libfuzzer_sys::fuzz_target;

fn same_except_flag(a: &ConnectionString, b: &ConnectionString) -> bool {
    a.endpoint == b.endpoint && a.credential == b.credential && a.entity_path == b.entity_path
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = connstr::parse_endpoint(text, false);
    let _ = connstr::parse_endpoint(text, true);
    let cs = match connstr::parse(text) {
        Ok(cs) => cs,
        Err(e) => {
            let _ = e.to_string();
            let _ = std::error::Error::source(&e);
            return;
        }
    };
    // Display is the written form with the key or token replaced by `***`. (Checking
    // that the key text is absent would be wrong: the key may occur inside the key name.)
    let mut masked = cs.clone();
    match &mut masked.credential {
        Credential::Key { key, .. } | Credential::Token(key) => *key = Secret::new("***"),
        Credential::None => {}
    }
    assert_eq!(cs.to_string(), masked.to_string_with_secrets());
    assert_eq!(format!("{cs:?}"), format!("{masked:?}"), "Debug depends on the secret");
    let _ = (cs.endpoint.ws_base(), cs.endpoint.sb_uri(), cs.endpoint.authority());

    let written = cs.to_string_with_secrets();
    let again = match connstr::parse(&written) {
        Ok(again) => again,
        Err(e) => panic!("{text:?} parsed, but its written form {written:?} does not: {e}"),
    };
    assert!(same_except_flag(&cs, &again), "{text:?} -> {written:?}: {cs:?} != {again:?}");
    assert_eq!(again.use_development_emulator, !again.endpoint.secure, "{written:?}");
    // The written form is a fixed point.
    assert_eq!(again.to_string_with_secrets(), written);
    assert_eq!(connstr::parse(&written).unwrap(), again);
});
