#![no_main]

// The property lives in multiarch_operator::fuzzing::multiarchimage_yaml, which
// tests/fuzz_corpus.rs also replays over fuzz/corpus/multiarchimage_yaml/ on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiarch_operator::fuzzing::multiarchimage_yaml(data);
});
