//! The Respan "List customers" API: wire types, the HTTP client and its errors.

mod client;
mod error;
pub mod types;

pub use client::{PAGE_SIZE, RespanClient, RetryPolicy, SORT_BY};
pub use error::ApiError;
pub use types::{Customer, CustomerPage, InvalidField, RawCustomer};
