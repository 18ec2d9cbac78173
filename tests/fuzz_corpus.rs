//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the
//! same properties as the fuzz targets (`multiarch_operator::fuzzing`), on
//! stable, so that a regression on any input the fuzzer ever kept fails CI
//! without nightly or libFuzzer. The fuzzing itself: see fuzz/README.md.

use std::path::Path;

use multiarch_operator::fuzzing::TARGETS;

#[test]
fn every_corpus_file_keeps_its_properties() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for (target, property) in TARGETS {
        let folder = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(
            !files.is_empty(),
            "{}: the corpus of {target} is empty",
            folder.display()
        );
        for path in files {
            let data = std::fs::read(&path).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| property(&data));
            if outcome.is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "properties broken by: {failures:#?}");
}

#[test]
fn every_target_has_a_corpus_folder_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, _) in TARGETS {
        assert!(root.join("corpus").join(target).is_dir(), "{target}");
        assert!(
            root.join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "{target}"
        );
    }
}
