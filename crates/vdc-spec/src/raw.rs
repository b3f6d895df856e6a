//! The app file as TOML gave it: a tree of values that remembers where every
//! key and value sits in the text.
//!
//! Validation reads this tree instead of deserializing straight into typed
//! structs because serde stops at the first wrong type or unknown field, and
//! an operator fixing a file wants every mistake at once. TOML syntax errors
//! still stop parsing: past one, the rest of the file has no reliable shape.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_spanned::__unstable as spanned;

use crate::diagnostic::Span;

/// The field toml uses to hand a datetime to a generic visitor.
const DATETIME_FIELD: &str = "$__toml_private_datetime";

/// A value and, when TOML knows it, where it is written. Tables created
/// implicitly by a header such as `[components.web]` have no span of their
/// own; their key has one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub span: Option<Span>,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// A key of a table, where it is written, and its value. Entries keep the
/// file's order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Span,
    pub node: Node,
}

/// A TOML syntax error, with its position when TOML gives one.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub span: Span,
}

// === parsing ===

/// Parses TOML text into a tree whose root is a table.
pub(crate) fn parse(source: &str) -> Result<Vec<Entry>, SyntaxError> {
    match toml::from_str::<Node>(source) {
        Ok(Node {
            value: Value::Table(entries),
            ..
        }) => Ok(entries),
        Ok(_) => Err(SyntaxError {
            message: "expected a TOML document".to_owned(),
            span: 0..0,
        }),
        Err(e) => {
            // toml puts a detail on a second line ("invalid string\nexpected
            // `\"`"); one line reads better next to the position.
            let mut message = e.message().trim().replace('\n', ": ");
            let span = e.span().unwrap_or(0..0);
            if message.is_empty() {
                // toml says nothing when the text stops mid-statement.
                message = if span.start >= source.trim_end().len() {
                    "unexpected end of file: expected a value".to_owned()
                } else {
                    "invalid TOML".to_owned()
                };
            }
            Err(SyntaxError {
                span: duplicate_key_span(source, &message, span.clone()).unwrap_or(span),
                message,
            })
        }
    }
}

/// toml points a duplicate key inside an inline table at the table's
/// opening brace; this finds the second occurrence of the key at the
/// table's own level so the caret lands on the duplicate itself.
fn duplicate_key_span(source: &str, message: &str, span: Span) -> Option<Span> {
    let key = message.strip_prefix("duplicate key `")?.strip_suffix('`')?;
    let text = source.get(span.start..)?;
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut at_key = true;
    let mut seen = 0;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                quote = Some(c);
                at_key = false;
            }
            '{' | '[' => {
                depth += 1;
                at_key = true;
            }
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                at_key = false;
            }
            ',' => at_key = true,
            c if c.is_whitespace() => {}
            _ => {
                let is_key = depth == 0
                    && at_key
                    && text.get(i..)?.starts_with(key)
                    && text.get(i + key.len()..)?.trim_start().starts_with('=');
                if is_key {
                    seen += 1;
                    if seen == 2 {
                        let start = span.start + i;
                        return Some(start..start + key.len());
                    }
                }
                at_key = false;
            }
        }
    }
    None
}

// === impl Node ===

impl Node {
    /// The name of the value's type, as TOML calls it.
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::String(_) => "string",
            Value::Integer(_) => "integer",
            Value::Float(_) => "float",
            Value::Boolean(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::Array(_) => "array",
            Value::Table(_) => "table",
        }
    }
}

impl Entry {
    /// Where the value is written, or the key when the value has no span.
    pub(crate) fn value_span(&self) -> Span {
        self.node
            .span
            .clone()
            .unwrap_or_else(|| self.key_span.clone())
    }
}

// === deserialization ===
//
// A value is asked for as a `Spanned` struct; toml answers with the span and
// then the value when it knows the span, and with the bare value otherwise
// (implicit tables). The visitor accepts both shapes. Keys are asked for the
// same way so every entry knows where its key is written.

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(
            spanned::NAME,
            &[
                spanned::START_FIELD,
                spanned::END_FIELD,
                spanned::VALUE_FIELD,
            ],
            NodeVisitor,
        )
    }
}

/// Deserializes the bare value inside a span wrapper.
struct Bare;

impl<'de> DeserializeSeed<'de> for Bare {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn bare(value: Value) -> Node {
    Node { span: None, value }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(bare(Value::Boolean(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(bare(Value::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(|v| bare(Value::Integer(v)))
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(bare(Value::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(bare(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(bare(Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(bare(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Marker(m) if m == spanned::START_FIELD => {
                    return spanned_value(&mut map);
                }
                Key::Marker(m) if m == DATETIME_FIELD => {
                    let text: String = map.next_value()?;
                    return Ok(bare(Value::Datetime(text)));
                }
                Key::Marker(key) => {
                    // A key without a span: only when the tree did not come
                    // from text, which `parse` never does.
                    let node = map.next_value::<Node>()?;
                    entries.push(Entry {
                        key,
                        key_span: 0..0,
                        node,
                    });
                }
                Key::Spanned(key, key_span) => {
                    let node = map.next_value::<Node>()?;
                    entries.push(Entry {
                        key,
                        key_span,
                        node,
                    });
                }
            }
        }
        Ok(bare(Value::Table(entries)))
    }
}

/// Reads the rest of a span wrapper whose start field was just seen: the
/// start, the end, then the value.
fn spanned_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Node, A::Error> {
    let start: usize = map.next_value()?;
    let end = match map.next_key::<Key>()? {
        Some(Key::Marker(m)) if m == spanned::END_FIELD => map.next_value::<usize>()?,
        _ => return Err(de::Error::custom("malformed spanned value")),
    };
    match map.next_key::<Key>()? {
        Some(Key::Marker(m)) if m == spanned::VALUE_FIELD => {
            let mut node = map.next_value_seed(Bare)?;
            node.span = Some(start..end);
            Ok(node)
        }
        _ => Err(de::Error::custom("malformed spanned value")),
    }
}

/// A table key: with its span (every key parsed from text), or a bare string
/// (the fields of toml's span and datetime wrappers).
enum Key {
    Marker(String),
    Spanned(String, Span),
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(
            spanned::NAME,
            &[
                spanned::START_FIELD,
                spanned::END_FIELD,
                spanned::VALUE_FIELD,
            ],
            KeyVisitor,
        )
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key::Marker(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let mut start = None;
        let mut end = None;
        let mut value = None;
        while let Some(field) = map.next_key::<String>()? {
            if field == spanned::START_FIELD {
                start = Some(map.next_value::<usize>()?);
            } else if field == spanned::END_FIELD {
                end = Some(map.next_value::<usize>()?);
            } else if field == spanned::VALUE_FIELD {
                value = Some(map.next_value::<String>()?);
            } else {
                return Err(de::Error::custom("malformed spanned key"));
            }
        }
        match (start, end, value) {
            (Some(start), Some(end), Some(value)) => Ok(Key::Spanned(value, start..end)),
            _ => Err(de::Error::custom("malformed spanned key")),
        }
    }
}
