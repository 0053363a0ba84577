// Compiles the C emitters of `fdredirect.testing` (csrc/) into the native module.
fn main() {
    let sources = ["csrc/emitters.c"];
    for source in sources {
        println!("cargo:rerun-if-changed={source}");
    }
    cc::Build::new()
        .files(sources)
        .warnings(true)
        .extra_warnings(true)
        .compile("fdredirect_emitters");
}
