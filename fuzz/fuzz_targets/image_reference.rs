#![no_main]

// The property lives in multiarch_operator::fuzzing::image_reference, which
// tests/fuzz_corpus.rs also replays over fuzz/corpus/image_reference/ on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiarch_operator::fuzzing::image_reference(data);
});
