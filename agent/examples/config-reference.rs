//! Prints the agent's configuration reference as the Markdown table README.md carries:
//! `cargo run -p berth-agent --example config-reference`.

fn main() {
    println!("| key | environment | flag | default | meaning |");
    println!("| --- | --- | --- | --- | --- |");
    for k in berth_agent::config::reference_table() {
        println!(
            "| `{}` | `{}` | `{}` | `{}` | {} |",
            k.key, k.env, k.flag, k.default, k.meaning
        );
    }
}
