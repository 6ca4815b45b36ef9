//! Fuzz target `origin`: the properties of `tests/fuzz_checks::origin`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() <= checks::MAX_INPUT {
        let _ = checks::origin(data);
    }
});
