//! The pseudonymisation secret of a database: which one its pseudonyms were
//! made with, refusing to change it silently, and rotating it on purpose.
//!
//! Every pseudonym (instance hash, dedupe key) is an HMAC under the secret,
//! so a process using another secret than the one a database's pseudonyms
//! were made with counts every install again, as a new one, until the old
//! snapshots age out. The database therefore records which secret is in
//! use: the generated secret itself (`settings.pseudonym_secret`), or a
//! keyed fingerprint of `ANONSTATS_SECRET` (`pseudonym_secret_fingerprint`,
//! never the secret). [`load`] refuses a process whose secret differs from
//! that record; [`rotate`] (`anonstats rotate-secret`) changes the record
//! and deletes what the old secret keyed, following docs/retention.md.

use anyhow::Context;
use subtle::ConstantTimeEq;

use crate::anonymize::{self, Pseudonymizer, MIN_SECRET_CHARS};
use crate::db::DbConn;
use crate::store::{self, Pseudonyms, FINGERPRINT_SETTING, SECRET_SETTING};

/// What `rotate-secret` does, as every refusal says it.
const ROTATION: &str = "which deletes the instance snapshots, their aggregates and the dedupe \
keys, keeps the daily event counts, and replaces the stored secret or fingerprint \
(see docs/retention.md)";

/// Why a secret was refused. A refusal changes nothing in the database.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `ANONSTATS_SECRET` is too short to be a key.
    #[error("ANONSTATS_SECRET must be at least {MIN_SECRET_CHARS} characters")]
    TooShort,
    /// `ANONSTATS_SECRET` is set, but the database's pseudonyms were made
    /// with the generated secret it keeps.
    #[error(
        "ANONSTATS_SECRET is set, but this database's pseudonyms are made with the secret \
         generated on its first start and kept in its settings table: using ANONSTATS_SECRET \
         would silently change every pseudonym and count every install twice. Either unset \
         ANONSTATS_SECRET to keep the stored secret, or, to move to ANONSTATS_SECRET, stop \
         every collector using this database and run `anonstats rotate-secret --yes` with it \
         set, {ROTATION}."
    )]
    GeneratedInUse,
    /// `ANONSTATS_SECRET` differs from the one the database's pseudonyms
    /// were made with.
    #[error(
        "ANONSTATS_SECRET is not the secret this database's pseudonyms are made with (its \
         fingerprint differs from the one recorded in the settings table): using it would \
         silently change every pseudonym and count every install twice. Either set \
         ANONSTATS_SECRET back to the previous value, or, to move to the new one, stop every \
         collector using this database and run `anonstats rotate-secret --yes` with it set, \
         {ROTATION}."
    )]
    ConfiguredChanged,
    /// The database's pseudonyms were made with `ANONSTATS_SECRET`, which
    /// is not set.
    #[error(
        "ANONSTATS_SECRET is not set, but this database's pseudonyms are made with it (its \
         settings table records its fingerprint): starting without it would generate a new \
         secret and silently change every pseudonym. Either set ANONSTATS_SECRET to the value \
         in use, or, to move to a generated secret, stop every collector using this database \
         and run `anonstats rotate-secret --yes` without it, {ROTATION}."
    )]
    ConfiguredMissing,
    /// The database holds pseudonyms but records no secret: they were made
    /// with an `ANONSTATS_SECRET` before fingerprints were recorded.
    #[error(
        "ANONSTATS_SECRET is not set, and this database holds pseudonyms but no generated \
         secret, so they were made with an ANONSTATS_SECRET: starting without it would \
         generate a new secret and silently change every pseudonym. Either set \
         ANONSTATS_SECRET to the value in use, or, to move to a generated secret, stop every \
         collector using this database and run `anonstats rotate-secret --yes` without it, \
         {ROTATION}."
    )]
    Unrecorded,
    /// `rotate-secret` was asked to move to the secret already in use.
    #[error(
        "ANONSTATS_SECRET is already the secret this database's pseudonyms were made with: \
         nothing to rotate (set a new ANONSTATS_SECRET to rotate to it, or unset it to move \
         to a generated secret)"
    )]
    AlreadyInUse,
    #[error("cannot read or store the pseudonymisation secret: {0}")]
    Database(#[from] diesel::result::Error),
}

/// The secret a process will use.
pub struct Loaded {
    pub pseudonymizer: Pseudonymizer,
    /// A secret was generated and stored by this call (the database had
    /// none), so that the caller can say so once.
    pub generated: bool,
}

/// Which kind of secret a database's pseudonyms are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Generated and kept in the database.
    Generated,
    /// `ANONSTATS_SECRET`, of which only a fingerprint is kept.
    Configured,
    /// Nothing recorded (a new database, or one from before fingerprints).
    Unrecorded,
}

