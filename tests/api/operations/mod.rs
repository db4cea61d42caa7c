//! Running the collector: faults, storage errors, metrics, health, an
//! operator's mistakes and demo data.

mod faults;
mod health;
mod newcomer;
mod operability;
mod simulate;
mod storage_errors;
