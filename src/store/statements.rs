//! The batch statements written out as fixed SQL with a static query id, so
//! that diesel prepares each once per connection instead of for every use.
//! Diesel's query builder marks every `ON CONFLICT .. DO UPDATE` as not
//! cacheable, which made SQLite parse and plan the statement again for
//! every row (over 40% of the collector's instructions under load), and a
//! multi-row `VALUES` list is a new statement for PostgreSQL whenever the
//! row count changes (see docs/performance.md).
//!
//! The same SQL serves both backends, one row at a time on SQLite
//! ([`Upsert`]), and on PostgreSQL the whole set at once with one array per
//! column (`INSERT .. SELECT * FROM unnest($1, $2, ..)`, [`Bulk`]).

use std::marker::PhantomData;

use chrono::NaiveDate;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, BigInt, Binary, Date, HasSqlType, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{PgConnection, QueryResult, RunQueryDsl, SqliteConnection};

use super::rows::{
    CounterRow, CounterTotalRow, EventRow, InstanceRow, ReportKey, ValueRow, ValueTotalRow,
};

/// A row with its statement: `INTO`, the values, then `CONFLICT`.
pub(super) trait Row {
    /// `INSERT INTO table (columns)`.
    const INTO: &'static str;
    /// The `ON CONFLICT` clause.
    const CONFLICT: &'static str;
    /// The key returned by PostgreSQL for rows actually inserted, when
    /// the statement only inserts new rows.
    const RETURNING: Option<&'static str> = None;
    /// Identifies the statement in diesel's cache.
    type Id: 'static;
    /// Binds this row's values (SQLite).
    fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()>;
}

/// Rows turned into one array per column, in the order of `Row::INTO`.
pub(super) trait Columns: Sized {
    fn columns(rows: &[Self]) -> Vec<Column<'_>>;
}

/// One column of a set of rows, bound as a PostgreSQL array.
pub(super) enum Column<'a> {
    Bytes(Vec<&'a [u8]>),
    Text(Vec<&'a str>),
    Date(Vec<NaiveDate>),
    OptDate(Vec<Option<NaiveDate>>),
    BigInt(Vec<i64>),
}

/// Pushes bound values separated by commas.
pub(super) struct Values<'p, 'a, 'b> {
    out: &'p mut AstPass<'a, 'b, Sqlite>,
    first: bool,
}

impl<'b> Values<'_, '_, 'b> {
    fn push<T, U>(&mut self, value: &'b U) -> QueryResult<&mut Self>
    where
        Sqlite: HasSqlType<T>,
        U: ToSql<T, Sqlite> + ?Sized,
    {
        if !std::mem::take(&mut self.first) {
            self.out.push_sql(", ");
        }
        self.out.push_bind_param::<T, U>(value)?;
        Ok(self)
    }
}

/// The statement for one row (SQLite).
pub(super) struct Upsert<'a, R>(pub &'a R);

impl<R: Row> QueryId for Upsert<'_, R> {
    type QueryId = R::Id;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<R: Row> QueryFragment<Sqlite> for Upsert<'_, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql(R::INTO);
        out.push_sql(" VALUES (");
        self.0.bind(&mut Values {
            out: &mut out,
            first: true,
        })?;
        out.push_sql(") ");
        out.push_sql(R::CONFLICT);
        Ok(())
    }
}

impl<R> RunQueryDsl<SqliteConnection> for Upsert<'_, R> {}

/// The statement for a set of rows (PostgreSQL).
pub(super) struct Bulk<'a, R> {
    columns: Vec<Column<'a>>,
    row: PhantomData<R>,
}

impl<'a, R: Row> Bulk<'a, R> {
    pub(super) fn new(columns: Vec<Column<'a>>) -> Self {
        Bulk {
            columns,
            row: PhantomData,
        }
    }
}

impl<R: Row> QueryId for Bulk<'_, R> {
    type QueryId = R::Id;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Only loaded from when `R::RETURNING` names the key column.
impl<R: Row> Query for Bulk<'_, R> {
    type SqlType = Binary;
}

impl<R: Row> QueryFragment<Pg> for Bulk<'_, R> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(R::INTO);
        out.push_sql(" SELECT * FROM unnest(");
        for (i, column) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            match column {
                Column::Bytes(v) => out.push_bind_param::<Array<Binary>, _>(v)?,
                Column::Text(v) => out.push_bind_param::<Array<Text>, _>(v)?,
                Column::Date(v) => out.push_bind_param::<Array<Date>, _>(v)?,
                Column::OptDate(v) => out.push_bind_param::<Array<Nullable<Date>>, _>(v)?,
                Column::BigInt(v) => out.push_bind_param::<Array<BigInt>, _>(v)?,
            }
        }
        out.push_sql(") ");
        out.push_sql(R::CONFLICT);
        if let Some(key) = R::RETURNING {
            out.push_sql(" RETURNING ");
            out.push_sql(key);
        }
        Ok(())
    }
}

impl<R> RunQueryDsl<PgConnection> for Bulk<'_, R> {}

/// A row inserted only if its key is new (`ON CONFLICT DO NOTHING`).
pub(super) struct New<'a, R>(pub &'a R);

