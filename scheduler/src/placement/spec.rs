//! Constraints and strategies as users write them: ECS's CLI shorthand
//! (`type=memberOf,expression="attribute:stack == blue"`, `type=spread,field=instanceId`) and
//! the `type`/`expression`/`field` pairs of JSON and the wire.

use super::query::ParseError;
use super::{Constraint, Resource, SpreadField, Strategy};

/// The most constraints ECS takes on one task or service.
pub const MAX_CONSTRAINTS: usize = 10;
/// The most strategies ECS takes on one task or service.
pub const MAX_STRATEGIES: usize = 5;

/// Why a constraint or strategy is not one Berth can apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("placement constraint type `{0}` is unknown: use distinctInstance or memberOf")]
    ConstraintType(String),
    #[error("placement strategy type `{0}` is unknown: use binpack, spread or random")]
    StrategyType(String),
    #[error(
        "a memberOf placement constraint needs an expression, e.g. expression=\"attribute:ecs.availability-zone in [us-east-1a, us-east-1b]\""
    )]
    MissingExpression,
    #[error("a distinctInstance placement constraint takes no expression: remove `{0}`")]
    UnexpectedExpression(String),
    /// The parse error is part of the message (it names the column), not a source.
    #[error("memberOf expression `{expression}` does not parse {error}")]
    Expression {
        expression: String,
        error: ParseError,
    },
    #[error("binpack field `{0}` is unknown: use cpu or memory")]
    BinpackField(String),
    #[error(
        "spread field `{0}` is unknown: use instanceId, host or attribute:NAME (e.g. attribute:ecs.availability-zone)"
    )]
    SpreadField(String),
    #[error("a {0} placement strategy needs a field")]
    MissingField(&'static str),
    #[error("`{0}` is not of the form key=value (type=..., expression=... or field=...)")]
    Shorthand(String),
    #[error("`{key}` is not a key of a placement {what}: use type and {expected}")]
    ShorthandKey {
        key: String,
        what: &'static str,
        expected: &'static str,
    },
    #[error("{count} placement constraints given; at most {MAX_CONSTRAINTS} are allowed")]
    TooManyConstraints { count: usize },
    #[error("{count} placement strategies given; at most {MAX_STRATEGIES} are allowed")]
    TooManyStrategies { count: usize },
}

impl Constraint {
    /// A constraint from its ECS `type` and `expression` (empty: none).
    pub fn from_parts(kind: &str, expression: &str) -> Result<Self, SpecError> {
        match kind {
            "distinctInstance" if expression.is_empty() => Ok(Self::DistinctInstance),
            "distinctInstance" => Err(SpecError::UnexpectedExpression(expression.to_owned())),
            "memberOf" if expression.trim().is_empty() => Err(SpecError::MissingExpression),
            "memberOf" => Self::member_of(expression).map_err(|error| SpecError::Expression {
                expression: expression.to_owned(),
                error,
            }),
            other => Err(SpecError::ConstraintType(other.to_owned())),
        }
    }

    /// A constraint in ECS's CLI shorthand: `type=distinctInstance` or
    /// `type=memberOf,expression="…"`.
    pub fn parse(shorthand: &str) -> Result<Self, SpecError> {
        let (kind, expression) = pairs(shorthand, "constraint", "expression")?;
        Self::from_parts(&kind, &expression)
    }

    /// ECS's `type` of this constraint.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DistinctInstance => "distinctInstance",
            Self::MemberOf { .. } => "memberOf",
        }
    }

    /// Its expression; empty for distinctInstance.
    pub fn expression(&self) -> &str {
        match self {
            Self::DistinctInstance => "",
            Self::MemberOf { expression, .. } => expression,
        }
    }
}

impl Strategy {
    /// A strategy from its ECS `type` and `field` (empty: none).
    pub fn from_parts(kind: &str, field: &str) -> Result<Self, SpecError> {
        match kind {
            // ECS ignores the field of random.
            "random" => Ok(Self::Random),
            "binpack" => match field {
                "cpu" | "CPU" => Ok(Self::Binpack(Resource::Cpu)),
                "memory" | "MEMORY" => Ok(Self::Binpack(Resource::Memory)),
                "" => Err(SpecError::MissingField("binpack")),
                other => Err(SpecError::BinpackField(other.to_owned())),
            },
            "spread" => match field {
                "instanceId" | "host" => Ok(Self::Spread(SpreadField::InstanceId)),
                "" => Err(SpecError::MissingField("spread")),
                other => match other.strip_prefix("attribute:") {
                    Some(name) if !name.is_empty() => {
                        Ok(Self::Spread(SpreadField::Attribute(name.to_owned())))
                    }
                    _ => Err(SpecError::SpreadField(other.to_owned())),
                },
            },
            other => Err(SpecError::StrategyType(other.to_owned())),
        }
    }

    /// A strategy in ECS's CLI shorthand: `type=spread,field=attribute:ecs.availability-zone`.
    pub fn parse(shorthand: &str) -> Result<Self, SpecError> {
        let (kind, field) = pairs(shorthand, "strategy", "field")?;
        Self::from_parts(&kind, &field)
    }

