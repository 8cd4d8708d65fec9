// Linked as a non-PIE executable: no start-up relocation pass over the
// binary's own image (some 20,000 relative relocations in a function binary),
// and the relocation tables drop out of the file (about 0.5 MB). The cost is
// no address randomisation for the executable's own image; shared libraries,
// stack and heap are still randomised. Binaries only: tests link as before.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