/// Implements [`Row`] and [`Columns`] for a row type from one list of
/// its fields, named as their columns, so that the statement's column
/// list, the values bound on SQLite and the arrays bound on PostgreSQL
/// cannot disagree on the order.
macro_rules! statement {
    ($row:ty, $id:ty, $table:literal, [$($field:ident: $kind:ident),+], $conflict:literal) => {
        impl Row for $row {
            const INTO: &'static str =
                concat!("INSERT INTO ", $table, " (", stringify!($($field),+), ")");
            const CONFLICT: &'static str = $conflict;
            type Id = $id;
            fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
                $(statement!(@bind out, self.$field, $kind);)+
                Ok(())
            }
        }

        impl Columns for $row {
            fn columns(rows: &[Self]) -> Vec<Column<'_>> {
                vec![$(statement!(@column rows, $field, $kind)),+]
            }
        }
    };
    (@bind $out:ident, $value:expr, Bytes) => {
        $out.push::<Binary, [u8]>(AsRef::<[u8]>::as_ref(&$value))?;
    };
    (@bind $out:ident, $value:expr, Text) => {
        $out.push::<Text, str>(AsRef::<str>::as_ref(&$value))?;
    };
    (@bind $out:ident, $value:expr, Date) => {
        $out.push::<Date, _>(&$value)?;
    };
    (@bind $out:ident, $value:expr, OptDate) => {
        $out.push::<Nullable<Date>, _>(&$value)?;
    };
    (@bind $out:ident, $value:expr, BigInt) => {
        $out.push::<BigInt, _>(&$value)?;
    };
    (@column $rows:ident, $field:ident, Bytes) => {
        Column::Bytes($rows.iter().map(|r| AsRef::<[u8]>::as_ref(&r.$field)).collect())
    };
    (@column $rows:ident, $field:ident, Text) => {
        Column::Text($rows.iter().map(|r| AsRef::<str>::as_ref(&r.$field)).collect())
    };
    (@column $rows:ident, $field:ident, Date) => {
        Column::Date($rows.iter().map(|r| r.$field).collect())
    };
    (@column $rows:ident, $field:ident, OptDate) => {
        Column::OptDate($rows.iter().map(|r| r.$field).collect())
    };
    (@column $rows:ident, $field:ident, BigInt) => {
        Column::BigInt($rows.iter().map(|r| r.$field).collect())
    };
}

statement!(
    InstanceRow,
    InstanceRow,
    "instances",
    [instance_hash: Bytes, product: Text, version: Text, first_seen: Date, last_seen: Date, state: Text,
     upgraded_from: Text, upgraded_to: Text, upgraded_on: OptDate,
     report_keys: Bytes, report_keys_since: OptDate, report_keys_spilled: OptDate],
    "ON CONFLICT (instance_hash) DO UPDATE SET \
     version = excluded.version, last_seen = excluded.last_seen, state = excluded.state, \
     upgraded_from = excluded.upgraded_from, upgraded_to = excluded.upgraded_to, \
     upgraded_on = excluded.upgraded_on, report_keys = excluded.report_keys, \
     report_keys_since = excluded.report_keys_since, \
     report_keys_spilled = excluded.report_keys_spilled"
);

statement!(
    EventRow<'_>,
    EventRow<'static>,
    "daily_events",
    [day: Date, product: Text, event: Text, version: Text, previous_version: Text, edition: Text, reports: BigInt],
    "ON CONFLICT (day, product, event, version, previous_version, edition) \
     DO UPDATE SET reports = daily_events.reports + excluded.reports"
);

statement!(
    ValueRow<'_>,
    ValueRow<'static>,
    "instance_values",
    [product: Text, last_seen: Date, kind: Text, name: Text, value: Text, instances: BigInt],
    "ON CONFLICT (product, last_seen, kind, name, value) \
     DO UPDATE SET instances = instance_values.instances + excluded.instances"
);

statement!(
    CounterRow<'_>,
    CounterRow<'static>,
    "instance_counters",
    [product: Text, last_seen: Date, counter: Text, bucket: BigInt, instances: BigInt, total: BigInt],
    "ON CONFLICT (product, last_seen, counter, bucket) DO UPDATE SET \
     instances = instance_counters.instances + excluded.instances, \
     total = instance_counters.total + excluded.total"
);

statement!(
    ValueTotalRow<'_>,
    ValueTotalRow<'static>,
    "instance_value_totals",
    [product: Text, kind: Text, name: Text, value: Text, instances: BigInt],
    "ON CONFLICT (product, kind, name, value) \
     DO UPDATE SET instances = instance_value_totals.instances + excluded.instances"
);

statement!(
    CounterTotalRow<'_>,
    CounterTotalRow<'static>,
    "instance_counter_totals",
    [product: Text, counter: Text, bucket: BigInt, instances: BigInt, total: BigInt],
    "ON CONFLICT (product, counter, bucket) DO UPDATE SET \
     instances = instance_counter_totals.instances + excluded.instances, \
     total = instance_counter_totals.total + excluded.total"
);

impl Row for New<'_, InstanceRow> {
    const INTO: &'static str = <InstanceRow as Row>::INTO;
    const CONFLICT: &'static str = "ON CONFLICT DO NOTHING";
    const RETURNING: Option<&'static str> = Some("instance_hash");
    type Id = New<'static, InstanceRow>;
    fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        self.0.bind(out)
    }
}

impl Row for New<'_, ReportKey> {
    const INTO: &'static str = "INSERT INTO seen_reports (report_hash, day)";
    const CONFLICT: &'static str = "ON CONFLICT DO NOTHING";
    const RETURNING: Option<&'static str> = Some("report_hash");
    type Id = New<'static, ReportKey>;
    fn bind<'b>(&'b self, out: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        out.push::<Binary, [u8]>(self.0.report_hash.as_bytes())?
            .push::<Date, _>(&self.0.day)?;
        Ok(())
    }
}

impl Columns for ReportKey {
    fn columns(rows: &[Self]) -> Vec<Column<'_>> {
        vec![
            Column::Bytes(
                rows.iter()
                    .map(|r| r.report_hash.as_bytes().as_slice())
                    .collect(),
            ),
            Column::Date(rows.iter().map(|r| r.day).collect()),
        ]
    }
}
