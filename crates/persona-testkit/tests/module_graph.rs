//! Every crate of the workspace imports its modules one way only: no module names a module
//! that names it back, directly or around a longer ring.

#[test]
fn every_crate_imports_its_modules_one_way() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            persona_testkit::module_graph::assert_no_module_cycle(&src);
            checked += 1;
        }
    }
    assert!(
        checked >= 16,
        "only {checked} crates found under {}",
        crates.display()
    );
}
