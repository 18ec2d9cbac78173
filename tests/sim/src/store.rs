//! The object store: one global resourceVersion counter, the current objects,
//! a bounded change log that watches replay from, and every stored version of
//! every object (for tests to inspect).

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct LogEntry {
    pub rv: u64,
    pub gr: String,
    pub etype: EventType,
    pub obj: Arc<Value>,
    /// The version before this change, so selector-filtered watches can turn
    /// "no longer matches" into DELETED like the real watch cache does.
    pub prev: Option<Arc<Value>>,
}

pub type Key = (String, String);

#[derive(Debug)]
pub struct Store {
    pub rv: u64,
    pub objects: HashMap<String, BTreeMap<Key, Arc<Value>>>,
    pub log: VecDeque<Arc<LogEntry>>,
    pub log_cap: usize,
    pub history: HashMap<(String, String, String), Vec<Arc<Value>>>,
    pub keep_history: bool,
}

impl Store {
    pub fn new(log_cap: usize, keep_history: bool) -> Self {
        Store {
            rv: 1,
            objects: HashMap::new(),
            log: VecDeque::new(),
            log_cap: log_cap.max(1),
            history: HashMap::new(),
            keep_history,
        }
    }

    pub fn get(&self, gr: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(gr)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource, sorted by (namespace, name); `ns` empty = all.
    pub fn list(&self, gr: &str, ns: &str) -> Vec<Arc<Value>> {
        let Some(m) = self.objects.get(gr) else {
            return vec![];
        };
        if ns.is_empty() {
            m.values().cloned().collect()
        } else {
            m.range((ns.to_string(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
                .map(|(_, v)| v.clone())
                .collect()
        }
    }

    /// The oldest version a watch can start from without missing events.
    pub fn oldest_watchable(&self) -> u64 {
        match self.log.front() {
            Some(e) => e.rv - 1,
            None => self.rv,
        }
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, gr: &str, etype: EventType, obj: Arc<Value>, prev: Option<Arc<Value>>) {
        if self.keep_history {
            let key = (
                gr.to_string(),
                crate::util::ns_of(&obj).to_string(),
                crate::util::name_of(&obj).to_string(),
            );
            self.history.entry(key).or_default().push(obj.clone());
        }
        self.log.push_back(Arc::new(LogEntry {
            rv: self.rv,
            gr: gr.to_string(),
            etype,
            obj,
            prev,
        }));
        while self.log.len() > self.log_cap {
            self.log.pop_front();
        }
    }

    /// Store a new or changed object, stamping the next resourceVersion.
    pub fn put(&mut self, gr: &str, mut obj: Value) -> Arc<Value> {
        let rv = self.bump();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (
            crate::util::ns_of(&obj).to_string(),
            crate::util::name_of(&obj).to_string(),
        );
        let obj = Arc::new(obj);
        let prev = self
            .objects
            .entry(gr.to_string())
            .or_default()
            .insert(key, obj.clone());
        let et = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(gr, et, obj.clone(), prev);
        obj
    }

    /// Remove an object; the DELETED event carries a fresh resourceVersion.
    pub fn remove(&mut self, gr: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let prev = self
            .objects
            .get_mut(gr)?
            .remove(&(ns.to_string(), name.to_string()))?;
        let rv = self.bump();
        let mut last = (*prev).clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        let last = Arc::new(last);
        self.record(gr, EventType::Deleted, last.clone(), Some(prev));
        Some(last)
    }

    /// Log entries after `rv` (callers check `oldest_watchable` first).
    pub fn since(&self, rv: u64) -> Vec<Arc<LogEntry>> {
        let idx = self.log.partition_point(|e| e.rv <= rv);
        self.log.range(idx..).cloned().collect()
    }
}
