//! ECS's cluster query language, the expression of a `memberOf` constraint: a hand-written
//! lexer and recursive-descent parser whose errors name the column, and the evaluation of a
//! parsed expression against one instance.
//!
//! `subject operator [argument]`, joined by `and`/`&&`, `or`/`||`, negated by `not`/`!`, grouped
//! with parentheses (`not` binds tighter than `and`, `and` tighter than `or`). Subjects:
//! `attribute:NAME`, `ec2InstanceId`, `instanceId` (Berth's container instance ID),
//! `agentConnected`, `agentVersion`, `registeredAt`, `runningTasksCount` and `task:group`.
//! Operators: `==`/`equals`, `!=`/`not_equals`, `>`/`greater_than`, `>=`/`greater_than_equal`,
//! `<`/`less_than`, `<=`/`less_than_equal`, `=~`/`matches` and `!~`/`not_matches` (`*` is a
//! wildcard), `exists`, `!exists`/`not_exists`, `in` and `!in`/`not_in` with a list `[a, b]`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// The longest expression ECS accepts in a `memberOf` constraint.
pub const MAX_EXPRESSION_LEN: usize = 2000;
/// How deep parentheses and `not` may nest.
const MAX_DEPTH: usize = 32;

/// Why an expression does not parse, at a 1-based character column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {problem}")]
pub struct ParseError {
    pub column: usize,
    pub problem: Problem,
}

/// What is wrong at the column of a [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the expression is empty")]
    Empty,
    #[error("the expression is longer than {MAX_EXPRESSION_LEN} characters")]
    TooLong,
    #[error("parentheses and `not` nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("unexpected character `{0}`")]
    Character(char),
    #[error("unterminated quoted value")]
    Unterminated,
    #[error(
        "expected a subject (attribute:NAME, ec2InstanceId, instanceId, agentConnected, \
         agentVersion, registeredAt, runningTasksCount or task:group), found {0}"
    )]
    Subject(String),
    #[error("unknown subject `{0}`")]
    UnknownSubject(String),
    #[error(
        "expected an operator (==, !=, >, >=, <, <=, =~, !~, exists, !exists, in, !in), found {0}"
    )]
    Operator(String),
    #[error("expected a value after `{0}`, found {1}")]
    Value(&'static str, String),
    #[error("expected `[` and a list of values after `{0}`, found {1}")]
    List(&'static str, String),
    #[error("expected `,` or `]` in the list, found {0}")]
    ListSeparator(String),
    #[error("expected `)`, found {0}")]
    Close(String),
    #[error("expected `and`, `or` or the end, found {0}")]
    Trailing(String),
}

/// A parsed expression, evaluated by [`Expression::matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    And(Box<Expression>, Box<Expression>),
    Or(Box<Expression>, Box<Expression>),
    Not(Box<Expression>),
    Compare {
        subject: Subject,
        operator: Operator,
        /// One value, the list of `in`, or none for `exists`.
        values: Vec<String>,
    },
}

/// What a comparison looks at on an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Attribute(String),
    Ec2InstanceId,
    InstanceId,
    AgentConnected,
    AgentVersion,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

/// A comparison operator; each negative one is the negation of its positive one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Matches,
    NotMatches,
    Exists,
    NotExists,
    In,
    NotIn,
}

/// What the expression may ask of an instance: the values of each subject (a subject with
/// several values, such as `task:group`, matches when any value does).
pub trait Facts {
    /// The values of `subject` on this instance; empty when it has none.
    fn values(&self, subject: &Subject) -> Vec<Cow<'_, str>>;
}

impl Expression {
    /// Parses `text`; the error names the column where it goes wrong.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if text.chars().count() > MAX_EXPRESSION_LEN {
            return Err(ParseError {
                column: MAX_EXPRESSION_LEN + 1,
                problem: Problem::TooLong,
            });
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            depth: 0,
        };
        if parser.peek().kind == Kind::End {
            return Err(ParseError {
                column: 1,
                problem: Problem::Empty,
            });
        }
        let expression = parser.or()?;
        let next = parser.peek();
        if next.kind != Kind::End {
            return Err(parser.error_here(Problem::Trailing(next.describe())));
        }
        Ok(expression)
    }

    /// Whether an instance with these facts satisfies the expression.
    pub fn matches(&self, facts: &impl Facts) -> bool {
        match self {
            Self::And(a, b) => a.matches(facts) && b.matches(facts),
            Self::Or(a, b) => a.matches(facts) || b.matches(facts),
            Self::Not(e) => !e.matches(facts),
            Self::Compare {
                subject,
                operator,
                values,
            } => compare(&facts.values(subject), *operator, values),
        }
    }
}

