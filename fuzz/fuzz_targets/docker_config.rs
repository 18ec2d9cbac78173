#![no_main]

// The property lives in multiarch_operator::fuzzing::docker_config, which
// tests/fuzz_corpus.rs also replays over fuzz/corpus/docker_config/ on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiarch_operator::fuzzing::docker_config(data);
});
