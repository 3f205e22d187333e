//! Build script: the long version `--version` prints (version, commit, build date).

include!("../build/version.rs");

fn main() {
    emit_long_version();
}
