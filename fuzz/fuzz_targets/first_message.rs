//! Fuzz target `first_message`: the properties of `tests/fuzz_checks::first_message`.
#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() <= checks::MAX_INPUT {
        let _ = checks::first_message(data);
    }
});
