//! berthctl's image commands: list-images (an instance's images with their size, last use
//! and the tasks holding them) and collect-images (a collection on the instance now, printing
//! what was removed and the bytes freed). Both reach the instance's agent through the
//! scheduler, over the agent's session.

use berth_proto::v1 as proto;
use indicatif::HumanBytes;
use serde::Serialize;

use super::commands::Context;
use super::error::CliError;
use super::json::time;
use super::table::Table;

/// An image as berthctl shows it (`-o json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageJson {
    name: String,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    /// The tasks that hold it now; the collector never removes it while any does.
    task_ids: Vec<String>,
}

/// What a collection did with one image (`-o json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OutcomeJson {
    name: String,
    size: u64,
    reason: String,
}

fn outcome_json(o: &proto::ImageOutcome) -> OutcomeJson {
    OutcomeJson {
        name: o.name.clone(),
        size: o.size,
        reason: o.reason.clone(),
    }
}

impl Context<'_> {
    pub(super) async fn list_images(&mut self, instance: String) -> Result<(), CliError> {
        let response = self
            .call(self.client.clone().list_images(proto::ListImagesRequest {
                cluster: self.cluster.clone(),
                container_instance: instance,
            }))
            .await?;
        let images: Vec<ImageJson> = response
            .images
            .iter()
            .map(|i| ImageJson {
                name: i.name.clone(),
                digest: i.digest.clone(),
                size: i.size,
                last_used_at: time(i.last_used_at.as_ref()),
                task_ids: i.task_ids.clone(),
            })
            .collect();
        let mut table = Table::new(&["IMAGE", "SIZE", "LAST USED", "IN USE BY"]);
        for i in &images {
            table.row(vec![
                i.name.clone(),
                HumanBytes(i.size).to_string(),
                i.last_used_at.clone().unwrap_or_else(|| "never".into()),
                i.task_ids.join(", "),
            ]);
        }
        let text = table.render(super::table::terminal_width());
        self.emit(&serde_json::json!({ "images": images }), || text)
    }

    pub(super) async fn collect_images(&mut self, instance: String) -> Result<(), CliError> {
        let response = self
            .call(
                self.client
                    .clone()
                    .collect_images(proto::CollectImagesRequest {
                        cluster: self.cluster.clone(),
                        container_instance: instance,
                    }),
            )
            .await?;
        let removed: Vec<OutcomeJson> = response.removed.iter().map(outcome_json).collect();
        let kept: Vec<OutcomeJson> = response.kept.iter().map(outcome_json).collect();
        let text = collection_text(&response);
        self.emit(
            &serde_json::json!({
                "removed": removed,
                "kept": kept,
                "bytesFreed": response.bytes_freed,
            }),
            || text,
        )
    }
}

/// The table output of collect-images: each removal with its size and reason, the images
/// chosen but kept, and the total.
fn collection_text(response: &proto::CollectImagesResponse) -> String {
    let mut text = String::new();
    if !response.removed.is_empty() {
        let mut table = Table::new(&["REMOVED", "SIZE", "REASON"]);
        for r in &response.removed {
            table.row(vec![
                r.name.clone(),
                HumanBytes(r.size).to_string(),
                r.reason.clone(),
            ]);
        }
        text.push_str(&table.render(super::table::terminal_width()));
    }
    if !response.kept.is_empty() {
        let mut table = Table::new(&["KEPT", "SIZE", "WHY"]);
        for k in &response.kept {
            table.row(vec![
                k.name.clone(),
                HumanBytes(k.size).to_string(),
                k.reason.clone(),
            ]);
        }
        text.push_str(&table.render(super::table::terminal_width()));
    }
    text.push_str(&format!(
        "removed {} image{}, freed {} ({} bytes)\n",
        response.removed.len(),
        if response.removed.len() == 1 { "" } else { "s" },
        HumanBytes(response.bytes_freed),
        response.bytes_freed
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_says_what_went_what_stayed_and_the_bytes_freed() {
        let response = proto::CollectImagesResponse {
            removed: vec![proto::ImageOutcome {
                name: "r/app:1".into(),
                size: 2 * 1024 * 1024,
                reason: "unused for 2h".into(),
            }],
            kept: vec![proto::ImageOutcome {
                name: "r/app:2".into(),
                size: 10,
                reason: "a task needs it".into(),
            }],
            bytes_freed: 2 * 1024 * 1024,
        };
        let text = collection_text(&response);
        assert!(text.contains("r/app:1"), "{text}");
        assert!(text.contains("unused for 2h"), "{text}");
        assert!(text.contains("a task needs it"), "{text}");
        assert!(
            text.ends_with("removed 1 image, freed 2.00 MiB (2097152 bytes)\n"),
            "{text}"
        );
        let none = collection_text(&proto::CollectImagesResponse::default());
        assert_eq!(none, "removed 0 images, freed 0 B (0 bytes)\n");
    }
}
