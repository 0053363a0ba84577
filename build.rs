// Compiles the C emitters of `fdredirect.testing` (csrc/) into the native module, and says
// whether this build has the POSIX fd core (`cfg(fdr_posix)`): on unix, unless the
// `unsupported` feature asks for the module of an unsupported platform (src/unsupported.rs).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fdr_posix)");
    let unix = std::env::var("CARGO_CFG_UNIX").is_ok();
    let unsupported = std::env::var("CARGO_FEATURE_UNSUPPORTED").is_ok();
    if !unix || unsupported {
        return;
    }
    println!("cargo:rustc-cfg=fdr_posix");
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
