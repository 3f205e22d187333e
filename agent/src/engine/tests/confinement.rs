//! What a container may get beyond Docker's defaults: capabilities outside the default set
//! and running without a seccomp filter, each refused before anything is pulled unless the
//! agent's configuration allows it.

use super::*;

fn adding(task: &str, caps: &[&str]) -> TaskAssignment {
    let add: Vec<String> = caps.iter().map(|c| (*c).to_owned()).collect();
    one_container(task, move |c| {
        c.linux_parameters = Some(berth_proto::v1::LinuxParameters {
            capabilities: Some(berth_proto::v1::KernelCapabilities {
                add,
                drop: Vec::new(),
            }),
            ..Default::default()
        });
    })
}

fn nothing_pulled(fake: &Fake) {
    assert!(
        fake.calls()
            .iter()
            .all(|c| !c.starts_with("pull") && !c.starts_with("create")),
        "nothing is pulled or created: {:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn capabilities_beyond_the_defaults_stop_the_task_before_any_pull() {
    let h = start();
    h.assign(adding("t-all", &["ALL"])).await;
    let stopped = until(&h.store, "t-all", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert!(
        stopped.stopped_reason.starts_with(
            "container app: capabilities.add ALL asks for every capability, and this agent's \
             allowed_capabilities does not list DAC_READ_SEARCH,"
        ),
        "{}",
        stopped.stopped_reason
    );
    h.assign(adding("t-admin", &["SYS_ADMIN"])).await;
    let stopped = until(&h.store, "t-admin", TaskStatus::Stopped).await;
    assert_eq!(
        stopped.stopped_reason,
        "container app: capability SYS_ADMIN is beyond Docker's default set, and this agent's \
         allowed_capabilities does not list it: add it to allowed_capabilities \
         (BERTH_ALLOWED_CAPABILITIES), or set allow_privileged = true"
    );
    nothing_pulled(&h.fake);
    // Docker's defaults need nothing.
    h.run(adding("t-default", &["NET_BIND_SERVICE", "kill"]))
        .await;
    h.cancel.cancel();

    let allowed = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.allowed_capabilities = vec!["SYS_ADMIN".into()];
    });
    allowed.run(adding("t-admin-ok", &["CAP_SYS_ADMIN"])).await;
    allowed.cancel.cancel();
}

#[tokio::test]
async fn unconfined_seccomp_runs_only_where_the_agent_allows_it() {
    let unconfined = |task: &str| {
        one_container(task, |c| {
            c.seccomp_profile = "unconfined".into();
        })
    };
    let h = start();
    h.run(unconfined("t-unconfined")).await;
    h.run(one_container("t-default", |_| {})).await;
    let specs = h.fake.specs.lock().unwrap().clone();
    assert_eq!(specs[0].seccomp, berth_runtime::Seccomp::Unconfined);
    assert_eq!(specs[1].seccomp, berth_runtime::Seccomp::Default);
    h.cancel.cancel();

    let strict = start_configured(tempfile::tempdir().unwrap(), |c| {
        c.allow_unconfined_seccomp = false;
    });
    strict.assign(unconfined("t-refused")).await;
    let stopped = until(&strict.store, "t-refused", TaskStatus::Stopped).await;
    assert_eq!(stopped.stop_code, StopCode::TaskFailedToStart as i32);
    assert_eq!(
        stopped.stopped_reason,
        "container app: seccomp=unconfined is not allowed on this agent: remove it to run under \
         the default seccomp profile, or set allow_unconfined_seccomp = true \
         (BERTH_ALLOW_UNCONFINED_SECCOMP)"
    );
    nothing_pulled(&strict.fake);
    strict.cancel.cancel();
}

#[tokio::test]
async fn tmpfs_suid_and_dev_stop_the_task_unless_privileged_is_allowed() {
    let with_tmpfs = |task: &str| {
        one_container(task, |c| {
            c.linux_parameters = Some(berth_proto::v1::LinuxParameters {
                tmpfs: vec![berth_proto::v1::TmpfsMount {
                    container_path: "/scratch".into(),
                    size_mib: 8,
                    mount_options: vec!["suid".into()],
                }],
                ..Default::default()
            });
        })
    };
    let h = start();
    h.assign(with_tmpfs("t-suid")).await;
    let stopped = until(&h.store, "t-suid", TaskStatus::Stopped).await;
    assert_eq!(
        stopped.stopped_reason,
        "container app: tmpfs /scratch: option suid is allowed only where privileged containers \
         are: remove it, or set allow_privileged = true (BERTH_ALLOW_PRIVILEGED)"
    );
    nothing_pulled(&h.fake);
    h.cancel.cancel();

    let allowed = start_with(true);
    allowed.run(with_tmpfs("t-suid-ok")).await;
    allowed.cancel.cancel();
}