fn compare(have: &[Cow<'_, str>], operator: Operator, wanted: &[String]) -> bool {
    let first = wanted.first().map(String::as_str).unwrap_or_default();
    let any = |f: &dyn Fn(&str) -> bool| have.iter().any(|h| f(h.as_ref()));
    match operator {
        Operator::Exists => !have.is_empty(),
        Operator::NotExists => have.is_empty(),
        Operator::Equals => any(&|h| h == first),
        Operator::NotEquals => !any(&|h| h == first),
        Operator::In => any(&|h| wanted.iter().any(|w| w == h)),
        Operator::NotIn => !any(&|h| wanted.iter().any(|w| w == h)),
        Operator::Matches => any(&|h| wildcard(first, h)),
        Operator::NotMatches => !any(&|h| wildcard(first, h)),
        Operator::Greater => any(&|h| order(h, first) == Ordering::Greater),
        Operator::GreaterEqual => any(&|h| order(h, first) != Ordering::Less),
        Operator::Less => any(&|h| order(h, first) == Ordering::Less),
        Operator::LessEqual => any(&|h| order(h, first) != Ordering::Greater),
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Numbers compare as numbers, versions (`1.10.2`, `v1.2`) part by part, anything else as text.
fn order(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    let version = |s: &str| -> Option<Vec<u64>> {
        s.strip_prefix('v')
            .unwrap_or(s)
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    };
    match (version(a), version(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Word(String),
    Quoted(String),
    Symbol(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    column: usize,
}

impl Token {
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Word(w) => format!("`{w}`"),
            Kind::Quoted(q) => format!("\"{q}\""),
            Kind::Symbol(s) => format!("`{s}`"),
            Kind::End => "the end".to_owned(),
        }
    }

    fn word(&self) -> Option<&str> {
        match &self.kind {
            Kind::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// The symbols, longest first so that `!=` is not read as `!` then `=`.
const SYMBOLS: &[&str] = &[
    "!exists", "!in", "==", "!=", ">=", "<=", "=~", "!~", "&&", "||", ">", "<", "!", "(", ")", "[",
    "]", ",",
];

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !"()[],!=<>~&|\"'".contains(c)
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or(ParseError {
                    column,
                    problem: Problem::Unterminated,
                })?;
            let value: String = chars[i + 1..i + 1 + end].iter().collect();
            tokens.push(Token {
                kind: Kind::Quoted(value),
                column,
            });
            i += end + 2;
            continue;
        }
        if is_word_char(c) {
            let len = chars[i..].iter().take_while(|&&d| is_word_char(d)).count();
            tokens.push(Token {
                kind: Kind::Word(chars[i..i + len].iter().collect()),
                column,
            });
            i += len;
            continue;
        }
        let symbol = SYMBOLS.iter().find(|s| {
            let n = s.chars().count();
            let matches = chars.len() >= i + n && s.chars().eq(chars[i..i + n].iter().copied());
            // `!exists` and `!in` are operators only as whole words (`!inside` is `!` `inside`).
            let whole = !s.ends_with(|c: char| c.is_ascii_alphabetic())
                || chars.get(i + n).is_none_or(|&d| !is_word_char(d));
            matches && whole
        });
        let Some(symbol) = symbol else {
            return Err(ParseError {
                column,
                problem: Problem::Character(c),
            });
        };
        tokens.push(Token {
            kind: Kind::Symbol(symbol),
            column,
        });
        i += symbol.chars().count();
    }
    tokens.push(Token {
        kind: Kind::End,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens[self.at.min(self.tokens.len() - 1)].clone()
    }

    fn next(&mut self) -> Token {
        let token = self.peek();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn error_here(&self, problem: Problem) -> ParseError {
        ParseError {
            column: self.peek().column,
            problem,
        }
    }

    fn eat(&mut self, words: &[&str], symbols: &[&str]) -> bool {
        let token = self.peek();
        let hit = match &token.kind {
            Kind::Word(w) => words.iter().any(|x| w.eq_ignore_ascii_case(x)),
            Kind::Symbol(s) => symbols.contains(s),
            _ => false,
        };
        if hit {
            self.next();
        }
        hit
    }

    fn or(&mut self) -> Result<Expression, ParseError> {
        let mut left = self.and()?;
        while self.eat(&["or"], &["||"]) {
            left = Expression::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expression, ParseError> {
        let mut left = self.unary()?;
        while self.eat(&["and"], &["&&"]) {
            left = Expression::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expression, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(Problem::TooDeep));
        }
        let result = if self.eat(&["not"], &["!"]) {
            self.unary().map(|e| Expression::Not(Box::new(e)))
        } else if self.eat(&[], &["("]) {
            let inner = self.or()?;
            if self.eat(&[], &[")"]) {
                Ok(inner)
            } else {
                Err(self.error_here(Problem::Close(self.peek().describe())))
            }
        } else {
            self.comparison()
        };
        self.depth -= 1;
        result
    }

    fn comparison(&mut self) -> Result<Expression, ParseError> {
        let token = self.next();
        let Some(word) = token.word() else {
            return Err(ParseError {
                column: token.column,
                problem: Problem::Subject(token.describe()),
            });
        };
        let subject = subject(word).ok_or_else(|| ParseError {
            column: token.column,
            problem: Problem::UnknownSubject(word.to_owned()),
        })?;
        let token = self.next();
        let (operator, spelled) = operator(&token).ok_or_else(|| ParseError {
            column: token.column,
            problem: Problem::Operator(token.describe()),
        })?;
        let values = match operator {
            Operator::Exists | Operator::NotExists => Vec::new(),
            Operator::In | Operator::NotIn => self.list(spelled)?,
            _ => vec![self.value(spelled)?],
        };
        Ok(Expression::Compare {
            subject,
            operator,
            values,
        })
    }

    fn value(&mut self, after: &'static str) -> Result<String, ParseError> {
        let token = self.next();
        match token.kind {
            Kind::Word(w) if !is_keyword(&w) => Ok(w),
            Kind::Quoted(q) => Ok(q),
            _ => Err(ParseError {
                column: token.column,
                problem: Problem::Value(after, token.describe()),
            }),
        }
    }

    fn list(&mut self, after: &'static str) -> Result<Vec<String>, ParseError> {
        if !self.eat(&[], &["["]) {
            return Err(self.error_here(Problem::List(after, self.peek().describe())));
        }
        let mut values = vec![self.value(after)?];
        loop {
            if self.eat(&[], &["]"]) {
                return Ok(values);
            }
            if !self.eat(&[], &[","]) {
                return Err(self.error_here(Problem::ListSeparator(self.peek().describe())));
            }
            values.push(self.value(after)?);
        }
    }
}

fn is_keyword(word: &str) -> bool {
    ["and", "or", "not"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

fn subject(word: &str) -> Option<Subject> {
    if let Some(name) = word.strip_prefix("attribute:") {
        return (!name.is_empty()).then(|| Subject::Attribute(name.to_owned()));
    }
    Some(match word {
        "ec2InstanceId" => Subject::Ec2InstanceId,
        "instanceId" => Subject::InstanceId,
        "agentConnected" => Subject::AgentConnected,
        "agentVersion" => Subject::AgentVersion,
        "registeredAt" => Subject::RegisteredAt,
        "runningTasksCount" => Subject::RunningTasksCount,
        "task:group" => Subject::TaskGroup,
        _ => return None,
    })
}

fn operator(token: &Token) -> Option<(Operator, &'static str)> {
    let spelled: &'static str = match &token.kind {
        Kind::Symbol(s) => s,
        Kind::Word(w) => OPERATOR_WORDS.iter().find(|(n, _)| n == w)?.1,
        _ => return None,
    };
    let operator = match spelled {
        "==" => Operator::Equals,
        "!=" => Operator::NotEquals,
        ">" => Operator::Greater,
        ">=" => Operator::GreaterEqual,
        "<" => Operator::Less,
        "<=" => Operator::LessEqual,
        "=~" => Operator::Matches,
        "!~" => Operator::NotMatches,
        "exists" => Operator::Exists,
        "!exists" => Operator::NotExists,
        "in" => Operator::In,
        "!in" => Operator::NotIn,
        _ => return None,
    };
    Some((operator, spelled))
}

/// The operators' word spellings, each with its symbol.
const OPERATOR_WORDS: &[(&str, &str)] = &[
    ("equals", "=="),
    ("not_equals", "!="),
    ("greater_than", ">"),
    ("greater_than_equal", ">="),
    ("less_than", "<"),
    ("less_than_equal", "<="),
    ("matches", "=~"),
    ("not_matches", "!~"),
    ("exists", "exists"),
    ("not_exists", "!exists"),
    ("in", "in"),
    ("not_in", "!in"),
];

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attribute(name) => write!(f, "attribute:{name}"),
            Self::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Self::InstanceId => f.write_str("instanceId"),
            Self::AgentConnected => f.write_str("agentConnected"),
            Self::AgentVersion => f.write_str("agentVersion"),
            Self::RegisteredAt => f.write_str("registeredAt"),
            Self::RunningTasksCount => f.write_str("runningTasksCount"),
            Self::TaskGroup => f.write_str("task:group"),
        }
    }
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
