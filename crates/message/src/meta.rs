//! A message's metadata: the few policy-set values (`tenant`, `campaign`,
//! `egress_pool`, …) every queued message carries. Kept as a small vector
//! of pairs rather than a map: a message has a handful of keys, and a
//! B-tree's smallest node (sized for eleven entries) was the largest part
//! of a queued message's memory. Serialized as a JSON object, like a map.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Policy-set values, in the order they were first set.
#[derive(Debug, Clone, Default)]
pub struct Meta(Vec<(String, Value)>);

/// Equal when the same keys hold the same values, in any order (as maps).
impl PartialEq for Meta {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Meta {
    /// No values.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Set `key`, replacing its value if it has one.
    pub fn insert(&mut self, key: String, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => {
                // Grow by one: the usual doubling would reserve room for
                // four pairs on the first key, in every queued message.
                self.0.reserve_exact(1);
                self.0.push((key, value));
            }
        }
    }

    /// Keep only the pairs `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &Value) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    /// Every pair.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<serde_json::Map<String, Value>> for Meta {
    fn from(map: serde_json::Map<String, Value>) -> Self {
        let mut pairs: Vec<(String, Value)> = map.into_iter().collect();
        pairs.shrink_to_fit();
        Self(pairs)
    }
}

impl From<Meta> for serde_json::Map<String, Value> {
    fn from(meta: Meta) -> Self {
        meta.0.into_iter().collect()
    }
}

impl Serialize for Meta {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Map::deserialize(deserializer).map(Meta::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_and_serializes_as_an_object() {
        let mut meta = Meta::new();
        meta.insert("tenant".into(), "acme".into());
        meta.insert("campaign".into(), "spring".into());
        meta.insert("tenant".into(), "globex".into());
        assert_eq!(meta.len(), 2);
        assert_eq!(meta.get("tenant"), Some(&Value::from("globex")));
        assert!(meta.contains_key("campaign") && !meta.contains_key("queue"));
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(json, r#"{"tenant":"globex","campaign":"spring"}"#);
        let back: Meta = serde_json::from_str(&json).unwrap();
        assert_eq!(back.get("campaign"), meta.get("campaign"));
        let mut reordered = Meta::new();
        reordered.insert("campaign".into(), "spring".into());
        reordered.insert("tenant".into(), "globex".into());
        assert_eq!(meta, reordered, "equality ignores order, as a map's does");
        meta.retain(|k, _| k == "campaign");
        assert_eq!(meta.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["campaign"]);
    }
}
