//! The record parser (JSON and TOML) on arbitrary text: never panics; a record it accepts
//! validates, and its canonical JSON parses back to the same record.
#![no_main]

use hubcat_protocol::Record;
use libfuzzer_sys::fuzz_target;

fn accepted(record: Record) {
    record.validate().expect("an accepted record validates");
    let canonical = record.to_canonical_json();
    let again = Record::from_json(canonical.as_bytes()).expect("canonical JSON parses");
    assert_eq!(again.to_canonical_json(), canonical);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Record::from_json(data) {
        accepted(r);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = Record::from_toml(text) {
            accepted(r);
        }
    }
});
