//! With the `train` feature, keeps libtorch_cuda linked into the binary: the
//! linker's default `--as-needed` drops it (no symbol is used directly), and
//! then `tch::Cuda::is_available()` is false even on a GPU machine.
fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_TRAIN");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_some()
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bins=-ltorch_cuda");
        println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
    }
}