    /// ECS's `type` of this strategy.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Binpack(_) => "binpack",
            Self::Spread(_) => "spread",
            Self::Random => "random",
        }
    }

    /// Its field as ECS spells it; empty for random.
    pub fn field(&self) -> String {
        match self {
            Self::Binpack(Resource::Cpu) => "cpu".to_owned(),
            Self::Binpack(Resource::Memory) => "memory".to_owned(),
            Self::Spread(SpreadField::InstanceId) => "instanceId".to_owned(),
            Self::Spread(SpreadField::Attribute(name)) => format!("attribute:{name}"),
            Self::Random => String::new(),
        }
    }
}

/// Refuses more constraints or strategies than ECS allows.
pub fn check_counts(constraints: usize, strategies: usize) -> Result<(), SpecError> {
    if constraints > MAX_CONSTRAINTS {
        return Err(SpecError::TooManyConstraints { count: constraints });
    }
    if strategies > MAX_STRATEGIES {
        return Err(SpecError::TooManyStrategies { count: strategies });
    }
    Ok(())
}

/// `type=…,KEY=…` with values optionally in double quotes (which may hold commas): the type
/// and the other key's value (empty when absent).
fn pairs(
    shorthand: &str,
    what: &'static str,
    other: &'static str,
) -> Result<(String, String), SpecError> {
    let mut kind = String::new();
    let mut value = String::new();
    for item in split_outside_quotes(shorthand) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, raw) = item
            .split_once('=')
            .ok_or_else(|| SpecError::Shorthand(item.to_owned()))?;
        let raw = raw.trim();
        let unquoted = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        match key.trim() {
            "type" => kind = unquoted.to_owned(),
            k if k == other => value = unquoted.to_owned(),
            k => {
                return Err(SpecError::ShorthandKey {
                    key: k.to_owned(),
                    what,
                    expected: other,
                });
            }
        }
    }
    Ok((kind, value))
}

fn split_outside_quotes(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_in_ecs_shorthand() {
        assert_eq!(
            Constraint::parse("type=distinctInstance"),
            Ok(Constraint::DistinctInstance)
        );
        let c = Constraint::parse(
            "type=memberOf,expression=\"attribute:ecs.availability-zone in [us-east-1a, us-east-1b]\"",
        )
        .unwrap();
        assert_eq!(c.kind(), "memberOf");
        assert_eq!(
            c.expression(),
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"
        );
        assert_eq!(
            Constraint::parse("type=memberOf"),
            Err(SpecError::MissingExpression)
        );
        assert_eq!(
            Constraint::parse("type=spreadOut").unwrap_err().to_string(),
            "placement constraint type `spreadOut` is unknown: use distinctInstance or memberOf"
        );
        assert!(matches!(
            Constraint::parse("type=distinctInstance,expression=x"),
            Err(SpecError::UnexpectedExpression(_))
        ));
        assert_eq!(
            Constraint::parse("type=memberOf,expression=\"ec2InstanceId ==\"")
                .unwrap_err()
                .to_string(),
            "memberOf expression `ec2InstanceId ==` does not parse at column 17: expected a \
             value after `==`, found the end"
        );
        assert!(matches!(
            Constraint::parse("type=memberOf,field=x"),
            Err(SpecError::ShorthandKey { .. })
        ));
        assert!(matches!(
            Constraint::parse("memberOf"),
            Err(SpecError::Shorthand(_))
        ));
    }

    #[test]
    fn strategies_in_ecs_shorthand() {
        assert_eq!(
            Strategy::parse("type=spread,field=attribute:ecs.availability-zone"),
            Ok(Strategy::Spread(SpreadField::Attribute(
                "ecs.availability-zone".into()
            )))
        );
        assert_eq!(
            Strategy::parse("type=spread,field=host"),
            Ok(Strategy::Spread(SpreadField::InstanceId))
        );
        assert_eq!(
            Strategy::parse("type=binpack,field=cpu"),
            Ok(Strategy::Binpack(Resource::Cpu))
        );
        assert_eq!(Strategy::parse("type=random"), Ok(Strategy::Random));
        assert_eq!(
            Strategy::parse("type=binpack,field=disk"),
            Err(SpecError::BinpackField("disk".into()))
        );
        assert_eq!(
            Strategy::parse("type=spread"),
            Err(SpecError::MissingField("spread"))
        );
        assert_eq!(
            Strategy::parse("type=spread,field=zone"),
            Err(SpecError::SpreadField("zone".into()))
        );
        assert!(matches!(
            Strategy::parse("type=pack,field=cpu"),
            Err(SpecError::StrategyType(_))
        ));
        for s in [
            "type=binpack,field=memory",
            "type=spread,field=attribute:a.b",
        ] {
            let parsed = Strategy::parse(s).unwrap();
            assert_eq!(
                Strategy::from_parts(parsed.kind(), &parsed.field()),
                Ok(parsed)
            );
        }
        assert_eq!(check_counts(10, 5), Ok(()));
        assert!(check_counts(11, 0).is_err());
        assert!(check_counts(0, 6).is_err());
    }
}
