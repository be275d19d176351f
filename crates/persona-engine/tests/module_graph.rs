//! The crate's modules import one way only: none imports a module that imports it back.

#[test]
fn modules_import_one_way() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    persona_testkit::module_graph::assert_no_module_cycle(&src);
}
