//! Feeds arbitrary text to the config parser; any panic is a bug. Errors must
//! name the file and carry a message (that is what operators see).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = vipd::config::parse(text, "fuzz.toml") {
        let shown = e.to_string();
        assert!(shown.contains("fuzz.toml"), "error does not name the file: {shown}");
    }
});
