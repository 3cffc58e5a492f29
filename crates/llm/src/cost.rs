//! What a call cost: a price table from configuration applied to reported usage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::Usage;

/// Prices of one model, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// Prices by model id (`provider/model`, as `ChatModel::id` gives it). A model missing from
/// the table costs nothing: the embedded local model, for instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(pub BTreeMap<String, Price>);

impl PriceTable {
    /// The cost of `usage` on `model`, in millionths of a dollar, rounded to the nearest.
    /// Integer micro-dollars keep sums exact however many calls are added up.
    pub fn cost_micros(&self, model: &str, usage: Usage) -> i64 {
        let Some(price) = self.0.get(model) else { return 0 };
        // Dollars per million tokens are exactly micro-dollars per token.
        let micros = usage.prompt_tokens as f64 * price.input_per_million
            + usage.completion_tokens as f64 * price.output_per_million;
        micros.round() as i64
    }

    /// Checks that no price is negative or not a number; the error names the model.
    pub fn validate(&self) -> Result<(), String> {
        for (model, price) in &self.0 {
            for (key, value) in
                [("input_per_million", price.input_per_million), ("output_per_million", price.output_per_million)]
            {
                if !value.is_finite() || value < 0.0 {
                    return Err(format!("prices.\"{model}\".{key} is {value}; expected a price of 0 or more"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        let mut prices = BTreeMap::new();
        prices
            .insert("openai/gpt-4o-mini-2024-07-18".into(), Price { input_per_million: 0.15, output_per_million: 0.6 });
        PriceTable(prices)
    }

    #[test]
    fn cost_is_tokens_times_price_in_micro_dollars() {
        let usage = Usage { prompt_tokens: 1_000, completion_tokens: 500 };
        // 1000 × 0.15 + 500 × 0.6 = 150 + 300 micro-dollars.
        assert_eq!(table().cost_micros("openai/gpt-4o-mini-2024-07-18", usage), 450);
        assert_eq!(table().cost_micros("local/qwen2.5-coder-0.5b", usage), 0, "unpriced models are free");
    }

    #[test]
    fn negative_or_nan_prices_are_refused_naming_the_model() {
        let mut bad = table();
        bad.0.insert("x/y".into(), Price { input_per_million: -1.0, output_per_million: 0.0 });
        assert!(bad.validate().unwrap_err().contains("prices.\"x/y\".input_per_million"));
        assert!(table().validate().is_ok());
    }
}
