#![no_main]

// The property lives in multiarch_operator::fuzzing::termination_message, which
// tests/fuzz_corpus.rs also replays over fuzz/corpus/termination_message/ on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiarch_operator::fuzzing::termination_message(data);
});