fn check_length(secret: &str) -> Result<(), SecretError> {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(SecretError::TooShort);
    }
    Ok(())
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The pseudonymiser of `configured` (`ANONSTATS_SECRET`) or of the
/// database's generated secret (generated now on a new database), after
/// checking that it is the secret the stored pseudonyms were made with.
/// Records the fingerprint of `configured` on first use.
pub fn load(conn: &mut DbConn, configured: Option<&str>) -> Result<Loaded, SecretError> {
    let stored = store::get_setting(conn, SECRET_SETTING)?;
    let recorded = store::get_setting(conn, FINGERPRINT_SETTING)?;
    match configured {
        Some(secret) => {
            check_length(secret)?;
            if stored.is_some() {
                return Err(SecretError::GeneratedInUse);
            }
            let pseudonymizer = Pseudonymizer::new(secret.as_bytes());
            let fingerprint = pseudonymizer.fingerprint();
            let recorded = match recorded {
                Some(r) => r,
                None => {
                    // A database from before fingerprints, with pseudonyms,
                    // cannot be checked: its first start with a secret
                    // records it, and later starts are held to it.
                    let r = store::get_or_insert_setting(conn, FINGERPRINT_SETTING, &fingerprint)?;
                    // A collector starting at the same moment without
                    // ANONSTATS_SECRET may have generated one meanwhile.
                    if store::get_setting(conn, SECRET_SETTING)?.is_some() {
                        if same(&r, &fingerprint) {
                            store::delete_setting(conn, FINGERPRINT_SETTING)?;
                        }
                        return Err(SecretError::GeneratedInUse);
                    }
                    r
                }
            };
            if !same(&recorded, &fingerprint) {
                return Err(SecretError::ConfiguredChanged);
            }
            Ok(Loaded {
                pseudonymizer,
                generated: false,
            })
        }
        None => {
            if recorded.is_some() {
                return Err(SecretError::ConfiguredMissing);
            }
            if let Some(secret) = stored {
                return Ok(Loaded {
                    pseudonymizer: Pseudonymizer::new(secret.as_bytes()),
                    generated: false,
                });
            }
            if store::has_pseudonyms(conn)? {
                return Err(SecretError::Unrecorded);
            }
            let fresh = anonymize::generate_secret();
            // Collectors starting together agree on the first one stored.
            let secret = store::get_or_insert_setting(conn, SECRET_SETTING, &fresh)?;
            let generated = same(&secret, &fresh);
            if store::get_setting(conn, FINGERPRINT_SETTING)?.is_some() {
                if generated {
                    store::delete_setting(conn, SECRET_SETTING)?;
                }
                return Err(SecretError::ConfiguredMissing);
            }
            Ok(Loaded {
                pseudonymizer: Pseudonymizer::new(secret.as_bytes()),
                generated,
            })
        }
    }
}

/// What the database records about its secret now.
pub fn recorded_kind(conn: &mut DbConn) -> Result<Kind, SecretError> {
    if store::get_setting(conn, SECRET_SETTING)?.is_some() {
        return Ok(Kind::Generated);
    }
    if store::get_setting(conn, FINGERPRINT_SETTING)?.is_some() {
        return Ok(Kind::Configured);
    }
    Ok(Kind::Unrecorded)
}

/// What [`rotate`] would delete now, to show before it is confirmed.
pub fn pending(conn: &mut DbConn) -> Result<Pseudonyms, SecretError> {
    Ok(store::count_pseudonyms(conn)?)
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The secret the old pseudonyms were made with.
    pub from: Kind,
    /// The secret from now on: [`Kind::Configured`] or [`Kind::Generated`].
    pub to: Kind,
    /// The rows deleted.
    pub deleted: Pseudonyms,
    /// Why the deleted rows may still be readable in the database files,
    /// if they may: the rotation itself committed all the same.
    pub scrub_failed: Option<String>,
}

/// Rotates the secret: from now on `configured` (`ANONSTATS_SECRET`), or a
/// newly generated secret when `None`. Deletes, in one transaction, every
/// instance snapshot, the aggregates built from them and every dedupe key
/// (the new secret cannot link to any of them), the stored secret and the
/// recorded fingerprint; keeps the daily event counts; then records the
/// new secret (the generated one, or the fingerprint of `configured`), and
/// scrubs the deleted rows from the database files. Every collector using
/// the database must be stopped first: one left running would go on
/// writing pseudonyms under the old secret.
pub fn rotate(conn: &mut DbConn, configured: Option<&str>) -> Result<Rotation, SecretError> {
    let from = recorded_kind(conn)?;
    let (setting, value, to) = match configured {
        Some(secret) => {
            check_length(secret)?;
            let fingerprint = Pseudonymizer::new(secret.as_bytes()).fingerprint();
            let recorded = store::get_setting(conn, FINGERPRINT_SETTING)?;
            if from == Kind::Configured && recorded.is_some_and(|r| same(&r, &fingerprint)) {
                return Err(SecretError::AlreadyInUse);
            }
            (FINGERPRINT_SETTING, fingerprint, Kind::Configured)
        }
        None => (
            SECRET_SETTING,
            anonymize::generate_secret(),
            Kind::Generated,
        ),
    };
    let deleted = store::replace_secret(conn, (setting, &value))?;
    // Committed already: a failure here (another connection still open)
    // leaves old bytes on disk, not the rotation undone.
    let scrub_failed = store::scrub_deleted(conn).err().map(|e| e.to_string());
    Ok(Rotation {
        from,
        to,
        deleted,
        scrub_failed,
    })
}

/// The pseudonymiser of the configured secret, or of the one kept in the
/// database (generated on first start), so that every process writing to
/// one database hashes an install's id alike. Refuses a secret other than
/// the one the stored pseudonyms were made with (see [`load`]).
pub fn load_pseudonymizer(
    secret: Option<&str>,
    pool: &crate::db::Pool,
    database_url: &str,
) -> anyhow::Result<Pseudonymizer> {
    let database = crate::db::redact_url(database_url);
    let mut conn = pool
        .get()
        .with_context(|| format!("cannot connect to database {database}"))?;
    let loaded =
        load(&mut conn, secret).with_context(|| format!("refusing to use database {database}"))?;
    if loaded.generated {
        tracing::info!(
            database = %database,
            setting = SECRET_SETTING,
            "generated a new pseudonymisation secret and kept it in the database's settings \
             table: a copy of the database or of its backups holds it (see docs/privacy.md)"
        );
    }
    Ok(loaded.pseudonymizer)
}
