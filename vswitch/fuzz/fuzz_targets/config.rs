//! The TOML configuration through `Config::parse` (what vswitchd, --check
//! and reload run): a validated configuration or an error that names its
//! line; never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::parse(text, "fuzz.toml") {
        let lines = text.lines().count().max(1);
        assert!(e.line >= 1 && e.line <= lines + 1, "an error without its line ({} of {lines}): {e}", e.line);
        assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
        assert!(e.to_string().starts_with(&format!("fuzz.toml:{}: {}: ", e.line, e.field)), "{e}");
    }
});
