//! Anonymisation: the step after validation and before anything is queued
//! for storage. It keeps the UTC day only, replaces identifiers by keyed
//! hashes, and drops everything else about the request. Nothing downstream of
//! this module ever sees an address, a user agent or a clear identifier.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::catalog::EDITION_ATTRIBUTE;
use crate::validation::{Event, Report, Source};

/// Length in bytes of a generated secret.
pub const SECRET_LEN: usize = 32;
/// Shortest secret accepted from configuration.
pub const MIN_SECRET_CHARS: usize = 32;

/// Defines a pseudonym: the 32 bytes of a keyed hash. Only the
/// [`Pseudonymizer`] makes one from an identifier, and the store decodes
/// the ones it wrote, so that nothing else (a clear id, a hash of another
/// kind) can be stored where a pseudonym belongs.
macro_rules! pseudonym {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The bytes as stored.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// A pseudonym the store wrote, read back; `None` unless it is
            /// 32 bytes long.
            pub(crate) fn from_stored(bytes: &[u8]) -> Option<$name> {
                bytes.try_into().ok().map($name)
            }

            /// Any bytes, for tests that need distinct pseudonyms.
            #[cfg(test)]
            pub(crate) fn from_bytes(bytes: [u8; 32]) -> $name {
                $name(bytes)
            }
        }

        impl std::ops::Deref for $name {
            type Target = [u8; 32];
            fn deref(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
    };
}

pseudonym!(
    /// The stored pseudonym of an install ([`Pseudonymizer::instance_hash`]).
    InstanceHash
);

pseudonym!(
    /// The dedupe key of a report id ([`Pseudonymizer::report_hash`]).
    ReportHash
);

/// Computes keyed hashes (HMAC-SHA256) of identifiers with the server secret.
/// Without the secret a hash cannot be linked back to an id, even by trying
/// every id one knows.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// HMAC state with the key already absorbed: each hash starts from a
    /// copy instead of hashing the key pads again.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<secret>)")
    }
}

impl Pseudonymizer {
    /// A pseudonymizer keyed with `secret`.
    pub fn new(secret: &[u8]) -> Pseudonymizer {
        Pseudonymizer {
            keyed: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }

    fn hash(&self, domain: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(domain.as_bytes());
        for p in parts {
            mac.update(&[0]);
            mac.update(p.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// The stored pseudonym of an instance. The product is part of the input
    /// so that one id reused by two products gives two unrelated pseudonyms.
    pub fn instance_hash(&self, product: &str, instance_id: &Uuid) -> InstanceHash {
        let id = instance_id.hyphenated().to_string();
        InstanceHash(self.hash("anonstats/instance/v1", &[product, &id]))
    }

    /// A keyed fingerprint of the secret itself, hex-encoded: stored to
    /// recognise later whether a process uses the same secret, without
    /// storing the secret. HMAC is a pseudo-random function: the value says
    /// nothing about the key to someone who does not already have it.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.hash("anonstats/secret-fingerprint/v1", &[]))
    }

    /// The dedupe key of a report id.
    pub fn report_hash(&self, report_id: &Uuid) -> ReportHash {
        let id = report_id.hyphenated().to_string();
        ReportHash(self.hash("anonstats/report/v1", &[&id]))
    }
}

/// Generates a fresh random secret, hex-encoded.
pub fn generate_secret() -> String {
    let bytes: [u8; SECRET_LEN] = rand::random();
    hex::encode(bytes)
}

/// The part of an instance's state that is stored, as canonical JSON built
/// from catalog names and values only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub counters: BTreeMap<String, i64>,
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
}

/// An anonymised report, ready for the writer.
#[derive(Debug, Clone)]
pub struct Record {
    /// UTC day the report was received: the only time stored.
    pub day: NaiveDate,
    pub product: String,
    pub event: Event,
    pub version: String,
    pub previous_version: Option<String>,
    /// The `edition` attribute, which event counts are split by.
    pub edition: Option<String>,
    /// Legacy passbolt reports say `install` even after an update; the
    /// writer recognises updates from the stored version.
    pub infer_update: bool,
    pub report_hash: Option<ReportHash>,
    /// Present only when the report had an `instance_id`.
    pub instance: Option<InstanceRecord>,
}

/// The pseudonymous state an instance reported.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub hash: InstanceHash,
    pub state: InstanceState,
}

/// Turns a validated report into what may be stored. Attributes, counters
/// and features of a report without `instance_id` are dropped: with no
/// instance to attach them to they could only be counted twice.
pub fn anonymize(report: Report, pseudonymizer: &Pseudonymizer, day: NaiveDate) -> Record {
    let edition = report.attributes.get(EDITION_ATTRIBUTE).cloned();
    let instance = report.instance_id.map(|id| InstanceRecord {
        hash: pseudonymizer.instance_hash(&report.product, &id),
        state: InstanceState {
            attributes: report.attributes,
            counters: report.counters,
            features: report.features,
        },
    });
    Record {
        day,
        product: report.product,
        event: report.event,
        version: report.version,
        previous_version: report.previous_version,
        edition,
        infer_update: report.source == Source::LegacyPassbolt && report.event == Event::Install,
        report_hash: report.report_id.map(|id| pseudonymizer.report_hash(&id)),
        instance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_secret_product_and_case_insensitive_id() {
        let a = Pseudonymizer::new(b"0123456789abcdef0123456789abcdef");
        let b = Pseudonymizer::new(b"fedcba9876543210fedcba9876543210");
        let id = Uuid::parse_str("D3B1A0F2-5C4E-4B7A-9F1E-2A6C8D9E0F11").unwrap();
        let lower = Uuid::parse_str("d3b1a0f2-5c4e-4b7a-9f1e-2a6c8d9e0f11").unwrap();
        assert_eq!(
            a.instance_hash("passbolt", &id),
            a.instance_hash("passbolt", &lower)
        );
        assert_ne!(
            a.instance_hash("passbolt", &id),
            b.instance_hash("passbolt", &id)
        );
        assert_ne!(
            a.instance_hash("passbolt", &id),
            a.instance_hash("other", &id)
        );
        assert_ne!(
            a.instance_hash("passbolt", &id).as_bytes(),
            a.report_hash(&id).as_bytes()
        );
    }

    #[test]
    fn fingerprints_tell_secrets_apart_without_showing_them() {
        let secret = "0123456789abcdef0123456789abcdef";
        let a = Pseudonymizer::new(secret.as_bytes()).fingerprint();
        assert_eq!(a, Pseudonymizer::new(secret.as_bytes()).fingerprint());
        assert_ne!(
            a,
            Pseudonymizer::new(b"fedcba9876543210fedcba9876543210").fingerprint()
        );
        assert_eq!(a.len(), 64);
        assert!(!a.contains(secret) && !a.contains(&hex::encode(secret)));
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let s = generate_secret();
        assert_eq!(s.len(), 2 * SECRET_LEN);
        assert_ne!(s, generate_secret());
    }
}
