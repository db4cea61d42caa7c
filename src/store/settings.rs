//! The `settings` table (named text values the collector keeps, such as
//! its generated secret), and the small reads that tell what a database
//! holds.

use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::db::DbConn;
use crate::schema::{daily_events, settings};

/// Name of the setting holding the generated pseudonymisation secret.
pub const SECRET_SETTING: &str = "pseudonym_secret";

/// Name of the setting holding a keyed fingerprint of `ANONSTATS_SECRET`
/// (never the secret), recording that the database's pseudonyms were made
/// with it.
pub const FINGERPRINT_SETTING: &str = "pseudonym_secret_fingerprint";

/// Name of the setting that marks a database holding synthetic demo data
/// (`anonstats simulate --database`); its value is the day it was first
/// written.
pub const SYNTHETIC_SETTING: &str = "synthetic_data";

/// Name of the setting counting erasure requests, stored or not. Every
/// erasure raises it, so that each one writes (and flushes) the same, and so
/// that every collector sharing the database sees that results cached
/// before it may count an erased install (see `reporting::cache`).
pub const ERASURES_SETTING: &str = "erasures";

/// Reads a setting.
pub fn get_setting(conn: &mut DbConn, name: &str) -> QueryResult<Option<String>> {
    with_conn!(conn, |c| settings::table
        .filter(settings::name.eq(name))
        .select(settings::value)
        .first::<String>(c)
        .optional())
}

/// Stores `value` under `name`, replacing what was there.
pub fn set_setting(conn: &mut DbConn, name: &str, value: &str) -> QueryResult<()> {
    with_conn!(conn, |c| diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(value)))
        .on_conflict(settings::name)
        .do_update()
        .set(settings::value.eq(value))
        .execute(c))?;
    Ok(())
}

/// Stores `value` under `name` unless a value is already there, and returns
/// the stored value: collectors starting together agree on the first one.
pub fn get_or_insert_setting(conn: &mut DbConn, name: &str, value: &str) -> QueryResult<String> {
    with_conn!(conn, |c| diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(value)))
        .on_conflict_do_nothing()
        .execute(c))?;
    get_setting(conn, name)?.ok_or(DieselError::NotFound)
}

/// Deletes a setting; returns whether it was there.
pub fn delete_setting(conn: &mut DbConn, name: &str) -> QueryResult<bool> {
    let n = with_conn!(conn, |c| diesel::delete(
        settings::table.filter(settings::name.eq(name))
    )
    .execute(c))?;
    Ok(n > 0)
}

/// Whether any report was ever counted (one row of `daily_events`).
pub fn has_reports(conn: &mut DbConn) -> QueryResult<bool> {
    with_conn!(conn, |c| diesel::select(diesel::dsl::exists(
        daily_events::table.select(daily_events::reports)
    ))
    .get_result::<bool>(c))
}

/// Checks that the database answers.
pub fn ping(conn: &mut DbConn) -> QueryResult<()> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute("SELECT 1")
}
