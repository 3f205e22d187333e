//! Checks of what CreateService and UpdateService are given, with ECS's rules and messages
//! that say what to change.

use berth_proto::v1 as pb;

use super::{DAEMON, REPLICA, ServiceError};

fn invalid(service: &str, what: String) -> ServiceError {
    ServiceError::Invalid {
        service: service.to_owned(),
        what,
    }
}

/// ECS's service names: 1 to 255 letters, digits, hyphens and underscores.
pub(crate) fn name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidName {
            name: name.to_owned(),
        })
    }
}

pub(crate) fn strategy(service: &str, strategy: &str) -> Result<(), ServiceError> {
    if strategy == REPLICA || strategy == DAEMON {
        Ok(())
    } else {
        Err(invalid(
            service,
            format!("schedulingStrategy {strategy:?} is neither REPLICA nor DAEMON"),
        ))
    }
}

pub(crate) fn deployment(
    service: &str,
    config: &pb::DeploymentConfiguration,
) -> Result<(), ServiceError> {
    if config.minimum_healthy_percent_set && config.minimum_healthy_percent > 100 {
        return Err(invalid(
            service,
            format!(
                "minimumHealthyPercent {} is above 100",
                config.minimum_healthy_percent
            ),
        ));
    }
    if config.maximum_percent_set && config.maximum_percent < 100 {
        return Err(invalid(
            service,
            format!(
                "maximumPercent {} is below 100: the service could never run its desired count",
                config.maximum_percent
            ),
        ));
    }
    Ok(())
}

pub(crate) fn constraints(
    service: &str,
    constraints: &[pb::PlacementConstraint],
) -> Result<(), ServiceError> {
    for c in constraints {
        match c.r#type.as_str() {
            "distinctInstance" => {}
            "memberOf" if !c.expression.trim().is_empty() => {}
            "memberOf" => {
                return Err(invalid(
                    service,
                    "placement constraint memberOf needs an expression".to_owned(),
                ));
            }
            other => {
                return Err(invalid(
                    service,
                    format!(
                        "placement constraint type {other:?} is neither distinctInstance nor memberOf"
                    ),
                ));
            }
        }
    }
    if constraints.len() > 10 {
        return Err(invalid(
            service,
            format!("{} placement constraints: at most 10", constraints.len()),
        ));
    }
    Ok(())
}

pub(crate) fn strategies(
    service: &str,
    strategies: &[pb::PlacementStrategy],
) -> Result<(), ServiceError> {
    for s in strategies {
        let ok = match s.r#type.as_str() {
            "binpack" => s.field == "cpu" || s.field == "memory",
            "spread" => !s.field.is_empty(),
            "random" => true,
            _ => false,
        };
        if !ok {
            return Err(invalid(
                service,
                format!(
                    "placement strategy {}{} is not one of binpack (field cpu or memory), spread (field instanceId or attribute:NAME) or random",
                    s.r#type,
                    if s.field.is_empty() {
                        String::new()
                    } else {
                        format!(" field {}", s.field)
                    }
                ),
            ));
        }
    }
    if strategies.len() > 5 {
        return Err(invalid(
            service,
            format!("{} placement strategies: at most 5", strategies.len()),
        ));
    }
    Ok(())
}
