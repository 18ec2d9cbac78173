//! The field table (`fields.txt`): which message each served kind is, and
//! each message's fields by number.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message,
    /// map<string, V>: entries are messages with key 1 and value 2.
    Map(Box<Kind>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    Optional,
    Repeated,
    Map,
    /// An embedded Go struct (`json:",inline"`): a message on the wire,
    /// its fields in the parent's JSON object.
    Inline,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub tag: u32,
    pub json: String,
    pub kind: Kind,
    pub label: Label,
    /// The message type of message fields and map values.
    pub message: Option<String>,
}

struct Table {
    kinds: HashMap<(String, String), String>,
    messages: HashMap<String, Vec<Field>>,
}

fn kind_of(s: &str) -> Kind {
    match s {
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        "bool" => Kind::Bool,
        "int32" => Kind::Int32,
        "int64" => Kind::Int64,
        "double" => Kind::Double,
        "message" => Kind::Message,
        other => match other.strip_prefix("map_") {
            Some(v) => Kind::Map(Box::new(kind_of(v))),
            None => panic!("fields.txt: unknown kind {other}"),
        },
    }
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Table {
            kinds: HashMap::new(),
            messages: HashMap::new(),
        };
        let mut cur = String::new();
        for line in include_str!("fields.txt").lines() {
            let p: Vec<&str> = line.split(' ').collect();
            match p.as_slice() {
                ["K", av, kind, msg] => {
                    t.kinds
                        .insert((av.to_string(), kind.to_string()), msg.to_string());
                }
                ["M", msg] => {
                    cur = msg.to_string();
                    t.messages.entry(cur.clone()).or_default();
                }
                ["F", tag, json, kind, label, rest @ ..] => {
                    let f = Field {
                        tag: tag.parse().expect("fields.txt: tag"),
                        json: json.to_string(),
                        kind: kind_of(kind),
                        label: match *label {
                            "repeated" => Label::Repeated,
                            "map" => Label::Map,
                            "inline" => Label::Inline,
                            _ => Label::Optional,
                        },
                        message: rest.first().map(|m| m.to_string()),
                    };
                    t.messages.entry(cur.clone()).or_default().push(f);
                }
                _ => {}
            }
        }
        t
    })
}

/// The message of a kind (or of its List) in an API version.
pub fn message_for(api_version: &str, kind: &str) -> Option<&'static str> {
    let t = table();
    if let Some(m) = t.kinds.get(&(api_version.to_string(), kind.to_string())) {
        return Some(m.as_str());
    }
    let item = kind.strip_suffix("List")?;
    let m = t.kinds.get(&(api_version.to_string(), item.to_string()))?;
    let list = format!("{m}List");
    t.messages.get_key_value(&list).map(|(k, _)| k.as_str())
}

pub fn fields(msg: &str) -> &'static [Field] {
    table().messages.get(msg).map(Vec::as_slice).unwrap_or(&[])
}
