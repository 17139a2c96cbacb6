//! The Respan "List customers" API: wire types, the HTTP client and its errors.

mod client;
mod error;
pub mod types;

pub use client::{PAGE_SIZE, RespanClient, RetryPolicy, SORT_BY, SORT_BY_RECENT};
pub use error::ApiError;
pub use types::{
    Customer, CustomerKey, CustomerPage, InvalidField, RawCustomer, customer_key, parse_page,
};
