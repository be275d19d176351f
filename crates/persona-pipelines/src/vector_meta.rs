//! What a vector file says about itself: the `persona.*` metadata keys of trait, role and axis
//! files (docs/formats.md), written and read through one type.

use std::collections::BTreeMap;

/// The `persona.*` metadata of a vector file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorMeta {
    /// `trait`, `role`, `default` or `axis`.
    pub kind: String,
    pub name: String,
    /// Where the vectors were read: `resid_post`.
    pub hook_point: String,
    /// The reading (`response_avg`, …) or how an axis was made.
    pub method: String,
    /// The model's id (`Engine::model_id`).
    pub model: String,
    pub n_pos: usize,
    pub n_neg: Option<usize>,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

const PREFIX: &str = "persona.";

impl VectorMeta {
    /// Metadata for vectors read at `resid_post` now.
    pub fn new(kind: &str, name: &str, method: &str, model: &str, n_pos: usize) -> Self {
        VectorMeta {
            kind: kind.into(),
            name: name.into(),
            hook_point: "resid_post".into(),
            method: method.into(),
            model: model.into(),
            n_pos,
            n_neg: None,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    pub fn with_n_neg(mut self, n: usize) -> Self {
        self.n_neg = Some(n);
        self
    }

    /// The `persona.*` keys of this metadata.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            m.insert(format!("{PREFIX}{key}"), value);
        };
        put("kind", self.kind.clone());
        put("name", self.name.clone());
        put("hook_point", self.hook_point.clone());
        put("method", self.method.clone());
        put("model", self.model.clone());
        put("n_pos", self.n_pos.to_string());
        if let Some(n) = self.n_neg {
            put("n_neg", n.to_string());
        }
        put("created", self.created.to_string());
        m
    }

    /// Reads the `persona.*` keys back; `None` when the file was not written by persona (a
    /// GGUF control vector, an imported file) or a key is missing or malformed.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Option<Self> {
        let get = |key: &str| metadata.get(&format!("{PREFIX}{key}")).cloned();
        Some(VectorMeta {
            kind: get("kind")?,
            name: get("name")?,
            hook_point: get("hook_point")?,
            method: get("method")?,
            model: get("model")?,
            n_pos: get("n_pos")?.parse().ok()?,
            n_neg: match get("n_neg") {
                Some(n) => Some(n.parse().ok()?),
                None => None,
            },
            created: get("created")?.parse().ok()?,
        })
    }

    /// Vectors at layers 0.. carrying this metadata, ready to save.
    pub fn vectors(
        &self,
        per_layer: impl IntoIterator<Item = Vec<f32>>,
    ) -> persona_io::LayerVectors {
        persona_io::LayerVectors {
            layers: per_layer.into_iter().enumerate().collect(),
            metadata: self.to_metadata(),
        }
    }
}

/// The kind a vector file declares (`persona.kind`), if any.
pub fn declared_kind(vectors: &persona_io::LayerVectors) -> Option<&str> {
    vectors
        .metadata
        .get(&format!("{PREFIX}kind"))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_foreign_files_read_as_none() {
        let m = VectorMeta::new(
            "trait",
            "optimistic",
            "response_avg",
            "smollm2 sha256:ab",
            40,
        )
        .with_n_neg(38);
        let keys = m.to_metadata();
        assert_eq!(keys["persona.kind"], "trait");
        assert_eq!(keys["persona.n_neg"], "38");
        assert_eq!(VectorMeta::from_metadata(&keys), Some(m.clone()));
        let role = VectorMeta::new("role", "pirate", "response_avg", "m", 5);
        assert_eq!(
            VectorMeta::from_metadata(&role.to_metadata())
                .unwrap()
                .n_neg,
            None
        );
        let mut broken = keys.clone();
        broken.insert("persona.n_pos".into(), "many".into());
        assert_eq!(VectorMeta::from_metadata(&broken), None);
        assert_eq!(VectorMeta::from_metadata(&BTreeMap::new()), None);
        let v = m.vectors([vec![1.0, 2.0]]);
        assert_eq!(declared_kind(&v), Some("trait"));
    }
}
