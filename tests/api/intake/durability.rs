//! A 2xx means the report is on disk: batches are committed without waiting
//! for the disk and acknowledged only after a flush that covers them.

use std::time::Duration;

use anonstats::db;
use anonstats::store::CommitSync;
use diesel::connection::SimpleConnection;

use crate::support::{scalar, skip_postgres, Backend, TestDb};

fn commit_sync_is_found_for(db: &TestDb) -> CommitSync {
    let mut conn = db.conn();
    CommitSync::of(&mut conn)
        .expect("inspect database")
        .expect("commits of this database can be flushed later")
}

#[test]
fn sqlite_commits_are_flushed_through_the_wal_file_beside_the_database() {
    let db = TestDb::new(Backend::Sqlite);
    // The collector's own migrations put the database in WAL mode.
    db::run_migrations(&mut db.conn()).expect("migrate");
    match commit_sync_is_found_for(&db) {
        CommitSync::SqliteWal(path) => {
            let expected = format!("{}-wal", db.url);
            assert_eq!(
                std::fs::canonicalize(path.parent().unwrap()).unwrap(),
                std::fs::canonicalize(std::path::Path::new(&expected).parent().unwrap()).unwrap()
            );
            assert!(
                path.to_string_lossy().ends_with("anonstats.db-wal"),
                "{path:?}"
            );
        }
        other => panic!("expected the WAL file, got {other:?}"),
    }
}

/// Commits made without waiting for the WAL flush (as the writer's batches
/// are) are on disk once `CommitSync::sync` returns.
#[test]
fn postgres_flush_covers_every_earlier_commit() {
    let Some(db) = TestDb::postgres() else {
        return skip_postgres(concat!(
            module_path!(),
            "::postgres_flush_covers_every_earlier_commit"
        ));
    };
    let sync = commit_sync_is_found_for(&db);
    assert!(matches!(sync, CommitSync::Postgres));
    let pool = db::pool(&db.url, 2);
    let mut conn = db.conn();
    conn.batch_execute("CREATE TABLE flush_check (x BIGINT)")
        .expect("create table");
    // The server's WAL writer also flushes on its own every few hundred
    // milliseconds: a round where it got there first proves nothing, so
    // try again.
    for _ in 0..20 {
        conn.batch_execute(
            "BEGIN; SET LOCAL synchronous_commit = off; \
             INSERT INTO flush_check SELECT generate_series(1, 20000); COMMIT;",
        )
        .expect("asynchronous commit");
        let lsn: String = {
            use diesel::prelude::*;
            #[derive(QueryableByName)]
            struct Lsn {
                #[diesel(sql_type = diesel::sql_types::Text)]
                lsn: String,
            }
            diesel::sql_query("SELECT pg_current_wal_insert_lsn()::text AS lsn")
                .get_result::<Lsn>(&mut conn)
                .expect("lsn")
                .lsn
        };
        let flushed = |conn: &mut db::DbConn| {
            scalar(
                conn,
                &format!(
                    "SELECT CAST(CASE WHEN pg_current_wal_flush_lsn() >= '{lsn}'::pg_lsn \
                     THEN 1 ELSE 0 END AS BIGINT) AS n"
                ),
            ) == 1
        };
        if flushed(&mut conn) {
            continue;
        }
        sync.sync(&pool, Duration::from_secs(2), &db::Faults::default())
            .expect("flush");
        assert!(
            flushed(&mut conn),
            "the WAL up to {lsn} is still not flushed after the sync"
        );
        return;
    }
    panic!("the server flushed before the sync in every round: nothing was checked");
}
