//! How berthctl names the proto model's enums for people and in JSON alike: statuses without
//! their enum prefix, ECS's stop codes, and why a task stopped.

use berth_proto::v1 as proto;

/// `value`'s name without `prefix` ("TASK_STATUS_RUNNING" → "RUNNING"), or "UNKNOWN(n)" for a
/// value this build does not know.
fn unprefixed<E: TryFrom<i32>>(value: i32, prefix: &str, name: fn(&E) -> &'static str) -> String {
    E::try_from(value)
        .map(|e| name(&e).trim_start_matches(prefix).to_owned())
        .unwrap_or_else(|_| format!("UNKNOWN({value})"))
}

/// A task status without its prefix: "RUNNING"; "UNKNOWN(n)" for a value this build does not know.
pub(super) fn task_status_name(value: i32) -> String {
    unprefixed(value, "TASK_STATUS_", proto::TaskStatus::as_str_name)
}

/// A desired status without its prefix: "RUNNING" or "STOPPED".
pub(super) fn desired_status_name(value: i32) -> String {
    unprefixed(value, "DESIRED_STATUS_", proto::DesiredStatus::as_str_name)
}

/// A container status without its prefix.
pub(super) fn container_status_name(value: i32) -> String {
    unprefixed(
        value,
        "CONTAINER_STATUS_",
        proto::ContainerStatus::as_str_name,
    )
}

/// ECS's name of a health status: "HEALTHY", "UNHEALTHY" or "UNKNOWN".
pub(super) fn health_status_name(value: i32) -> String {
    unprefixed(value, "HEALTH_STATUS_", proto::HealthStatus::as_str_name)
}

/// ECS's name of a stop code ("EssentialContainerExited"); `None` when unspecified.
pub(super) fn stop_code_name(value: i32) -> Option<String> {
    let name = match proto::StopCode::try_from(value) {
        Ok(proto::StopCode::Unspecified) => return None,
        Ok(proto::StopCode::TaskFailedToStart) => "TaskFailedToStart",
        Ok(proto::StopCode::EssentialContainerExited) => "EssentialContainerExited",
        Ok(proto::StopCode::UserInitiated) => "UserInitiated",
        Ok(proto::StopCode::ServiceSchedulerInitiated) => "ServiceSchedulerInitiated",
        Ok(proto::StopCode::InstanceLost) => "InstanceLost",
        Err(_) => return Some(format!("Unknown({value})")),
    };
    Some(name.to_owned())
}

/// Why a task stopped: its stop code and reason, as far as they are known.
pub(super) fn stop_reason(task: &proto::Task) -> String {
    match (stop_code_name(task.stop_code), task.stopped_reason.as_str()) {
        (Some(code), "") => code,
        (Some(code), reason) => format!("{code}: {reason}"),
        (None, "") => "no reason given".to_owned(),
        (None, reason) => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_stop_code_names() {
        assert_eq!(
            task_status_name(proto::TaskStatus::Running as i32),
            "RUNNING"
        );
        assert_eq!(
            task_status_name(proto::TaskStatus::Stopped as i32),
            "STOPPED"
        );
        assert_eq!(
            task_status_name(proto::TaskStatus::Provisioning as i32),
            "PROVISIONING"
        );
        assert_eq!(task_status_name(42), "UNKNOWN(42)");
        assert_eq!(
            desired_status_name(proto::DesiredStatus::Stopped as i32),
            "STOPPED"
        );
        assert_eq!(
            container_status_name(proto::ContainerStatus::Pulled as i32),
            "PULLED"
        );
        assert_eq!(stop_code_name(proto::StopCode::Unspecified as i32), None);
        assert_eq!(
            stop_code_name(proto::StopCode::EssentialContainerExited as i32).as_deref(),
            Some("EssentialContainerExited")
        );
        assert_eq!(
            stop_code_name(proto::StopCode::UserInitiated as i32).as_deref(),
            Some("UserInitiated")
        );
        assert_eq!(
            stop_code_name(proto::StopCode::TaskFailedToStart as i32).as_deref(),
            Some("TaskFailedToStart")
        );
        assert_eq!(
            stop_code_name(proto::StopCode::ServiceSchedulerInitiated as i32).as_deref(),
            Some("ServiceSchedulerInitiated")
        );
        assert_eq!(stop_code_name(9).as_deref(), Some("Unknown(9)"));
        assert_eq!(
            health_status_name(proto::HealthStatus::Unknown as i32),
            "UNKNOWN"
        );
        assert_eq!(
            health_status_name(proto::HealthStatus::Healthy as i32),
            "HEALTHY"
        );
    }

    #[test]
    fn stop_reasons_say_what_is_known() {
        let task = |code: proto::StopCode, reason: &str| proto::Task {
            stop_code: code as i32,
            stopped_reason: reason.into(),
            ..Default::default()
        };
        use proto::StopCode::*;
        assert_eq!(
            stop_reason(&task(EssentialContainerExited, "app exited")),
            "EssentialContainerExited: app exited"
        );
        assert_eq!(stop_reason(&task(UserInitiated, "")), "UserInitiated");
        assert_eq!(stop_reason(&task(Unspecified, "gone")), "gone");
        assert_eq!(stop_reason(&task(Unspecified, "")), "no reason given");
    }
}
