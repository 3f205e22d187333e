//! README.md's configuration reference must match the agent's key table.

#[test]
fn readme_lists_every_configuration_key() {
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(readme_path).expect("README.md is readable");
    for k in berth_agent::config::reference_table() {
        let row = format!(
            "| `{}` | `{}` | `{}` | `{}` |",
            k.key, k.env, k.flag, k.default
        );
        assert!(
            readme.contains(&row),
            "README.md lacks or misstates {row}; regenerate it with `cargo run -p berth-agent --example config-reference`"
        );
    }
}
