//! A YAML tree that keeps the position of every node, built from
//! saphyr-parser events, so that validation can point at file:line:column.
//!
//! ```text
//! text ──saphyr events──► Node { pos, value } ──to_json──► serde_json::Value ──► stage configs
//! ```
//! Plain scalars resolve as YAML 1.2 core schema (null, bool, int, float,
//! string). Anchors and aliases are resolved by copying the anchored node.
//! Duplicate keys are an error (YAML forbids them; silently keeping one
//! hides mistakes).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diagnostic::Pos;

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// Its value.
    pub value: Value,
}

/// The value of a YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in file order: (key node, value node); keys are strings.
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

impl Node {
    /// The string of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Entries of a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A YAML type name for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The value as JSON (for serde deserialisation of stage options).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json())).collect(),
            ),
        }
    }

    /// The node at a serde path such as `stages.a.inputs[0]` relative to this
    /// node (segments separated by `.`, indexes as `[n]`), or the deepest
    /// existing ancestor. With `key` the position of a mapping key is returned
    /// for the last segment (used for "unknown field" errors).
    pub fn locate(&self, path: &[PathSeg], key: bool) -> Pos {
        let mut node = self;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(entries)) => match entries.iter().find(|(kn, _)| kn.as_str() == Some(k)) {
                    Some((kn, _)) if last && key => return kn.pos,
                    Some((_, v)) => node = v,
                    None => return node.pos,
                },
                (PathSeg::Index(n), Value::Seq(items)) => match items.get(*n) {
                    Some(v) => node = v,
                    None => return node.pos,
                },
                _ => return node.pos,
            }
        }
        node.pos
    }
}

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Formats a path as `a.b[0].c`.
pub fn format_path(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn pos_of(m: &saphyr_parser::Marker) -> Pos {
    Pos { line: m.line(), col: m.col() + 1 }
}

fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') && digits.as_bytes()[0] != b'_' {
        if let Ok(i) = s.replace('_', "").parse::<i64>() {
            return Value::Int(i);
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    let looks_float = digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    match s {
        ".inf" | ".Inf" | "+.inf" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => Value::Float(f64::NAN),
        _ => Value::Str(s.to_string()),
    }
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

/// Parses one YAML document. An empty document is `Null`.
///
/// # Errors
/// The first syntax error, a duplicate key, a non-string key, an unknown alias,
/// or more than one document.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError { pos: pos_of(e.marker()), message: e.info().to_string() })?;
        let pos = pos_of(&span.start);
        let complete = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        pos,
                        message: "a pipeline file holds one YAML document; remove the second `---`".into(),
                    });
                }
                continue;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(pos, anchor, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(pos, anchor, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, anchor, items)) => (Node { pos: p, value: Value::Seq(items) }, anchor),
                _ => return Err(SyntaxError { pos, message: "unbalanced sequence".into() }),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, anchor, entries, _)) => (Node { pos: p, value: Value::Map(entries) }, anchor),
                _ => return Err(SyntaxError { pos, message: "unbalanced mapping".into() }),
            },
            Event::Scalar(s, style, anchor, tag) => {
                let value = if style == ScalarStyle::Plain && tag.is_none() {
                    resolve_plain(&s)
                } else {
                    Value::Str(s.to_string())
                };
                (Node { pos, value }, anchor)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => (Node { pos, value: n.value.clone() }, 0),
                None => return Err(SyntaxError { pos, message: "alias to an unknown anchor".into() }),
            },
        };
        let (node, anchor) = complete;
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    let Value::Str(k) = &node.value else {
                        let k = match &node.value {
                            Value::Int(i) => i.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => {
                                return Err(SyntaxError {
                                    pos: node.pos,
                                    message: format!("mapping keys must be strings, found {}", node.kind()),
                                })
                            }
                        };
                        *pending = Some(Node { pos: node.pos, value: Value::Str(k) });
                        continue;
                    };
                    if entries.iter().any(|(kn, _)| kn.as_str() == Some(k)) {
                        return Err(SyntaxError { pos: node.pos, message: format!("duplicate key `{k}`") });
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(root.unwrap_or(Node { pos: Pos { line: 1, col: 1 }, value: Value::Null }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_scalars() {
        let n = parse("a: 1\nb:\n  - x\n  - 2.5\n  - true\nc: 'no'\nd: ~\n").unwrap();
        let m = n.as_map().unwrap();
        assert_eq!(m[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(m[0].1.value, Value::Int(1));
        let Value::Seq(items) = &m[1].1.value else { panic!() };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
        assert_eq!(items[1].value, Value::Float(2.5));
        assert_eq!(items[2].value, Value::Bool(true));
        assert_eq!(m[2].1.value, Value::Str("no".into()));
        assert_eq!(m[3].1.value, Value::Null);
        assert_eq!(n.to_json(), serde_json::json!({"a": 1, "b": ["x", 2.5, true], "c": "no", "d": null}));
    }

    #[test]
    fn locate_finds_keys_and_items() {
        let n = parse("stages:\n  s:\n    inputs: [a, b]\n    bogus: 1\n").unwrap();
        let path = |v: &[&str]| -> Vec<PathSeg> { v.iter().map(|s| PathSeg::Key(s.to_string())).collect() };
        let mut p = path(&["stages", "s", "inputs"]);
        p.push(PathSeg::Index(1));
        assert_eq!(n.locate(&p, false), Pos { line: 3, col: 17 });
        assert_eq!(n.locate(&path(&["stages", "s", "bogus"]), true), Pos { line: 4, col: 5 });
        assert_eq!(format_path(&p), "stages.s.inputs[1]");
    }

    #[test]
    fn errors_carry_positions() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 1 });
        assert!(e.message.contains("duplicate key `a`"));
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("one YAML document"));
    }

    #[test]
    fn anchors_are_copied() {
        let n = parse("x: &v [1]\ny: *v\n").unwrap();
        assert_eq!(n.to_json(), serde_json::json!({"x": [1], "y": [1]}));
    }
}
