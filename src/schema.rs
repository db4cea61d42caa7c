//! Table definitions shared by both backends. Kept by hand, using only SQL
//! types that SQLite and PostgreSQL both map (Text, BigInt, Date, Binary).

diesel::table! {
    settings (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    daily_events (day, product, event, version, previous_version, edition) {
        day -> Date,
        product -> Text,
        event -> Text,
        version -> Text,
        previous_version -> Text,
        edition -> Text,
        reports -> BigInt,
    }
}

diesel::table! {
    instances (instance_hash) {
        instance_hash -> Binary,
        product -> Text,
        version -> Text,
        first_seen -> Date,
        last_seen -> Date,
        state -> Text,
        /// Versions of the install's latest update ('' when it never updated).
        upgraded_from -> Text,
        upgraded_to -> Text,
        /// Day of its latest update.
        upgraded_on -> Nullable<Date>,
        /// Dedupe keys of its last reports: 32 bytes of hash and 4 of day each.
        report_keys -> Binary,
        /// Day of the oldest of them.
        report_keys_since -> Nullable<Date>,
        /// Last day a key moved from the row to `seen_reports`.
        report_keys_spilled -> Nullable<Date>,
    }
}

diesel::table! {
    seen_reports (report_hash) {
        report_hash -> Binary,
        day -> Date,
    }
}

diesel::table! {
    instance_values (product, last_seen, kind, name, value) {
        product -> Text,
        last_seen -> Date,
        kind -> Text,
        name -> Text,
        value -> Text,
        instances -> BigInt,
    }
}

diesel::table! {
    instance_counters (product, last_seen, counter, bucket) {
        product -> Text,
        last_seen -> Date,
        counter -> Text,
        bucket -> BigInt,
        instances -> BigInt,
        total -> BigInt,
    }
}

diesel::table! {
    /// All-days totals of `instance_values`, maintained with it.
    instance_value_totals (product, kind, name, value) {
        product -> Text,
        kind -> Text,
        name -> Text,
        value -> Text,
        instances -> BigInt,
    }
}

diesel::table! {
    /// All-days totals of `instance_counters`, maintained with it.
    instance_counter_totals (product, counter, bucket) {
        product -> Text,
        counter -> Text,
        bucket -> BigInt,
        instances -> BigInt,
        total -> BigInt,
    }
}

diesel::table! {
    /// Public releases: inserted once, never updated.
    releases (date) {
        date -> Date,
        body -> Text,
        sha256 -> Text,
        mechanism -> Text,
        parameters -> Text,
        rho -> Double,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    settings,
    daily_events,
    instances,
    seen_reports,
    instance_values,
    instance_counters,
);
