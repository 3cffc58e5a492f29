//! The backend's records and their loading from the seed files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub key: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
    pub currency: String,
    pub warranty_months: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    pub city: String,
    pub region: String,
    pub postcode: String,
    pub country: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub tier: String,
    pub loyalty_points: i64,
    pub created_at: String,
    pub address: Address,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipping {
    pub method: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_url: Option<String>,
    pub estimated_delivery: Option<String>,
    pub delivered_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub amount_cents: i64,
    pub refunded_at: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    /// processing | shipped | delivered | delayed | cancelled | refunded
    pub status: String,
    pub placed_at: String,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub shipping_cents: i64,
    pub currency: String,
    pub shipping: Shipping,
    pub delay_reason: Option<String>,
    pub refund: Option<Refund>,
}

impl Order {
    /// What has been refunded on this order so far.
    pub fn refunded_cents(&self) -> i64 {
        self.refund.as_ref().map_or(0, |r| r.amount_cents)
    }
}

/// The seed data, keyed by id.
#[derive(Debug, Clone, Default)]
pub struct AcmeData {
    pub products: BTreeMap<String, Product>,
    pub customers: BTreeMap<String, Customer>,
    pub orders: BTreeMap<String, Order>,
}

/// A seed file that could not be read or did not hold what was expected.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {problem}")]
    Inconsistent { path: PathBuf, problem: String },
}

impl AcmeData {
    /// Loads `products.json`, `customers.json` and `orders.json` from `dir` and checks that
    /// every order names a known customer and known products.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        let products: Vec<Product> = read_json(&dir.join("products.json"))?;
        let customers: Vec<Customer> = read_json(&dir.join("customers.json"))?;
        let orders_path = dir.join("orders.json");
        let orders: Vec<Order> = read_json(&orders_path)?;
        let data = AcmeData {
            products: keyed(products, |p| &p.sku, &dir.join("products.json"))?,
            customers: keyed(customers, |c| &c.id, &dir.join("customers.json"))?,
            orders: keyed(orders, |o| &o.id, &orders_path)?,
        };
        for order in data.orders.values() {
            let problem = if !data.customers.contains_key(&order.customer_id) {
                Some(format!("order {} names unknown customer {}", order.id, order.customer_id))
            } else {
                order
                    .items
                    .iter()
                    .find(|i| !data.products.contains_key(&i.sku))
                    .map(|i| format!("order {} names unknown product {}", order.id, i.sku))
            };
            if let Some(problem) = problem {
                return Err(LoadError::Inconsistent { path: orders_path, problem });
            }
        }
        Ok(data)
    }
}

/// Records by id; a repeated id is an error rather than a silently dropped record.
fn keyed<T>(records: Vec<T>, id: impl Fn(&T) -> &String, path: &Path) -> Result<BTreeMap<String, T>, LoadError> {
    let mut map = BTreeMap::new();
    for record in records {
        let key = id(&record).clone();
        if map.insert(key.clone(), record).is_some() {
            return Err(LoadError::Inconsistent { path: path.to_owned(), problem: format!("id {key} appears twice") });
        }
    }
    Ok(map)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Parse { path: path.to_owned(), source })
}
