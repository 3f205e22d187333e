//! A YAML document read into a tree whose every node knows the line it starts on, with
//! `yaml-rust2`'s pure-Rust parser: what the user data reader needs to name the line to fix.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// One node of the document and the line (1-based) it starts on.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) line: usize,
    pub(super) value: Value,
}

/// What a node holds. Aliases are resolved: an alias is a copy of what its anchor named.
#[derive(Debug, Clone)]
pub(super) enum Value {
    /// A scalar as written (quoted or not), and whether it was plain (unquoted).
    Scalar { text: String, plain: bool },
    /// A sequence: read (and checked) to its end, but nothing Berth reads is one.
    Sequence,
    /// A mapping's entries in the order written.
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// What the node is, in serde's words ("sequence", "map", "string \"x\"").
    pub(super) fn kind(&self) -> String {
        match &self.value {
            Value::Scalar { text, .. } => format!("string {text:?}"),
            Value::Sequence => "sequence".to_owned(),
            Value::Mapping(_) => "map".to_owned(),
        }
    }

    /// A plain `~`, `null` (any case YAML allows) or empty scalar: YAML's null.
    pub(super) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
}

/// Why the text is not one YAML document: the line to fix and what is wrong there.
#[derive(Debug)]
pub(super) struct YamlError {
    pub(super) line: usize,
    pub(super) message: String,
}

impl From<ScanError> for YamlError {
    /// The scanner marks a quoted scalar's errors where the scalar opened (the line to fix), so
    /// the message says which column that was.
    fn from(e: ScanError) -> Self {
        let at = e.marker();
        let message = if e.info().contains("quoted scalar") {
            format!("{}; its quote opens at column {}", e.info(), at.col() + 1)
        } else {
            e.info().to_owned()
        };
        Self {
            line: at.line(),
            message,
        }
    }
}

/// The single document in `text`: `None` when it holds none. More than one document is an
/// error, as the user data cloud-init reads is one document.
pub(super) fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
    };
    let mut document = None;
    loop {
        let (event, mark) = builder.parser.next_token()?;
        match event {
            Event::StreamEnd => return Ok(document),
            Event::DocumentStart if document.is_some() => {
                return Err(YamlError {
                    line: mark.line(),
                    message: "more than one document: user data is a single YAML document"
                        .to_owned(),
                });
            }
            Event::DocumentStart => {
                let (event, mark) = builder.parser.next_token()?;
                document = Some(builder.node(event, mark, 0)?);
            }
            _ => {}
        }
    }
}

/// How deep collections may nest: deeper is refused rather than risk the stack.
const MAX_DEPTH: usize = 128;

/// Reads the parser's events into nodes, remembering anchored ones for their aliases.
struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
}

impl Builder<'_> {
    /// The node that starts with `event`, read to its end; `depth` is how many collections
    /// hold it.
    fn node(&mut self, event: Event, mark: Marker, depth: usize) -> Result<Node, YamlError> {
        let line = mark.line();
        if depth > MAX_DEPTH {
            return Err(YamlError {
                line,
                message: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        let (anchor, value) = match event {
            Event::Scalar(text, style, anchor, _) => (
                anchor,
                Value::Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                },
            ),
            Event::SequenceStart(anchor, _) => {
                loop {
                    let (event, mark) = self.parser.next_token()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    self.node(event, mark, depth + 1)?;
                }
                (anchor, Value::Sequence)
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                loop {
                    let (event, mark) = self.parser.next_token()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(event, mark, depth + 1)?;
                    let (event, mark) = self.parser.next_token()?;
                    let value = self.node(event, mark, depth + 1)?;
                    entries.push((key, value));
                }
                (anchor, Value::Mapping(entries))
            }
            Event::Alias(id) => {
                return self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    line,
                    message: "an alias to an anchor not defined before it".to_owned(),
                });
            }
            other => {
                return Err(YamlError {
                    line,
                    message: format!("unexpected {other:?} where a value belongs"),
                });
            }
        };
        let node = Node { line, value };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}
