#![no_main]

// The property lives in multiarch_operator::fuzzing::platform, which
// tests/fuzz_corpus.rs also replays over fuzz/corpus/platform/ on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiarch_operator::fuzzing::platform(data);
});
