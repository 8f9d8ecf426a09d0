//! The bounce classifier: rules files in KumoMTA's format (`[rules]`, each
//! key a classification label, each value a list of regular expressions)
//! matched against a reply written as one line, `code enhanced text`
//! (`550 5.1.1 user unknown`). The first rule that matches, in file and
//! list order, names the class; nothing matching is `Uncategorized`.

use crate::record::ResponseInfo;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The label of a reply no rule matches (KumoMTA's).
pub const UNCATEGORIZED: &str = "Uncategorized";

/// The rules Petrel ships, by the name a policy gives them in `files`.
const SHIPPED: [(&str, &str); 1] =
    [("[petrel]/bounce_classifier/default.toml", include_str!("../../../policy/bounce_classifier/default.toml"))];

/// KumoMTA's packaged rules path; when no such file exists, Petrel's own
/// rules stand in, so a KumoMTA policy naming it classifies unmodified.
const KUMOMTA_IANA: &str = "/opt/kumomta/share/bounce_classifier/iana.toml";

/// Why a classifier could not be built (permanent: the files are wrong).
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// A rules file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// What reading said.
        source: std::io::Error,
    },
    /// A rules file is not TOML of the expected shape.
    #[error("{file}: {detail}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong, naming the key.
        detail: String,
    },
    /// A rule is not a valid regular expression.
    #[error("{file}: rules.{label}: {detail}")]
    Regex {
        /// The file.
        file: String,
        /// The classification whose rule is bad.
        label: String,
        /// What the regex compiler said.
        detail: String,
    },
    /// `files` is empty.
    #[error("configure_bounce_classifier needs at least one rules file")]
    NoFiles,
}

/// Compiled rules plus caches of recent verdicts (replies repeat a lot).
/// Replies no rule matches are cached apart, so a flood of odd replies
/// cannot push the classified ones out.
pub struct BounceClassifier {
    set: regex::RegexSet,
    labels: Vec<Arc<str>>,
    cache: Mutex<lru::LruCache<String, Arc<str>>>,
    uncategorized: Mutex<lru::LruCache<String, ()>>,
    files: Vec<String>,
}

/// Sizes of the verdict caches (KumoMTA's `cache_size` and
/// `uncategorized_cache_size`, 1024 each by default).
#[derive(Debug, Clone, Copy)]
pub struct CacheSizes {
    /// Replies with a classification.
    pub classified: usize,
    /// Replies no rule matched.
    pub uncategorized: usize,
}

impl Default for CacheSizes {
    fn default() -> Self {
        Self { classified: 1024, uncategorized: 1024 }
    }
}

fn lru_of<V>(size: usize) -> Mutex<lru::LruCache<String, V>> {
    Mutex::new(lru::LruCache::new(NonZeroUsize::new(size.max(1)).expect("at least one")))
}

impl std::fmt::Debug for BounceClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BounceClassifier").field("files", &self.files).field("rules", &self.labels.len()).finish()
    }
}

/// The text of a rules file named in `files`: the shipped rules by their
/// `[petrel]/…` name, KumoMTA's packaged path when it is absent, else disk.
fn read_rules(name: &str) -> Result<(String, String), ClassifierError> {
    if let Some((_, text)) = SHIPPED.iter().find(|(n, _)| *n == name) {
        return Ok((name.to_string(), text.to_string()));
    }
    if name == KUMOMTA_IANA && !Path::new(name).exists() {
        return Ok((SHIPPED[0].0.to_string(), SHIPPED[0].1.to_string()));
    }
    let text =
        std::fs::read_to_string(name).map_err(|source| ClassifierError::Read { file: PathBuf::from(name), source })?;
    Ok((name.to_string(), text))
}

impl BounceClassifier {
    /// Compile the rules of `files`, in order.
    pub fn load(files: &[String], caches: CacheSizes) -> Result<Self, ClassifierError> {
        if files.is_empty() {
            return Err(ClassifierError::NoFiles);
        }
        let mut patterns = Vec::new();
        let mut labels = Vec::new();
        for name in files {
            let (file, text) = read_rules(name)?;
            for (label, rules) in rules_of(&file, &text)? {
                let label: Arc<str> = Arc::from(label.as_str());
                for rule in rules {
                    regex::Regex::new(&rule).map_err(|e| ClassifierError::Regex {
                        file: file.clone(),
                        label: label.to_string(),
                        detail: e.to_string(),
                    })?;
                    patterns.push(rule);
                    labels.push(label.clone());
                }
            }
        }
        let set = regex::RegexSet::new(&patterns)
            .map_err(|e| ClassifierError::Format { file: files.join(", "), detail: e.to_string() })?;
        Ok(Self {
            set,
            labels,
            cache: lru_of(caches.classified),
            uncategorized: lru_of(caches.uncategorized),
            files: files.to_vec(),
        })
    }

    /// The files this classifier was built from.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The classification of `response`.
    pub fn classify(&self, response: &ResponseInfo) -> Arc<str> {
        let line = single_line(response);
        if let Some(hit) = self.cache.lock().get(&line) {
            return hit.clone();
        }
        if self.uncategorized.lock().get(&line).is_some() {
            return Arc::from(UNCATEGORIZED);
        }
        match self.set.matches(&line).iter().next() {
            Some(index) => {
                let label = self.labels[index].clone();
                self.cache.lock().put(line, label.clone());
                label
            }
            None => {
                self.uncategorized.lock().put(line, ());
                Arc::from(UNCATEGORIZED)
            }
        }
    }
}

/// `(label, regexes)` of one file, in the file's order (the first rule
/// that matches wins, so order is meaning).
fn rules_of(file: &str, text: &str) -> Result<Vec<(String, Vec<String>)>, ClassifierError> {
    let format = |detail: String| ClassifierError::Format { file: file.to_string(), detail };
    let table: toml::Table = toml::from_str(text).map_err(|e| format(e.to_string()))?;
    if let Some(key) = table.keys().find(|k| *k != "rules") {
        return Err(format(format!("unknown table or key `{key}` (only [rules] is read)")));
    }
    let Some(toml::Value::Table(rules)) = table.get("rules") else {
        return Err(format("no [rules] table".to_string()));
    };
    let mut out = Vec::new();
    for (label, value) in rules {
        let list = value.as_array().ok_or_else(|| format(format!("rules.{label} must be a list of regexes")))?;
        let patterns = list
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| format(format!("rules.{label}: every rule is a string")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((label.clone(), patterns));
    }
    Ok(out)
}

/// A reply as the rules see it: `code enhanced text` on one line.
pub fn single_line(response: &ResponseInfo) -> String {
    let text = response.content.replace(['\r', '\n'], " ");
    match &response.enhanced_code {
        Some(enhanced) => format!("{} {enhanced} {text}", response.code),
        None => format!("{} {text}", response.code),
    }
}
