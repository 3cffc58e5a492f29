//! What a chunk is filtered by, and the compact form the graph search checks on every node it
//! reaches.

use std::collections::{BTreeMap, HashMap};

use concierge_core::TenantId;

/// The attributes of one chunk: the tenant that owns it and a few metadata pairs (one value per
/// key) such as `category = "billing"` or `product = "router-x2"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkAttributes {
    pub tenant: TenantId,
    pub metadata: BTreeMap<String, String>,
}

impl ChunkAttributes {
    /// `tenant`'s chunk with no metadata.
    pub fn new(tenant: TenantId) -> Self {
        Self { tenant, metadata: BTreeMap::new() }
    }

    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Sets `key` to `value`, replacing an earlier value of `key`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Which chunks a search may return: always one tenant's, and of those only the ones whose
/// metadata has every listed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorFilter {
    tenant: TenantId,
    metadata: Vec<(String, String)>,
}

impl VectorFilter {
    /// Every chunk of `tenant`, and no other.
    pub fn tenant(tenant: TenantId) -> Self {
        Self { tenant, metadata: Vec::new() }
    }

    /// Also requires metadata `key` to equal `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }
}

/// A string interned in [`Symbols`]. Comparing two of these is comparing two integers, which
/// matters in a filter that runs once per graph node visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Symbol(u32);

/// Interns tenants, metadata keys and metadata values. Strings are never forgotten: the set of
/// tenants and categories is small next to the number of chunks.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    ids: HashMap<Box<str>, Symbol>,
    names: Vec<Box<str>>,
}

impl Symbols {
    fn intern(&mut self, name: &str) -> Symbol {
        if let Some(&symbol) = self.ids.get(name) {
            return symbol;
        }
        // More than u32::MAX distinct strings cannot fit in memory beside the vectors anyway.
        let symbol = Symbol(self.names.len() as u32);
        self.names.push(name.into());
        self.ids.insert(name.into(), symbol);
        symbol
    }

    fn get(&self, name: &str) -> Option<Symbol> {
        self.ids.get(name).copied()
    }

    pub(crate) fn name(&self, symbol: Symbol) -> &str {
        self.names.get(symbol.0 as usize).map_or("", |name| name)
    }

    /// The compact form of a chunk's attributes.
    pub(crate) fn encode<'a>(
        &mut self,
        tenant: &str,
        metadata: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Attributes {
        let tenant = self.intern(tenant);
        let metadata = metadata.into_iter().map(|(key, value)| (self.intern(key), self.intern(value))).collect();
        Attributes { tenant, metadata }
    }

    /// The compact form of `filter`, or `None` when it names a string no chunk has ever had,
    /// in which case nothing can match.
    pub(crate) fn resolve(&self, filter: &VectorFilter) -> Option<Resolved> {
        let tenant = self.get(filter.tenant.as_str())?;
        let required = filter
            .metadata
            .iter()
            .map(|(key, value)| Some((self.get(key)?, self.get(value)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Resolved { tenant, required })
    }
}

/// A chunk's tenant and metadata as symbols.
#[derive(Debug, Clone)]
pub(crate) struct Attributes {
    pub(crate) tenant: Symbol,
    pub(crate) metadata: Box<[(Symbol, Symbol)]>,
}

/// A filter as symbols.
#[derive(Debug)]
pub(crate) struct Resolved {
    tenant: Symbol,
    required: Vec<(Symbol, Symbol)>,
}

impl Resolved {
    pub(crate) fn tenant(&self) -> Symbol {
        self.tenant
    }

    /// Whether the filter asks for nothing but the tenant.
    pub(crate) fn is_tenant_only(&self) -> bool {
        self.required.is_empty()
    }

    pub(crate) fn admits(&self, attributes: &Attributes) -> bool {
        // A chunk has a handful of metadata pairs: a linear scan beats any lookup structure.
        attributes.tenant == self.tenant && self.required.iter().all(|pair| attributes.metadata.contains(pair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        name.parse().unwrap()
    }

    #[test]
    fn a_filter_admits_only_its_tenant_with_every_required_value() {
        let mut symbols = Symbols::default();
        let billing = ChunkAttributes::new(tenant("acme")).with("category", "billing").with("product", "x2");
        let billing = symbols.encode(billing.tenant.as_str(), billing.pairs());
        let other = symbols.encode("globex", []);

        let by_tenant = symbols.resolve(&VectorFilter::tenant(tenant("acme"))).unwrap();
        assert!(by_tenant.admits(&billing));
        assert!(!by_tenant.admits(&other));

        let narrow = VectorFilter::tenant(tenant("acme")).with("product", "x2").with("category", "billing");
        assert!(symbols.resolve(&narrow).unwrap().admits(&billing));

        let mismatch = VectorFilter::tenant(tenant("acme")).with("category", "x2");
        assert!(!symbols.resolve(&mismatch).unwrap().admits(&billing));
    }

    #[test]
    fn a_filter_naming_an_unknown_value_resolves_to_nothing() {
        let mut symbols = Symbols::default();
        symbols.encode("acme", []);
        assert!(symbols.resolve(&VectorFilter::tenant(tenant("acme")).with("category", "returns")).is_none());
        assert!(symbols.resolve(&VectorFilter::tenant(tenant("initech"))).is_none());
    }
}
