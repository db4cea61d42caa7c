//! What a report meets on its way in: parsing, validation, limits, storage.

mod abuse;
mod durability;
mod hostile;
mod ingest;
mod legacy;
mod limits;
mod properties;
mod validation;
