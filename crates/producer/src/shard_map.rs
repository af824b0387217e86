//! The open shards of a stream and the hash-key range each owns, from
//! ListShards; routes a 128-bit hash key to the shard that will accept it.

use std::sync::Arc;

/// One open shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: Arc<str>,
    pub start: u128,
    pub end: u128,
    /// False for a shard closed by resharding.
    pub open: bool,
}

/// Open shards sorted by starting hash key.
#[derive(Debug, Clone, Default)]
pub struct ShardMap {
    shards: Vec<ShardInfo>,
}

impl ShardMap {
    /// Builds the map from ListShards' answer; closed shards are ignored.
    pub fn new(all: Vec<ShardInfo>) -> ShardMap {
        let mut shards: Vec<ShardInfo> = all.into_iter().filter(|s| s.open).collect();
        shards.sort_by_key(|s| s.start);
        ShardMap { shards }
    }

    /// Index (into [`ShardMap::shards`]) of the open shard owning `hash`.
    pub fn route(&self, hash: u128) -> Option<usize> {
        let i = self.shards.partition_point(|s| s.start <= hash);
        if i == 0 {
            return None;
        }
        let s = &self.shards[i - 1];
        (hash <= s.end).then_some(i - 1)
    }

    pub fn shards(&self) -> &[ShardInfo] {
        &self.shards
    }

    pub fn by_id(&self, id: &str) -> Option<&ShardInfo> {
        self.shards.iter().find(|s| &*s.shard_id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, start: u128, end: u128, open: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            start,
            end,
            open,
        }
    }

    #[test]
    fn routes_to_the_open_shard_owning_the_hash() {
        let m = ShardMap::new(vec![
            shard("c", 200, u128::MAX, true),
            shard("a", 0, 99, true),
            shard("old", 0, u128::MAX, false),
            shard("b", 100, 199, true),
        ]);
        let id = |h| &*m.shards()[m.route(h).unwrap()].shard_id;
        assert_eq!(id(0), "a");
        assert_eq!(id(99), "a");
        assert_eq!(id(100), "b");
        assert_eq!(id(199), "b");
        assert_eq!(id(u128::MAX), "c");
    }

    #[test]
    fn a_gap_routes_nowhere() {
        let m = ShardMap::new(vec![shard("a", 10, 20, true)]);
        assert_eq!(m.route(5), None);
        assert_eq!(m.route(21), None);
        assert_eq!(m.route(15), Some(0));
    }
}
