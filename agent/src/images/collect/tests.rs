//! The collector's decision table: age, use, the newest per repository, the cap, and disk
//! pressure.

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn policy() -> Policy {
    Policy {
        minimum_age: HOUR,
        keep_newest: 1,
        max_removals: 10,
        high_percent: 85,
        low_percent: 80,
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
}

/// An image last used `hours_ago`.
fn image(name: &str, hours_ago: u64, size: u64) -> Candidate {
    Candidate {
        name: name.to_owned(),
        size,
        last_used: now() - HOUR * hours_ago as u32,
        in_use: false,
    }
}

fn names(removals: &[Removal]) -> Vec<&str> {
    removals.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn repositories_are_names_without_tag_or_digest() {
    assert_eq!(repository("127.0.0.1:5000/app:1"), "127.0.0.1:5000/app");
    assert_eq!(repository("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
    assert_eq!(repository("r.example/app@sha256:abc"), "r.example/app");
    assert_eq!(repository("r.example/app:1@sha256:abc"), "r.example/app");
    assert_eq!(repository("busybox:latest"), "busybox");
}

#[test]
fn unused_images_past_the_minimum_age_go_oldest_first_but_the_newest_of_each_repository() {
    let images = [
        image("r/app:1", 30, 1),
        image("r/app:2", 20, 1),
        image("r/app:3", 10, 1), // the newest of r/app: kept
        image("r/web:1", 5, 1),  // the only one of r/web: kept
        image("r/db:1", 0, 1),   // younger than an hour: kept
    ];
    let out = decide(&images, policy(), None, now());
    assert_eq!(names(&out), ["r/app:1", "r/app:2"]);
    assert_eq!(out[0].reason, Reason::Unused { for_: HOUR * 30 });
    assert_eq!(out[0].reason.label(), "unused");
}

#[test]
fn an_image_a_task_needs_never_goes_but_counts_among_the_newest() {
    let mut used = image("r/app:old", 50, 1);
    used.in_use = true;
    let images = [used, image("r/app:2", 20, 1), image("r/app:1", 30, 1)];
    let mut p = policy();
    p.keep_newest = 2;
    // Newest two by last use: r/app:2 and r/app:1; r/app:old is older but in use.
    assert!(decide(&images, p, None, now()).is_empty());
    p.keep_newest = 0;
    assert_eq!(
        names(&decide(&images, p, None, now())),
        ["r/app:1", "r/app:2"]
    );
    // Even under pressure.
    let full = Disk {
        used: 99,
        total: 100,
    };
    assert!(!names(&decide(&images, p, Some(full), now())).contains(&"r/app:old"));
}

#[test]
fn removals_are_capped_per_cycle() {
    let images: Vec<Candidate> = (0..20)
        .map(|i| image(&format!("r/app{i}:1"), 100 - i, 1))
        .collect();
    let mut p = policy();
    p.keep_newest = 0;
    p.max_removals = 3;
    assert_eq!(
        names(&decide(&images, p, None, now())),
        ["r/app0:1", "r/app1:1", "r/app2:1"]
    );
}

#[test]
fn past_the_high_mark_least_recently_used_go_until_under_the_low_mark() {
    // 90 of 100 used: 10 to free to be under 80.
    let disk = Disk {
        used: 90,
        total: 100,
    };
    let images = [
        image("r/a:1", 3, 4), // newest of r/a, but pressure takes it
        image("r/b:1", 9, 4),
        image("r/c:1", 6, 4),
        image("r/d:1", 2, 4),
        image("r/e:1", 0, 50), // too young
    ];
    let out = decide(&images, policy(), Some(disk), now());
    assert_eq!(names(&out), ["r/b:1", "r/c:1", "r/a:1"]);
    assert!(
        out.iter()
            .all(|r| r.reason == Reason::DiskPressure { percent: 90 })
    );
    assert_eq!(out[0].reason.label(), "disk_pressure");
}

#[test]
fn under_the_high_mark_only_the_age_rules_apply() {
    let disk = Disk {
        used: 85,
        total: 100,
    };
    let images = [image("r/a:1", 3, 40), image("r/a:2", 2, 40)];
    let out = decide(&images, policy(), Some(disk), now());
    assert_eq!(names(&out), ["r/a:1"]);
    assert!(matches!(out[0].reason, Reason::Unused { .. }));
}

#[test]
fn pressure_and_age_share_the_cap_and_remove_nothing_twice() {
    let disk = Disk {
        used: 81,
        total: 90,
    };
    let images = [
        image("r/a:1", 9, 5),
        image("r/a:2", 8, 5),
        image("r/a:3", 7, 5),
        image("r/a:4", 6, 5),
    ];
    let mut p = policy();
    p.max_removals = 3;
    let out = decide(&images, p, Some(disk), now());
    // 81 of 90 is 90%: 81 - 72 = 9 bytes to free, two images; then one by age.
    assert_eq!(names(&out), ["r/a:1", "r/a:2", "r/a:3"]);
    assert!(matches!(out[0].reason, Reason::DiskPressure { .. }));
    assert!(matches!(out[2].reason, Reason::Unused { .. }));
}

#[test]
fn percent_rounds_up_and_an_empty_disk_is_never_full() {
    assert_eq!(
        Disk {
            used: 851,
            total: 1000
        }
        .percent(),
        86
    );
    assert_eq!(Disk { used: 0, total: 0 }.percent(), 0);
}
