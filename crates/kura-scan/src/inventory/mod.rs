//! Layer reading, the merged filesystem view and the package catalogers.
//! TEMPORARY placeholder until the inventory branch merges (replaced wholesale).

use serde::{Deserialize, Serialize};

/// Caps.
#[derive(Clone, Debug, Default)]
pub struct Limits {}
/// Index.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayerIndex {}
/// View.
pub struct FsView {}
/// Error.
#[derive(Debug, thiserror::Error)]
#[error("inventory")]
pub struct InventoryError;
/// Index a layer.
pub fn index_layer<R: std::io::Read>(_r: R, _l: &Limits) -> Result<LayerIndex, InventoryError> {
    Err(InventoryError)
}
/// Merge.
pub fn merge(_l: &[LayerIndex]) -> FsView {
    FsView {}
}
/// Catalog.
pub fn catalog(_v: &FsView) -> crate::Inventory {
    Default::default()
}
