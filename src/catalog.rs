//! The catalog: what may be collected, as data.
//!
//! A catalog lists products; for each product its attributes (with the only
//! values that are stored), its counters (with an upper bound) and its boolean
//! features. Anything not in the catalog is never stored. passbolt's catalog
//! is built in; `--catalog FILE` replaces it. The catalog is served as-is at
//! `GET /api/v1/catalog`, so that anyone can see exactly what is collected.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// passbolt's catalog, used when no `--catalog` is given.
pub const BUILTIN_CATALOG: &str = include_str!("../catalog/passbolt.json");

/// The value stored for an attribute value that the catalog does not list.
pub const OTHER: &str = "other";

/// The attribute, when a product has it, that daily event counts are split by.
pub const EDITION_ATTRIBUTE: &str = "edition";

/// A whole catalog file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Version of the catalog file format; only `1` exists.
    pub format: u32,
    /// Products by name.
    pub products: BTreeMap<String, Product>,
}

/// What may be collected from one product.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, Attribute>,
    #[serde(default)]
    pub counters: BTreeMap<String, Counter>,
    #[serde(default)]
    pub features: BTreeMap<String, Feature>,
}

/// A categorical attribute: only the listed values are stored, anything else
/// becomes `other`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribute {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub values: Vec<String>,
}

/// A non-negative count with an upper bound; larger values are rejected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub max: i64,
}

/// A boolean feature switch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Why a catalog file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("catalog is not valid JSON of the documented shape: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("catalog is invalid: {0}")]
    Invalid(String),
}

impl Catalog {
    /// The built-in passbolt catalog.
    pub fn builtin() -> Catalog {
        Catalog::from_json(BUILTIN_CATALOG).expect("the built-in catalog is valid")
    }

    /// Reads and checks a catalog file.
    pub fn from_file(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Catalog::from_json(&text)
    }

    /// Parses and checks a catalog from JSON text.
    pub fn from_json(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = serde_json::from_str(text)?;
        catalog.check()?;
        Ok(catalog)
    }

    /// The product named `name`, if the catalog has it.
    pub fn product(&self, name: &str) -> Option<&Product> {
        self.products.get(name)
    }

    /// The product used when a query names none: the only one, or the first
    /// in name order.
    pub fn default_product(&self) -> Option<&str> {
        self.products.keys().next().map(String::as_str)
    }

    /// Every name and value must be a short identifier, so that nothing the
    /// catalog allows can carry free text into the database.
    fn check(&self) -> Result<(), CatalogError> {
        if self.format != 1 {
            return Err(CatalogError::Invalid(format!(
                "unsupported format {}, expected 1",
                self.format
            )));
        }
        if self.products.is_empty() {
            return Err(CatalogError::Invalid("no product".into()));
        }
        for (pname, product) in &self.products {
            check_name("product", pname)?;
            for (name, attr) in &product.attributes {
                check_name("attribute", name)?;
                if attr.values.is_empty() {
                    return Err(CatalogError::Invalid(format!(
                        "attribute {pname}.{name} lists no value"
                    )));
                }
                for v in &attr.values {
                    if !is_catalog_value(v) || v == OTHER {
                        return Err(CatalogError::Invalid(format!(
                            "attribute {pname}.{name}: value {v:?} must be 1-32 characters of a-z, 0-9, '.', '_' or '-', and not {OTHER:?}"
                        )));
                    }
                }
            }
            for (name, counter) in &product.counters {
                check_name("counter", name)?;
                if counter.max < 0 {
                    return Err(CatalogError::Invalid(format!(
                        "counter {pname}.{name}: max must not be negative"
                    )));
                }
            }
            for name in product.features.keys() {
                check_name("feature", name)?;
            }
        }
        Ok(())
    }
}

fn check_name(what: &str, name: &str) -> Result<(), CatalogError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CatalogError::Invalid(format!(
            "{what} name {name:?} must be 1-32 characters of a-z, 0-9 and '_', starting with a letter"
        )))
    }
}

fn is_catalog_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_valid_and_has_passbolt() {
        let c = Catalog::builtin();
        let p = c.product("passbolt").unwrap();
        assert!(p.attributes.contains_key("edition"));
        assert!(p.counters.contains_key("users"));
        assert_eq!(c.default_product(), Some("passbolt"));
    }

    #[test]
    fn refuses_values_that_could_carry_free_text() {
        let bad =
            r#"{"format":1,"products":{"p":{"attributes":{"a":{"values":["Hello World"]}}}}}"#;
        assert!(matches!(
            Catalog::from_json(bad),
            Err(CatalogError::Invalid(_))
        ));
        let other = r#"{"format":1,"products":{"p":{"attributes":{"a":{"values":["other"]}}}}}"#;
        assert!(Catalog::from_json(other).is_err());
        let unknown = r#"{"format":1,"products":{"p":{"colour":"red"}}}"#;
        assert!(matches!(
            Catalog::from_json(unknown),
            Err(CatalogError::Parse(_))
        ));
    }
}
